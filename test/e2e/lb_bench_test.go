//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// BenchmarkLBFirstResponse measures, over LB_BENCH_TRIES (default 100)
// tries, the time from `docker start` of a new replica on h2 to the first
// response from it proxied by HAProxy on h1 (the service keeps an anchor
// replica on h3 so that its backend stays). It prints p50, p90, p99 and max.
// Run it with `make bench-lb`.
func BenchmarkLBFirstResponse(b *testing.B) {
	sb := harness.Sandbox(b, sandbox.Options{Prefix: "drvm", Hosts: 3, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	tries := 100
	if v, err := strconv.Atoi(os.Getenv("LB_BENCH_TRIES")); err == nil && v > 0 {
		tries = v
	}
	h1, _ := sb.HostByName("h1")
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return sandbox.DialNetns(ctx, h1.NetNS, network, addr)
		},
		DisableKeepAlives: true,
	}}
	get := func() string {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:80/", nil)
		req.Host = "lat.example"
		resp, err := client.Do(req)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return ""
		}
		return string(body)
	}
	// Without a drover.check label the instance is passing in Consul as
	// soon as it is registered (HAProxy still checks it: tcp, 2s). With
	// LB_BENCH_CHECK=1 it gets a Consul-run HTTP check, whose first run
	// Consul staggers randomly within the interval (1s).
	labels := []string{"-l", "drover.service=lat", "-l", "drover.lb.mode=http", "-l", "drover.lb.host=lat.example"}
	if os.Getenv("LB_BENCH_CHECK") == "1" {
		labels = append(labels, "-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s")
	}
	run := func(host, name string) {
		args := append([]string{"create", "--name", name, "--hostname", name, "--network", "drover"}, labels...)
		args = append(args, sandbox.DemoImage)
		if out, err := sb.Docker(ctx, host, args...); err != nil {
			b.Fatalf("docker create %s: %v %s", name, err, out)
		}
	}
	run("h3", "lat-anchor")
	if out, err := sb.Docker(ctx, "h3", "start", "lat-anchor"); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	harness.Eventually(b, 30*time.Second, "anchor answers through h1", func() error {
		if !strings.Contains(get(), "host=lat-anchor") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < tries; i++ {
		name := fmt.Sprintf("lat-%d", i)
		run("h2", name)
		begin := time.Now()
		if out, err := sb.Docker(ctx, "h2", "start", name); err != nil {
			b.Fatalf("docker start: %v %s", err, out)
		}
		for {
			if strings.Contains(get(), "host="+name+" ") {
				break
			}
			if time.Since(begin) > 20*time.Second {
				b.Fatalf("try %d: no response from %s through h1 within 20s", i, name)
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, time.Since(begin))
		if out, err := sb.Docker(ctx, "h2", "rm", "-f", name); err != nil {
			b.Fatalf("docker rm: %v %s", err, out)
		}
		// Wait until it has left rotation before the next try.
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			gone := true
			for j := 0; j < 4; j++ {
				if strings.Contains(get(), "host="+name+" ") {
					gone = false
				}
			}
			if gone {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(float64(q(0.5).Milliseconds()), "p50_ms")
	b.ReportMetric(float64(q(0.99).Milliseconds()), "p99_ms")
	fmt.Printf("lb first response after docker start, %d tries: p50 %s  p90 %s  p99 %s  max %s  min %s\n",
		len(lat), q(0.5).Round(time.Millisecond), q(0.9).Round(time.Millisecond), q(0.99).Round(time.Millisecond),
		lat[len(lat)-1].Round(time.Millisecond), lat[0].Round(time.Millisecond))
}
