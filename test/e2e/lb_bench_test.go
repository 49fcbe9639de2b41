//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/lb"
	"github.com/drover-net/drover/lb/haproxy"
	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"

	"github.com/drover-net/drover/discovery/contract"
)

// BenchmarkLBFirstResponse measures, over LB_BENCH_TRIES (default 100)
// tries, the time from `docker start` of a new replica on h2 to the first
// response from it proxied by HAProxy on h1 (the service keeps an anchor
// replica on h3 so that its backend stays). It prints p50, p90, p99 and max.
// Run it with `make bench-lb`.
func BenchmarkLBFirstResponse(b *testing.B) { benchFirstResponse(b, false) }

// BenchmarkLBFirstResponseHTTPS is BenchmarkLBFirstResponse for a
// drover.lb.tls route: a new TLS connection (SNI lat.example, a
// certificate from Consul KV) for every request.
func BenchmarkLBFirstResponseHTTPS(b *testing.B) { benchFirstResponse(b, true) }

func benchFirstResponse(b *testing.B, useTLS bool) {
	prefix := "drvm"
	if useTLS {
		prefix = "drvy"
	}
	sb := harness.Sandbox(b, sandbox.Options{Prefix: prefix, Hosts: 3, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	tries := 100
	if v, err := strconv.Atoi(os.Getenv("LB_BENCH_TRIES")); err == nil && v > 0 {
		tries = v
	}
	h1, _ := sb.HostByName("h1")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return sandbox.DialNetns(ctx, h1.NetNS, network, addr)
		},
		DisableKeepAlives: true,
	}
	url := "http://127.0.0.1:80/"
	if useTLS {
		ca := newTestCA(b)
		bundle, _, _ := ca.leaf(b, "lat.example", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		cmd, err := sb.Command(ctx, "h1", "consul", "kv", "put", "drover/v1/certs/lat-example", "-")
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stdin = strings.NewReader(string(bundle))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("consul kv put: %v %s", err, out)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "lat.example"}
		// Dial h1's HTTPS frontend whatever the URL's host is.
		dial := tr.DialContext
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dial(ctx, network, "127.0.0.1:443")
		}
		url = "https://lat.example/"
	}
	client := &http.Client{Timeout: time.Second, Transport: tr}
	get := func() string {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
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
	// Without a drover.check label (and without the image's Docker
	// HEALTHCHECK) the instance is passing in Consul as soon as it is
	// registered (HAProxy still checks it: tcp, 2s). With
	// LB_BENCH_CHECK=1 it gets a Consul-run HTTP check, whose first run
	// Consul staggers randomly within the interval (1s).
	labels := []string{"-l", "drover.service=lat", "-l", "drover.lb.mode=http", "-l", "drover.lb.host=lat.example"}
	if useTLS {
		labels = append(labels, "-l", "drover.lb.tls=true")
	}
	if os.Getenv("LB_BENCH_CHECK") == "1" {
		labels = append(labels, "-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s")
	}
	run := func(host, name string) {
		_, _ = sb.Docker(ctx, host, "rm", "-f", name) // a killed earlier run may have left it
		// --no-healthcheck: the demo image's Docker HEALTHCHECK (interval
		// 2s) would hold the instance at "warning" until its first run.
		args := append([]string{"create", "--no-healthcheck", "--name", name, "--hostname", name, "--network", "drover"}, labels...)
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
	var lat, fromStart []time.Duration
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
		got := time.Now()
		lat = append(lat, got.Sub(begin))
		// The part after the container's process started (dockerd's own
		// start-up work here takes most of a second on this VM).
		if out, err := sb.Docker(ctx, "h2", "inspect", "-f", "{{.State.StartedAt}} {{.Id}}", name); err == nil {
			f := strings.Fields(out)
			if at, err := time.Parse(time.RFC3339Nano, f[0]); err == nil {
				fromStart = append(fromStart, got.Sub(at))
				if got.Sub(at) > 300*time.Millisecond && len(f) > 1 {
					// Show where a slow try spent its time.
					b.Logf("slow try %d: started %s, answered %s (%s)", i, at.Format("15:04:05.000"), got.Format("15:04:05.000"), got.Sub(at).Round(time.Millisecond))
					for _, h := range []string{"h2", "h1"} {
						hh, _ := sb.HostByName(h)
						log, _ := os.ReadFile(filepath.Join(hh.Dir, "agent.log"))
						for _, l := range strings.Split(string(log), "\n") {
							if strings.Contains(l, f[1][:12]) || (h == "h1" && strings.Contains(l, "component=lb") && l > "time="+at.UTC().Format("2006-01-02T15:04:05")) {
								b.Logf("  %s: %s", h, l)
							}
						}
					}
				}
			}
		}
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
	report := func(what string, lat []time.Duration) (p50, p99 time.Duration) {
		if len(lat) == 0 {
			return 0, 0
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		if useTLS {
			what = "(HTTPS) " + what
		}
		fmt.Printf("lb first response %s, %d tries: p50 %s  p90 %s  p99 %s  max %s  min %s\n",
			what, len(lat), q(0.5).Round(time.Millisecond), q(0.9).Round(time.Millisecond), q(0.99).Round(time.Millisecond),
			lat[len(lat)-1].Round(time.Millisecond), lat[0].Round(time.Millisecond))
		return q(0.5), q(0.99)
	}
	p50, p99 := report("after the `docker start` call", lat)
	b.ReportMetric(float64(p50.Milliseconds()), "p50_ms")
	b.ReportMetric(float64(p99.Milliseconds()), "p99_ms")
	p50, p99 = report("after the container started (State.StartedAt)", fromStart)
	b.ReportMetric(float64(p50.Milliseconds()), "p50_from_started_ms")
	b.ReportMetric(float64(p99.Milliseconds()), "p99_from_started_ms")
}

// BenchmarkLBApply1000x10 drives a real HAProxy 2.6 (in a sandbox host's
// namespace) through drover's adapter: start with 1,000 backends × 10
// servers (500 http host routes, 500 tcp ports), then time a full
// reload of that config (render, haproxy -c, state file, swap, reload,
// show proc), a reconcile pass that changes one server (plan + runtime
// ops + validated file rewrite), and runtime-API operations per second.
// It prints the figures and HAProxy's memory.
func BenchmarkLBApply1000x10(b *testing.B) {
	sb := harness.Sandbox(b, sandbox.Options{Prefix: "drvm", Hosts: 1, Agents: false, LB: "none"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	h1, _ := sb.HostByName("h1")
	dir := b.TempDir()
	hbin, err := exec.LookPath("haproxy")
	if err != nil {
		b.Skip("haproxy not installed")
	}
	wrapper := filepath.Join(dir, "haproxy-in-h1")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec nsenter --net=/run/netns/"+h1.NetNS+" "+hbin+" \"$@\"\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	hp, err := haproxy.New(haproxy.Options{Mode: haproxy.ModeManaged, Bin: wrapper, Dir: filepath.Join(dir, "lb"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer hp.Stop()
	svcs := func(moved bool) map[string][]discovery.Instance {
		out := map[string][]discovery.Instance{}
		for i := 0; i < 1000; i++ {
			name := fmt.Sprintf("svc%04d", i)
			meta := map[string]string{contract.KeyLBMode: "http", contract.KeyLBHost: name + ".example"}
			if i%2 == 1 {
				meta = map[string]string{contract.KeyLBMode: "tcp", contract.KeyLBPort: strconv.Itoa(20000 + i)}
			}
			for j := 0; j < 10; j++ {
				addr := fmt.Sprintf("10.%d.%d.%d", i/256, i%256, j+1)
				if moved && i == 42 && j == 3 {
					addr = "10.250.0.1"
				}
				out[name] = append(out[name], discovery.Instance{ID: fmt.Sprintf("%s-%d", name, j), Service: name,
					Address: addr, Port: 8080, Meta: meta, Health: "passing"})
			}
		}
		return out
	}
	opt := lb.Options{SlotsMin: 16}
	// What cmd/drover's proxyShim hands the adapter for a state: the
	// rendered bytes and lb's filter of the server-state dump.
	config := func(st lb.State) haproxy.Config {
		return haproxy.Config{Bytes: lb.Render(st, lb.Globals(hp.Globals())),
			KeepState: func(dump string) string { return lb.KeepServerState(dump, st) }}
	}
	serverOps := func(ops []lb.Op) []haproxy.ServerOp {
		out := make([]haproxy.ServerOp, len(ops))
		for i, o := range ops {
			out[i] = haproxy.ServerOp{Kind: haproxy.OpKind(o.Kind), Backend: o.Backend, Server: o.Server, Addr: o.Addr, Weight: o.Weight}
		}
		return out
	}
	if err := hp.Start(ctx, config(lb.State{})); err != nil {
		b.Fatal(err)
	}
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	begin := time.Now()
	want, probs := lb.Desired(opt, svcs(false))
	if len(probs) > 0 {
		b.Fatalf("problems: %v", probs[0])
	}
	plan := lb.Diff(lb.State{}, want)
	planDur := time.Since(begin)
	if err := hp.Reload(ctx, config(want)); err != nil {
		b.Fatal(err)
	}
	full := time.Since(begin)
	runtime.ReadMemStats(&ms1)
	cfg, _ := os.ReadFile(hp.ConfigPath())

	// One server moved: plan + runtime ops (what the controller's loop
	// waits for), then the validated rewrite of the config and server-state
	// files (since issue 17 item 4 in the background; before, inside the
	// loop, so the next change waited for it too).
	begin = time.Now()
	next, _ := lb.Desired(opt, svcs(true))
	p2 := lb.Diff(want, next)
	if p2.Reload || len(p2.Ops) == 0 {
		b.Fatalf("one moved server planned %+v, want runtime ops", p2)
	}
	running := lb.After(want, next, p2)
	planned := time.Since(begin)
	if err := hp.Apply(ctx, serverOps(p2.Ops)); err != nil {
		b.Fatal(err)
	}
	one := time.Since(begin)
	opsOnly := one - planned
	begin = time.Now()
	if err := hp.Persist(ctx, config(running)); err != nil {
		b.Fatal(err)
	}
	persist := time.Since(begin)

	// Runtime ops per second: 2,000 weight changes through client-native.
	var ops []lb.Op
	for _, be := range running.Backends[:200] {
		for _, s := range be.Servers {
			ops = append(ops, lb.Op{Kind: "set-weight", Backend: be.Name, Server: s.Name, Weight: 50})
		}
	}
	begin = time.Now()
	if err := hp.Apply(ctx, serverOps(ops)); err != nil {
		b.Fatal(err)
	}
	opsDur := time.Since(begin)

	rss := "?"
	if procs, err := hp.Procs(ctx); err == nil {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", procs.Worker)); err == nil {
			for _, l := range strings.Split(string(st), "\n") {
				if strings.HasPrefix(l, "VmRSS:") {
					rss = strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
				}
			}
		}
	}
	b.ReportMetric(full.Seconds()*1000, "full_apply_ms")
	b.ReportMetric(float64(len(ops))/opsDur.Seconds(), "runtime_ops/s")
	fmt.Printf("lb 1,000 backends × 10 servers (%d server lines, %d KB config): plan %s (reload: %v); full apply (render + haproxy -c + reload + show proc) %s; Go heap allocated %d MB; haproxy worker RSS %s\n",
		strings.Count(string(cfg), "\n    server "), len(cfg)/1024, planDur.Round(time.Millisecond), plan.Reload, full.Round(time.Millisecond), (ms1.TotalAlloc-ms0.TotalAlloc)>>20, rss)
	fmt.Printf("lb one server moved among 10,000: plan %s + %d runtime ops %s = %s (the controller's loop is free again); background validated rewrite of config + server state %s; before the change the loop waited for both: %s\n",
		planned.Round(time.Millisecond), len(p2.Ops), opsOnly.Round(100*time.Microsecond), one.Round(time.Millisecond), persist.Round(time.Millisecond), (one + persist).Round(time.Millisecond))
	b.ReportMetric(opsOnly.Seconds()*1000, "one_change_ops_ms")
	b.ReportMetric(one.Seconds()*1000, "one_change_runtime_ms")
	b.ReportMetric(persist.Seconds()*1000, "file_write_ms")
	fmt.Printf("lb runtime API: %d ops in %s = %.0f ops/s (one master-socket connection each)\n", len(ops), opsDur.Round(time.Millisecond), float64(len(ops))/opsDur.Seconds())
}
