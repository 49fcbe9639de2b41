//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/discovery/dns"
	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

var resolveLine = regexp.MustCompile(`resolve n=(\d+) ok=(\d+) failed=(\d+) p50_ms=([0-9.]+) p99_ms=([0-9.]+) max_ms=([0-9.]+)`)

// BenchmarkDNS1000 registers 1,000 passing instances (45 services × 20,
// one × 100) through Consul's catalog, waits until h1's DNS server answers from all of
// them, then makes DROVER_DNS_BENCH_QUERIES (default 2,000) lookups of
// <service>.service.consul one after the other from a container on h1 (Go's
// resolver through Docker's embedded DNS, as an app does; A and AAAA per
// lookup) and prints p50/p99 against the 5 ms target; then the same
// lookups sent straight to drover's address (without the embedded
// resolver's hop), and drover's own time per query from its histogram.
// Run it with `make bench-dns`.
func BenchmarkDNS1000(b *testing.B) {
	// 45 services × 20 instances, and one with 100 (its answer is too
	// large for UDP: truncated, asked again over TCP): 1,000 instances.
	const services, per, big, bigPer = 45, 20, 45, 100
	total := services*per + bigPer
	queries := 2000
	if v := os.Getenv("DROVER_DNS_BENCH_QUERIES"); v != "" {
		queries, _ = strconv.Atoi(v)
	}
	sb := harness.Sandbox(b, sandbox.Options{Prefix: "drvb", Hosts: 2, Agents: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	h2, _ := sb.HostByName("h2")
	svc := func(i int) string { return fmt.Sprintf("bench%02d", i) }
	var nodes, ops []any
	for k := range 20 {
		nodes = append(nodes, map[string]any{"Node": map[string]any{"Verb": "set", "Node": map[string]any{
			"Node": fmt.Sprintf("fake%02d", k), "Address": h2.Addr.String()}}})
	}
	txnErrB(ctx, b, sb, nodes)
	for i := range services + 1 {
		n := per
		if i == big {
			n = bigPer
		}
		for j := range n {
			node, id := fmt.Sprintf("fake%02d", j), fmt.Sprintf("%s-%d", svc(i), j)
			// Addresses nobody dials: DNS only hands them out.
			addr := fmt.Sprintf("10.42.%d.%d", 100+i, 10+j)
			if i == big {
				node = fmt.Sprintf("fake%02d", j%20)
			}
			ops = append(ops,
				map[string]any{"Service": map[string]any{"Verb": "set", "Node": node, "Service": map[string]any{
					"ID": id, "Service": svc(i), "Address": addr, "Port": 8080}}},
				map[string]any{"Check": map[string]any{"Verb": "set", "Check": map[string]any{
					"Node": node, "CheckID": id + ":alive", "Name": "alive", "Status": "passing", "ServiceID": id, "ServiceName": svc(i)}}})
			if len(ops) >= 64 {
				txnErrB(ctx, b, sb, ops)
				ops = nil
			}
		}
	}
	if len(ops) > 0 {
		txnErrB(ctx, b, sb, ops)
	}
	harness.Eventually(b, 2*time.Minute, "h1's DNS server answers from 1,000 instances", func() error {
		out, err := sb.Output(ctx, "h1", "drover", "status", "--json")
		if err != nil {
			return err
		}
		var r struct{ DNS struct{ Instances int } }
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return err
		}
		if r.DNS.Instances < total {
			return fmt.Errorf("%d instances", r.DNS.Instances)
		}
		return nil
	})
	if _, err := sb.Docker(ctx, "h1", "run", "-d", "--name", "client", "--network", "drover", sandbox.DemoImage); err != nil {
		b.Fatal(err)
	}
	// Warm-up and check: one service's 20 addresses.
	got, err := resolveIn(ctx, sb, "h1", "client", svc(7)+".service.consul")
	if err != nil || strings.Count(got, ",") != per-1 {
		b.Fatalf("%s: %q (%v), want %d addresses", svc(7), got, err, per)
	}
	// The large answer: Go's resolver gets a truncated UDP reply and asks
	// again over TCP, through Docker's embedded resolver.
	got, err = resolveIn(ctx, sb, "h1", "client", svc(big)+".service.consul")
	if err != nil || strings.Count(got, ",") != bigPer-1 {
		b.Fatalf("%s: %d addresses (%v), want %d", svc(big), strings.Count(got, ",")+1, err, bigPer)
	}
	b.Logf("%s: all %d addresses (UDP truncated, then TCP)", svc(big), bigPer)
	run := func(what string, args ...string) (p50, p99 float64) {
		out, err := resolveIn(ctx, sb, "h1", "client", append([]string{"-n", strconv.Itoa(queries)}, args...)...)
		m := resolveLine.FindStringSubmatch(out)
		if err != nil || m == nil {
			b.Fatalf("resolve: %v\n%s", err, out)
		}
		ok, _ := strconv.Atoi(m[2])
		p50, _ = strconv.ParseFloat(m[4], 64)
		p99, _ = strconv.ParseFloat(m[5], 64)
		if ok != queries {
			b.Errorf("%s: %s of %d lookups failed", what, m[3], queries)
		}
		b.Logf("%s: %d lookups of a service with %d instances among %d: p50 %.3f ms, p99 %.3f ms, max %s ms",
			what, queries, per, total, p50, p99, m[6])
		return p50, p99
	}
	b.ResetTimer()
	p50, p99 := run("through Docker's embedded DNS (what an app does)", svc(23)+".service.consul")
	b.StopTimer()
	// The same lookups sent straight to drover's address, to tell drover's
	// share from the embedded resolver's hop.
	run("straight to "+sandbox.DNSAddr, "-server", sandbox.DNSAddr+":53", svc(23)+".service.consul")
	verdict := "ok"
	if p99 >= 5 {
		verdict = "short"
	}
	b.ReportMetric(p50, "p50_ms")
	b.ReportMetric(p99, "p99_ms")
	b.Logf("P? dns_p99 = %.3f ms (target 5 ms) %s", p99, verdict)
	if out, err := sb.Output(ctx, "h1", "drover", "status", "--json"); err == nil {
		var r struct {
			DNS struct {
				Stats struct {
					LatencyCount uint64   `json:"latency_count"`
					Buckets      []uint64 `json:"latency_buckets"`
				}
			}
		}
		if json.Unmarshal([]byte(out), &r) == nil {
			st := r.DNS.Stats
			for i, n := range st.Buckets {
				if float64(n) >= 0.99*float64(st.LatencyCount) {
					b.Logf("drover's own time per query (arrival to reply): p99 ≤ %v of %d queries",
						time.Duration(dns.LatencyBuckets[i]*float64(time.Second)), st.LatencyCount)
					break
				}
			}
		}
	}
	st, _ := sb.Output(ctx, "h1", "drover", "status")
	for _, l := range strings.Split(st, "\n") {
		if strings.HasPrefix(l, "dns") {
			b.Log(l)
		}
	}
}

func txnErrB(ctx context.Context, b *testing.B, sb *sandbox.Sandbox, ops []any) {
	b.Helper()
	if err := txnErr(ctx, sb, ops); err != nil {
		b.Fatal(err)
	}
}
