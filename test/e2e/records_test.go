//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// TestRecords proves that Consul records repair themselves and that a
// vanished record or lease is not a leave: h2's Consul client agent is
// restarted with a wiped data dir under load through the lb on h1 (h2's
// drover-node record and container service come back within seconds, no
// peer is removed anywhere, no request fails); h2's lease key is deleted
// as a fourth host joins (the new host takes another subnet, h2 takes its
// lease back); and `drover leases` / `drover lease release` are shown.
func TestRecords(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvr", Hosts: 3, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range []string{"h1", "h2", "h3"} {
				out, _ := sb.Output(context.Background(), h, "drover", "status")
				t.Logf("%s drover status:\n%s", h, out)
			}
		}
	})
	const url = "http://127.0.0.1:80/"
	runLB(ctx, t, sb, "h2", "web-a")
	runLB(ctx, t, sb, "h3", "web-b")
	waitUp(ctx, t, sb, "web", 2)

	t.Run("consul agent restarted with a wiped data dir under load", func(t *testing.T) {
		h2key, _ := nodeIdentity(ctx, t, sb, "h2")
		h2 := sb.Host(2)
		oldID := agentNodeID(t, h2)
		stopWatch := watchPeer(ctx, t, sb, h2key, "h1", "h3")
		stopCatalog := watchCatalog(ctx, sb, "h1", "h2", "drover-node", "web")
		wait := startLoad(ctx, t, sb, url, 100, 45*time.Second)
		time.Sleep(3 * time.Second) // load established before the fault
		if _, err := sb.Kill("h2", sandbox.ProcConsul); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(h2.Dir, "consul")); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		if err := sb.Start(ctx, "h2", sandbox.ProcConsul); err != nil {
			t.Fatal(err)
		}
		t.Logf("h2's consul agent restarted with an empty data dir; it has a leader %s after the start", since(begin))
		newID := agentNodeID(t, h2)
		t.Logf("h2's consul node ID before %s, after %s (the sandbox persists node_id; with a new ID Consul refuses the node as \"reserved\")", oldID, newID)
		harness.Eventually(t, 60*time.Second, "h2 an alive member", func() error {
			out, err := sb.Output(ctx, "h1", "consul", "members")
			if err != nil || !hasAliveMember(out, "h2") {
				return fmt.Errorf("members: %v\n%s", err, out)
			}
			return nil
		})
		member := time.Now()
		t.Logf("h2 an alive member %s after the start", since(begin))
		harness.Eventually(t, 5*time.Second, "h2's agent restored its records on the local agent", func() error {
			if n := recordRepairs(ctx, sb, "h2"); n < 1 {
				return fmt.Errorf("record_repairs %d", n)
			}
			return nil
		})
		t.Logf("h2's drover agent restored its drover-node record by %s after the start (%s after it was a member)", since(begin), since(member))
		// Accepted: the catalog's node h2 is the new agent (its new ID),
		// which Consul allows only once it let go of the old ID.
		harness.Eventually(t, 120*time.Second, "the catalog's node h2 carries the agent's node ID", func() error {
			out, err := sb.Output(ctx, "h1", "consul", "catalog", "nodes", "-detailed")
			if err != nil {
				return err
			}
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[0] == "h2" && f[1] == newID {
					return nil
				}
			}
			return fmt.Errorf("catalog nodes:\n%s", out)
		})
		accepted := time.Now()
		t.Logf("h2 accepted in the catalog (node ID as the agent has it) %s after the start", since(begin))
		harness.Eventually(t, 30*time.Second, "h2's drover-node and web back in the catalog", func() error {
			out, err := sb.Output(ctx, "h1", "consul", "catalog", "services", "-node", "h2")
			if err != nil || !strings.Contains(out, "drover-node") || !strings.Contains(out, "web") {
				return fmt.Errorf("services of h2: %v\n%s", err, out)
			}
			return nil
		})
		back := time.Since(accepted)
		t.Logf("h2's drover-node and container service in the catalog %s after it was accepted (%s after the start)",
			back.Round(time.Millisecond), since(begin))
		if back > 5*time.Second {
			t.Errorf("records back %s after the agent was accepted, want ≤ 5s", back)
		}
		harness.Eventually(t, 10*time.Second, "h2's web instance passing", func() error {
			out, err := sb.Output(ctx, "h1", "drover", "services", "web")
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) >= 5 && f[3] == "h2" && strings.Contains(l, "passing") && !strings.Contains(l, "critical") {
					return nil
				}
			}
			return fmt.Errorf("drover services web: %v\n%s", err, out)
		})
		waitUp(ctx, t, sb, "web", 2)
		r := wait()
		gaps := stopWatch()
		if lost := stopCatalog(); len(lost) > 0 {
			t.Logf("the catalog lacked h2's drover-node or web at %d of its 200 ms polls (%s … %s)", len(lost), lost[0], lost[len(lost)-1])
		} else {
			t.Logf("the catalog never lacked h2's drover-node or web (polled every 200 ms)")
		}
		if n := recordRepairs(ctx, sb, "h2"); n != 1 {
			t.Errorf("h2 record_repairs = %d, want 1", n)
		}
		t.Logf("load during the restart: %s", r.Line)
		if r.Failed != 0 {
			t.Errorf("%d failed requests during h2's consul restart", r.Failed)
		}
		if len(gaps) > 0 {
			t.Errorf("h2's peer removed during the restart: %v", gaps)
		}
		for _, h := range []string{"h1", "h3"} {
			hs := handshakes(ctx, t, sb, h)["h2"]
			if hs.IsZero() || time.Since(hs) > 3*time.Minute {
				t.Errorf("%s: last handshake with h2 %v", h, hs)
			}
			t.Logf("%s: h2's peer kept throughout; last handshake %s ago", h, since(hs))
		}
	})

	t.Run("a vanished record keeps its peer", func(t *testing.T) {
		// h2's agent is paused so that it cannot restore its record: the
		// record stays absent from the catalog for 10 s.
		h2key, _ := nodeIdentity(ctx, t, sb, "h2")
		pid := sb.ProcessPID(sb.Host(2), sandbox.ProcAgent)
		if pid == 0 {
			t.Fatal("h2's agent is not running")
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer syscall.Kill(pid, syscall.SIGCONT)
		wait := startLoad(ctx, t, sb, url, 100, 15*time.Second)
		if out, err := sb.Output(ctx, "h2", "consul", "services", "deregister", "-id", "drover-node"); err != nil {
			t.Fatalf("deregistering h2's drover-node: %v %s", err, out)
		}
		harness.Eventually(t, 10*time.Second, "h2's record gone from the catalog", func() error {
			out, err := sb.Output(ctx, "h1", "consul", "catalog", "services", "-node", "h2")
			if err != nil || strings.Contains(out, "drover-node") {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
		stopWatch := watchPeer(ctx, t, sb, h2key, "h1", "h3")
		time.Sleep(10 * time.Second) // the absence lasts; the watch looks every 300 ms
		for _, h := range []string{"h1", "h3"} {
			out, _ := sb.Output(ctx, h, "drover", "status")
			if l := grepLines(out, "record absent"); !strings.Contains(l, "h2") {
				t.Errorf("%s status does not show h2 as record absent:\n%s", h, out)
			} else {
				t.Logf("%s status while h2's record is absent: %s", h, strings.TrimSpace(l))
			}
		}
		for _, l := range leases(ctx, t, sb, "h1") {
			if l.Node != "h2" {
				continue
			}
			if l.Record || l.Serf != "record absent" || l.FailingFor == "" {
				t.Errorf("drover leases on h1 for h2 while its record is absent: %+v", l)
			}
		}
		out, _ := sb.Output(ctx, "h1", "drover", "leases")
		t.Logf("drover leases on h1 while h2's record is absent:\n%s", out)
		gaps := stopWatch()
		if len(gaps) > 0 {
			t.Errorf("h2's peer removed while only its record was absent: %v", gaps)
		}
		_ = syscall.Kill(pid, syscall.SIGCONT)
		resumed := time.Now()
		harness.Eventually(t, 5*time.Second, "h2's record back in the catalog", func() error {
			out, err := sb.Output(ctx, "h1", "consul", "catalog", "services", "-node", "h2")
			if err != nil || !strings.Contains(out, "drover-node") {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
		t.Logf("h2's record back in the catalog %s after its agent resumed", since(resumed))
		r := wait()
		t.Logf("load while h2's record was absent: %s", r.Line)
		if r.Failed != 0 {
			t.Errorf("%d failed requests while h2's record was absent", r.Failed)
		}
	})

	t.Run("a vanished lease never has two owners", func(t *testing.T) {
		_, h2sub := nodeIdentity(ctx, t, sb, "h2")
		sb4 := growSandbox(ctx, t, sb, 4)
		// h2's agent is paused (SIGSTOP; its tunnel and Consul record stay)
		// so that it cannot take its lease back before h4 chooses: what
		// keeps h4 off h2's subnet is h2's drover-node record alone.
		pid := sb.ProcessPID(sb.Host(2), sandbox.ProcAgent)
		if pid == 0 {
			t.Fatal("h2's agent is not running")
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		defer resume()
		key := "drover/v1/leases/" + strings.Replace(h2sub, "/", "_", 1)
		if out, err := sb.Output(ctx, "h1", "consul", "kv", "delete", key); err != nil {
			t.Fatalf("deleting h2's lease: %v %s", err, out)
		}
		deleted := time.Now()
		if err := sb4.Start(ctx, "h4", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		_, h4sub := nodeIdentity(ctx, t, sb4, "h4")
		t.Logf("h4 started %s after h2's lease was deleted (h2's agent paused) and took %s; h2 has %s", since(deleted), h4sub, h2sub)
		if h4sub == h2sub {
			t.Fatalf("h4 took h2's subnet %s", h2sub)
		}
		for _, l := range leases(ctx, t, sb, "h1") {
			if l.Subnet == h2sub {
				t.Fatalf("h2's lease is back before h2 resumed: %+v", l)
			}
		}
		resume()
		resumedAt := time.Now()
		harness.Eventually(t, 5*time.Second, "h2 holds its lease again", func() error {
			for _, l := range leases(ctx, t, sb, "h1") {
				if l.Subnet == h2sub && l.Node == "h2" {
					return nil
				}
			}
			return fmt.Errorf("no lease of %s naming h2", h2sub)
		})
		t.Logf("h2 holds its lease again %s after its agent resumed", since(resumedAt))
		owners := map[string][]string{}
		for _, l := range leases(ctx, t, sb, "h1") {
			owners[l.Subnet] = append(owners[l.Subnet], l.Node)
		}
		for s, o := range owners {
			if len(o) != 1 {
				t.Errorf("subnet %s has owners %v", s, o)
			}
		}
		out, _ := sb.Output(ctx, "h1", "drover", "leases")
		t.Logf("drover leases on h1:\n%s", out)
		key4, _ := nodeIdentity(ctx, t, sb4, "h4")
		if out, err := sb4.Output(ctx, "h4", "drover", "leave"); err != nil {
			t.Fatalf("drover leave on h4: %v %s", err, out)
		}
		left := time.Now()
		for _, h := range []string{"h1", "h2", "h3"} {
			harness.Eventually(t, 5*time.Second, h+" drops h4's peer after leave", func() error {
				if out, _ := sb.Output(ctx, h, "wg", "show", "drover0", "peers"); strings.Contains(out, key4) {
					return fmt.Errorf("h4's peer still on %s", h)
				}
				return nil
			})
		}
		t.Logf("h4's peer gone everywhere %s after drover leave (the lease release is the withdrawal)", since(left))
	})

	t.Run("drover leases and lease release", func(t *testing.T) {
		ghost := `{"node":"ghost","public_key":"gGhostGhostGhostGhostGhostGhostGhostGhost0="}`
		if out, err := sb.Output(ctx, "h1", "consul", "kv", "put", "drover/v1/leases/10.42.200.0_24", ghost); err != nil {
			t.Fatalf("writing a stale lease: %v %s", err, out)
		}
		var ghostSeen bool
		for _, l := range leases(ctx, t, sb, "h1") {
			switch l.Node {
			case "ghost":
				ghostSeen = true
				if l.Serf != "record absent" || l.Record {
					t.Errorf("ghost lease: %+v", l)
				}
			case "h1", "h2", "h3":
				if !l.Record || l.Serf != "passing" {
					t.Errorf("lease of live %s: %+v", l.Node, l)
				}
			}
		}
		if !ghostSeen {
			t.Fatal("drover leases lacks the stale lease")
		}
		_, h3sub := nodeIdentity(ctx, t, sb, "h3")
		if out, err := sb.Output(ctx, "h1", "drover", "lease", "release", h3sub); err == nil || !strings.Contains(err.Error(), "alive") {
			t.Errorf("releasing live h3's lease: %v %s", err, out)
		} else {
			t.Logf("release of live h3's lease refused: %v", err)
		}
		out, err := sb.Output(ctx, "h1", "drover", "lease", "release", "10.42.200.0/24")
		if err != nil {
			t.Fatalf("releasing the stale lease: %v %s", err, out)
		}
		t.Logf("%s", strings.TrimSpace(out))
		for _, l := range leases(ctx, t, sb, "h1") {
			if l.Node == "ghost" {
				t.Errorf("stale lease still there: %+v", l)
			}
		}
	})
}

// recordRepairs is overlay.record_repairs of host's `drover status --json`.
func recordRepairs(ctx context.Context, sb *sandbox.Sandbox, host string) int {
	var st struct {
		Overlay struct {
			RecordRepairs int `json:"record_repairs"`
		} `json:"overlay"`
	}
	out, err := sb.Output(ctx, host, "drover", "status", "--json")
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		return -1
	}
	return st.Overlay.RecordRepairs
}

// watchCatalog polls, from host, node's services in the catalog every
// 200 ms until stop is called, and returns each moment one of want was
// missing.
func watchCatalog(ctx context.Context, sb *sandbox.Sandbox, host, node string, want ...string) (stop func() []string) {
	ctx, cancel := context.WithCancel(ctx)
	var lost []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			out, err := sb.Output(ctx, host, "consul", "catalog", "services", "-node", node)
			if err == nil {
				for _, w := range want {
					if !strings.Contains(out, w) {
						lost = append(lost, time.Now().Format("15:04:05.000"))
						break
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() []string {
		cancel()
		<-done
		return lost
	}
}

// leaseRow is one row of `drover leases --json`.
type leaseRow struct {
	Subnet string `json:"subnet"`
	Node   string `json:"node"`
	Record bool   `json:"record"`
	Serf   string `json:"serf_health"`
	// FailingFor is how long h1's agent has seen the node failing or absent.
	FailingFor string `json:"failing_for"`
}

func leases(ctx context.Context, t testing.TB, sb *sandbox.Sandbox, host string) []leaseRow {
	t.Helper()
	out, err := sb.Output(ctx, host, "drover", "leases", "--json")
	if err != nil {
		t.Fatalf("drover leases on %s: %v %s", host, err, out)
	}
	var rows []leaseRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("drover leases --json: %v\n%s", err, out)
	}
	return rows
}

// watchPeer polls `wg show drover0 peers` on hosts every 300 ms until the
// returned stop is called, and returns each moment key was missing.
func watchPeer(ctx context.Context, t testing.TB, sb *sandbox.Sandbox, key string, hosts ...string) (stop func() []string) {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var gaps []string
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				out, err := sb.Output(ctx, h, "wg", "show", "drover0", "peers")
				if err == nil && !strings.Contains(out, key) {
					mu.Lock()
					gaps = append(gaps, h+"@"+time.Now().Format("15:04:05.000"))
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(300 * time.Millisecond):
				}
			}
		}()
	}
	return func() []string {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return gaps
	}
}

// agentNodeID is the node ID of host h's Consul agent: node_id of its
// configuration when set, else the one the agent generated in its data dir.
func agentNodeID(t testing.TB, h sandbox.Host) string {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(h.Dir, "consul.hcl")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == "node_id" {
				return strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
	}
	var b []byte
	err := harness.Wait(10*time.Second, func() error {
		var err error
		b, err = os.ReadFile(filepath.Join(h.Dir, "consul", "node-id"))
		return err
	})
	if err != nil {
		t.Fatalf("reading %s's consul node ID: %v", h.Name, err)
	}
	return strings.TrimSpace(string(b))
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }
