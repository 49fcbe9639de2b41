//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-net/drover/discovery/contract"
	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// TestWatchScale registers 2,000 services × 3 instances with lb settings
// through Consul's catalog (forged nodes of their own, each instance with
// a passing check) on a 2-host sandbox whose Consul agents keep their
// default http_max_conns_per_client (200), and checks that h1's lb
// installs every backend, applies one change of each kind within seconds,
// and that drover's footprint on its local Consul agent stays bounded:
// ≤ 10 connections throughout, no 429, ≤ 1 request/s idle. It prints the
// figures. DROVER_WATCH_SCALE_SERVICES sets another size.
func TestWatchScale(t *testing.T) {
	n := 2000
	if v := os.Getenv("DROVER_WATCH_SCALE_SERVICES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvw", Hosts: 2, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	h1, _ := sb.HostByName("h1")
	h2, _ := sb.HostByName("h2")
	// The forged instances have no drover agent behind them: h1's lb
	// proxies them only when an operator allows their network (--lb-allow).
	if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(ctx, "h1", sandbox.ProcAgent, "--lb-allow", h2.Addr.String()+"/32"); err != nil {
		t.Fatal(err)
	}
	pid := sb.ProcessPID(h1, sandbox.ProcAgent)
	if pid == 0 {
		t.Fatal("no drover agent on h1")
	}
	conns := sampleConns(ctx, t, sb, pid)

	// Every instance listens nowhere (HAProxy checks are off: check kind
	// none) on h2's underlay address, so nothing leaves the sandbox.
	addr := h2.Addr.String()
	meta := func(svc string) map[string]any {
		return map[string]any{contract.KeyLBMode: "http", contract.KeyLBHost: svc + ".scale.example", contract.KeyCheckKind: "none"}
	}
	svc := func(i int) string { return fmt.Sprintf("scale%04d", i) }
	instance := func(i, j int) (node string, ops []any) {
		node = fmt.Sprintf("fake%03d", (i*3+j)%100)
		id := fmt.Sprintf("%s-%d", svc(i), j)
		return node, []any{
			map[string]any{"Service": map[string]any{"Verb": "set", "Node": node, "Service": map[string]any{
				"ID": id, "Service": svc(i), "Address": addr, "Port": 10000 + i*3 + j, "Meta": meta(svc(i))}}},
			map[string]any{"Check": map[string]any{"Verb": "set", "Check": map[string]any{
				"Node": node, "CheckID": id + ":alive", "Name": "alive", "Status": "passing", "ServiceID": id, "ServiceName": svc(i)}}},
		}
	}
	var nodes []any
	for k := range 100 {
		nodes = append(nodes, map[string]any{"Node": map[string]any{"Verb": "set", "Node": map[string]any{
			"Node": fmt.Sprintf("fake%03d", k), "Address": addr}}})
	}
	txn(ctx, t, sb, nodes[:50])
	txn(ctx, t, sb, nodes[50:])

	var batches [][]any
	var batch []any
	for i := range n {
		for j := range 3 {
			_, ops := instance(i, j)
			batch = append(batch, ops...)
			if len(batch) >= 64 {
				batches, batch = append(batches, batch), nil
			}
		}
	}
	if len(batch) > 0 {
		batches = append(batches, batch)
	}
	begin := time.Now()
	work := make(chan []any)
	var wg sync.WaitGroup
	for range 4 { // four transactions in flight: the catalog fills in seconds, not a minute
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if err := txnErr(ctx, sb, b); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	registered := time.Since(begin)
	regEnd := time.Now()
	t.Logf("registered %d services × 3 instances in the catalog in %s", n, registered.Round(time.Millisecond))

	installed := func(st lbStatus, name string) int {
		for _, b := range st.LB.Backends {
			if strings.Contains(b.Name, name) {
				return len(b.Servers)
			}
		}
		return -1
	}
	harness.Eventually(t, 4*time.Minute, fmt.Sprintf("all %d backends installed in h1's HAProxy", n), func() error {
		st := lbState(ctx, t, sb)
		full := 0
		for _, b := range st.LB.Backends {
			if strings.Contains(b.Name, "scale") && len(b.Servers) == 3 {
				full++
			}
		}
		if full != n || st.LB.Stale {
			return fmt.Errorf("%d of %d backends with 3 servers (stale %v)", full, n, st.LB.Stale)
		}
		return nil
	})
	install, afterReg := time.Since(begin), time.Since(regEnd)
	t.Logf("all %d backends × 3 servers installed %s after the first registration, %s after the last", n, install.Round(time.Millisecond), afterReg.Round(time.Millisecond))

	// Idle: 30 s without a change.
	r0 := consulRequests(ctx, t, sb)
	idleBegin := time.Now()
	harness.Eventually(t, 60*time.Second, "30 s of idle", func() error {
		if time.Since(idleBegin) < 30*time.Second {
			return fmt.Errorf("%s idle so far", time.Since(idleBegin).Round(time.Second))
		}
		return nil
	})
	r1 := consulRequests(ctx, t, sb)
	idleRate := (r1 - r0) / time.Since(idleBegin).Seconds()

	// One change of each kind.
	var watched []time.Duration
	change := func(what string, ops []any, ok func(lbStatus) bool) time.Duration {
		t.Helper()
		b := time.Now()
		txn(ctx, t, sb, ops)
		acked := time.Since(b)
		harness.Eventually(t, 30*time.Second, what, func() error {
			if !ok(lbState(ctx, t, sb)) {
				return fmt.Errorf("not applied yet")
			}
			return nil
		})
		d := time.Since(b)
		seen := statusConsul(ctx, t, sb).Sets["lb"].LastChange.Sub(b)
		t.Logf("%s: curl's write acknowledged after %s, in drover's lb set after %s, in HAProxy's status after %s (all from the curl start)",
			what, acked.Round(time.Millisecond), seen.Round(time.Millisecond), d.Round(time.Millisecond))
		watched = append(watched, seen)
		return d
	}
	critNode, _ := instance(42, 1)
	crit := change("one instance's check critical", []any{map[string]any{"Check": map[string]any{"Verb": "set", "Check": map[string]any{
		"Node": critNode, "CheckID": svc(42) + "-1:alive", "Name": "alive", "Status": "critical", "ServiceID": svc(42) + "-1", "ServiceName": svc(42)}}}},
		func(st lbStatus) bool { return installed(st, svc(42)) == 2 })
	var ops []any
	for j := range 3 {
		node, _ := instance(100, j)
		ops = append(ops, map[string]any{"Service": map[string]any{"Verb": "delete", "Node": node, "Service": map[string]any{"ID": fmt.Sprintf("%s-%d", svc(100), j), "Service": svc(100)}}})
	}
	gone := change("one service deregistered (the lb confirms a backend emptied for --lb-confirm, 3 s)", ops,
		func(st lbStatus) bool { return installed(st, svc(100)) <= 0 })
	ops = nil
	for j := range 3 {
		_, o := instance(n, j)
		ops = append(ops, o...)
	}
	added := change("one new service", ops, func(st lbStatus) bool { return installed(st, svc(n)) == 3 })

	maxConns := conns()
	logb, _ := os.ReadFile(filepath.Join(h1.Dir, "agent.log"))
	throttled := regexp.MustCompile(`\b429\b|Too Many Requests`).FindAllIndex(logb, -1)
	rss := vmRSS(pid)
	st := statusConsul(ctx, t, sb)
	fmt.Printf("watch scale (%d services × 3 instances, h1 runs the lb): registered in %s; all installed %s after the first registration (%s after the last); "+
		"one check critical %s, one service deregistered %s (3 s confirm included), one new service %s (in drover's lb set after %v); "+
		"drover→local Consul connections max %d (sampled every 500 ms); idle Consul requests %.2f/s over %s; %d 429s in drover's log; "+
		"most Consul requests in flight at once %d; drover RSS %s; watch queries %d, lb set fetches %d, full refetches %d\n",
		n, registered.Round(time.Millisecond), install.Round(time.Millisecond), afterReg.Round(time.Millisecond), crit.Round(time.Millisecond), gone.Round(time.Millisecond),
		added.Round(time.Millisecond), watched, maxConns, idleRate, time.Since(idleBegin).Round(time.Second), len(throttled), st.Requests.MaxInFlight, rss,
		st.Queries, st.Sets["lb"].Fetches, st.Sets["lb"].FullPasses)
	if st.Requests.MaxInFlight > 10 {
		t.Errorf("drover had %d requests in flight to its Consul agent at once, want ≤ 10 (each one a connection over plain HTTP)", st.Requests.MaxInFlight)
	}
	if maxConns > 10 {
		t.Errorf("drover held %d connections to its Consul agent at once, want ≤ 10", maxConns)
	}
	if idleRate > 1 {
		t.Errorf("idle request rate %.2f/s, want ≤ 1/s", idleRate)
	}
	if len(throttled) > 0 {
		t.Errorf("drover's log has %d 429 answers", len(throttled))
	}
}

// txn runs one Consul transaction (at most 64 operations) from h1 with the
// management token.
func txn(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, ops []any) {
	t.Helper()
	if err := txnErr(ctx, sb, ops); err != nil {
		t.Fatal(err)
	}
}

func txnErr(ctx context.Context, sb *sandbox.Sandbox, ops []any) error {
	body, _ := json.Marshal(ops)
	var out, errb strings.Builder
	code, err := sb.Exec(ctx, "h1", strings.NewReader(string(body)), &out, &errb,
		"curl", "-sS", "--fail-with-body", "-X", "PUT", "--data-binary", "@-", sandbox.ConsulURL+"/v1/txn")
	if err != nil || code != 0 {
		return fmt.Errorf("consul txn: exit %d %v: %s %s", code, err, out.String(), errb.String())
	}
	return nil
}

// sampleConns counts, every 500 ms, agent pid's established TCP
// connections to the local Consul agent's HTTPS port (8501) in h1; the
// returned function gives the largest count seen so far.
func sampleConns(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, pid int) func() int {
	var mu sync.Mutex
	best := 0
	tag := fmt.Sprintf("pid=%d,", pid)
	go func() {
		for ctx.Err() == nil {
			out, err := sb.Output(ctx, "h1", "ss", "-Htnp", "state", "established", "( dport = :8501 )")
			if err == nil {
				c := 0
				for _, l := range strings.Split(out, "\n") {
					if strings.Contains(l, tag) {
						c++
					}
				}
				mu.Lock()
				best = max(best, c)
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return best
	}
}

// consulRequests is the sum of drover_consul_requests_total on h1.
func consulRequests(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) float64 {
	t.Helper()
	m, err := sb.Output(ctx, "h1", "curl", "-sf", "http://127.0.0.1:9714/metrics")
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	sc := bufio.NewScanner(strings.NewReader(m))
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "drover_consul_requests_total{") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// consulStatus is the consul part of `drover status --json`.
type consulStatus struct {
	Queries  int `json:"queries"`
	Requests struct {
		MaxInFlight int64 `json:"max_in_flight"`
	} `json:"requests"`
	Sets map[string]struct {
		Fetches    int64     `json:"fetches"`
		FullPasses int64     `json:"full_passes"`
		LastChange time.Time `json:"last_change"`
	} `json:"sets"`
}

func statusConsul(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) consulStatus {
	t.Helper()
	out, err := sb.Output(ctx, "h1", "drover", "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Consul consulStatus `json:"consul"`
	}
	_ = json.Unmarshal([]byte(out), &r)
	return r.Consul
}

// vmRSS is a process's resident set size as /proc shows it.
func vmRSS(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}
