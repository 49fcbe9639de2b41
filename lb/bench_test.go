package lb

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/drover-net/drover/discovery"

	"github.com/drover-net/drover/discovery/contract"
)

// bigServices is a cluster of n services of m instances each: even
// services are http on port 80 with host svc<i>.example, odd ones tcp on
// port 20000+i. Instance j of service i is at 10.<i/256>.<i%256>.<j+1>.
func bigServices(n, m int) map[string][]discovery.Instance {
	svcs := make(map[string][]discovery.Instance, n)
	for i := range n {
		name := fmt.Sprintf("svc%04d", i)
		kv := []string{contract.KeyLBMode, "http", contract.KeyLBHost, name + ".example"}
		if i%2 == 1 {
			kv = []string{contract.KeyLBMode, "tcp", contract.KeyLBPort, fmt.Sprint(20000 + i)}
		}
		ins := make([]discovery.Instance, m)
		for j := range m {
			ins[j] = inst(fmt.Sprintf("drover:h%d:%012x:8080", j, i*m+j), fmt.Sprintf("10.%d.%d.%d", i/256, i%256, j+1), 8080, kv...)
		}
		svcs[name] = ins
	}
	return svcs
}

// desiredOK is Desired that fails on any Problem.
func desiredOK(tb testing.TB, svcs map[string][]discovery.Instance) State {
	tb.Helper()
	st, probs := Desired(Options{}, svcs)
	if len(probs) > 0 {
		tb.Fatalf("%d problems, first: %s", len(probs), probs[0])
	}
	return st
}

// BenchmarkPlan1000x10 times one reconcile pass over 1,000 backends of 10
// servers (500 http routes on port 80, 500 tcp ports): Desired, Diff
// against the running state, After and Render.
//
//   - cold: nothing runs yet (a reload of everything);
//   - unchanged: the running state is the desired one (the periodic resync);
//   - one-server: one server of one backend moved to a new address, which
//     must be runtime operations only.
func BenchmarkPlan1000x10(b *testing.B) {
	svcs := bigServices(1000, 10)
	running := desiredOK(b, svcs)
	moved := bigServices(1000, 10)
	moved["svc0042"][3].Address = "10.250.0.1"

	for _, bc := range []struct {
		name string
		old  State
		in   map[string][]discovery.Instance
		ok   func(Plan) error
	}{
		{"cold", State{}, svcs, func(p Plan) error {
			if !p.Reload {
				return fmt.Errorf("no reload from nothing")
			}
			return nil
		}},
		{"unchanged", running, svcs, func(p Plan) error {
			if !p.Empty() {
				return fmt.Errorf("plan not empty:\n%s", p)
			}
			return nil
		}},
		{"one-server", running, moved, func(p Plan) error {
			if p.Reload || len(p.Ops) == 0 {
				return fmt.Errorf("want runtime ops only, got:\n%s", p)
			}
			return nil
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var cfg []byte
			for b.Loop() {
				st, _ := Desired(Options{}, bc.in)
				p := Diff(bc.old, st)
				if err := bc.ok(p); err != nil {
					b.Fatal(err)
				}
				cfg = Render(After(bc.old, st, p), DefaultGlobals)
			}
			b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(time.Millisecond), "ms/op")
			b.ReportMetric(float64(len(cfg)), "cfg-bytes")
		})
	}
}

// TestPlanOneServerIsRuntimeOnly checks, without the benchmark's timing,
// that moving one server of the 1,000-backend cluster is a few runtime
// operations and that applying them reaches the desired state.
func TestPlanOneServerIsRuntimeOnly(t *testing.T) {
	running := desiredOK(t, bigServices(1000, 10))
	moved := bigServices(1000, 10)
	moved["svc0042"][3].Address = "10.250.0.1"
	want := desiredOK(t, moved)
	p := Diff(running, want)
	if p.Reload || len(p.Ops) == 0 || len(p.Ops) > 3 {
		t.Fatalf("want a drain, set-addr and enable, got:\n%s", p)
	}
	if again := Diff(After(running, want, p), want); !again.Empty() {
		t.Errorf("second Diff not empty:\n%s", again)
	}
}

// TestRender1000x10HAProxyCheck validates the 1,000 × 10 file (10,000
// servers in 16,000 slot lines) with haproxy -c and logs how long that
// takes: drover runs the same check before every reload.
func TestRender1000x10HAProxyCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping haproxy -c on a large file")
	}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not on PATH")
	}
	st := desiredOK(t, bigServices(1000, 10))
	dir := t.TempDir()
	g := Globals{StatsSocket: filepath.Join(dir, "haproxy.sock"), StateFile: filepath.Join(dir, "haproxy.state")}
	// drover keeps the state file; one with only a version line stands in.
	if err := os.WriteFile(g.StateFile, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	cfg := Render(st, g)
	rendered := time.Since(begin)
	f := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(f, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	begin = time.Now()
	out, err := exec.Command(bin, "-c", "-f", f).CombinedOutput()
	took := time.Since(begin)
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%.2000s", err, out)
	}
	if bytes.Contains(out, []byte("[WARNING]")) {
		t.Errorf("haproxy -c warns:\n%.2000s", out)
	}
	servers := bytes.Count(cfg, []byte("\n    server "))
	t.Logf("%d backends, %d frontends, %d server lines, %d bytes: Render %s, haproxy -c %s",
		len(st.Backends), len(st.Frontends), servers, len(cfg), rendered.Round(time.Millisecond), took.Round(time.Millisecond))
}
