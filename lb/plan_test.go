package lb

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/contract"
)

// webState is the desired state of service web with the given instances
// (id, ip pairs), port 8080.
func webState(t *testing.T, ids ...string) State {
	t.Helper()
	var ins []discovery.Instance
	for i := 0; i+1 < len(ids); i += 2 {
		ins = append(ins, inst(ids[i], ids[i+1], 8080, contract.KeyLBMode, "http"))
	}
	s, probs := Desired(Options{SlotsMin: 4}, map[string][]discovery.Instance{"web": ins})
	if len(probs) > 0 {
		t.Fatalf("problems: %v", probs)
	}
	return s
}

func TestDiff(t *testing.T) {
	base := webState(t, "w1", "10.0.0.1", "w2", "10.0.0.2")
	withWeight := base.Clone()
	withWeight.Backends[0].Servers[1].Weight = 10
	// Running state after w1 was drained at runtime.
	drained := base.Clone()
	drained.Backends[0].Servers[0].Enabled = false
	slowCheck := base.Clone()
	slowCheck.Backends[0].Servers[1].Check.Interval = 10 * time.Second
	leastconn := base.Clone()
	leastconn.Backends[0].Balance = "leastconn"
	full := webState(t, "w1", "10.0.0.1", "w2", "10.0.0.2", "w3", "10.0.0.3", "w4", "10.0.0.4")

	tests := []struct {
		name     string
		old, new State
		want     Plan
	}{
		{name: "no change", old: base, new: base},
		{
			name: "from nothing reloads",
			new:  base,
			want: Plan{Reload: true, Reasons: []string{"frontend http_80 added", "backend web added"}},
		},
		{
			name: "to nothing reloads",
			old:  base,
			want: Plan{Reload: true, Reasons: []string{"frontend http_80 removed", "backend web removed"}},
		},
		{
			name: "new server takes next free slot",
			old:  base,
			new:  webState(t, "w1", "10.0.0.1", "w2", "10.0.0.2", "w3", "10.0.0.3"),
			want: Plan{Ops: []Op{
				{Kind: "set-addr", Backend: "web", Server: "slot2", Addr: "10.0.0.3:8080"},
				{Kind: "enable", Backend: "web", Server: "slot2"},
			}},
		},
		{
			name: "new server sorting first still takes a free slot",
			old:  base,
			new:  webState(t, "a0", "10.0.0.9", "w1", "10.0.0.1", "w2", "10.0.0.2"),
			want: Plan{Ops: []Op{
				{Kind: "set-addr", Backend: "web", Server: "slot2", Addr: "10.0.0.9:8080"},
				{Kind: "enable", Backend: "web", Server: "slot2"},
			}},
		},
		{
			name: "removed server is drained",
			old:  base,
			new:  webState(t, "w2", "10.0.0.2"),
			want: Plan{Ops: []Op{{Kind: "drain-disable", Backend: "web", Server: "w1"}}},
		},
		{
			name: "drained slot is reused first when free",
			old:  drained,
			new:  webState(t, "w2", "10.0.0.2", "w3", "10.0.0.3"),
			want: Plan{Ops: []Op{
				{Kind: "set-addr", Backend: "web", Server: "w1", Addr: "10.0.0.3:8080"},
				{Kind: "enable", Backend: "web", Server: "w1"},
			}},
		},
		{
			name: "server back at its old address is re-enabled",
			old:  drained,
			new:  base,
			want: Plan{Ops: []Op{{Kind: "enable", Backend: "web", Server: "w1"}}},
		},
		{
			name: "replacement in a full pool reuses the vacated slot",
			old:  full,
			new:  webState(t, "w1", "10.0.0.1", "w2", "10.0.0.2", "w3", "10.0.0.3", "w5", "10.0.0.5"),
			want: Plan{Ops: []Op{
				{Kind: "drain-disable", Backend: "web", Server: "w4"},
				{Kind: "set-addr", Backend: "web", Server: "w4", Addr: "10.0.0.5:8080"},
				{Kind: "enable", Backend: "web", Server: "w4"},
			}},
		},
		{
			name: "new server with its own weight",
			old:  base,
			new: func() State {
				s := webState(t, "w1", "10.0.0.1", "w2", "10.0.0.2", "w3", "10.0.0.3")
				s.Backends[0].Servers[2].Weight = 7
				return s
			}(),
			want: Plan{Ops: []Op{
				{Kind: "set-addr", Backend: "web", Server: "slot2", Addr: "10.0.0.3:8080"},
				{Kind: "set-weight", Backend: "web", Server: "slot2", Weight: 7},
				{Kind: "enable", Backend: "web", Server: "slot2"},
			}},
		},
		{
			name: "weight change",
			old:  base,
			new:  withWeight,
			want: Plan{Ops: []Op{{Kind: "set-weight", Backend: "web", Server: "w2", Weight: 10}}},
		},
		{
			name: "pool growth reloads",
			old:  full,
			new:  webState(t, "w1", "10.0.0.1", "w2", "10.0.0.2", "w3", "10.0.0.3", "w4", "10.0.0.4", "w5", "10.0.0.5"),
			want: Plan{Reload: true, Reasons: []string{"backend web slots 4 → 8"}},
		},
		{
			name: "check change reloads without ops",
			old:  base,
			new:  slowCheck,
			want: Plan{Reload: true, Reasons: []string{"backend web server w2 check changed"}},
		},
		{
			name: "balance change reloads, weight ops are dropped",
			old:  withWeight,
			new:  leastconn,
			want: Plan{Reload: true, Reasons: []string{"backend web balance roundrobin → leastconn"}},
		},
		{
			name: "new route reloads",
			old:  base,
			new: func() State {
				s := base.Clone()
				s.Frontends[0].Routes = []Route{{Host: "x.example", Backend: "web"}}
				return s
			}(),
			want: Plan{Reload: true, Reasons: []string{"frontend http_80 changed"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oldCopy, newCopy := tt.old.Clone(), tt.new.Clone()
			got := Diff(tt.old, tt.new)
			if !tt.old.Equal(oldCopy) || !tt.new.Equal(newCopy) {
				t.Fatal("Diff changed its inputs")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Diff (-want +got):\n%s", diff)
			}
			if got.Reload && len(got.Ops) > 0 {
				t.Errorf("plan both reloads and has ops")
			}
			// Applying the plan reaches new: a second Diff is empty.
			after := After(tt.old, tt.new, got)
			if again := Diff(after, tt.new); !again.Empty() {
				t.Errorf("second Diff not empty:\n%s", again)
			}
		})
	}
}

func TestPlanString(t *testing.T) {
	p := Plan{Reload: true, Reasons: []string{"backend web added"}}
	if got, want := p.String(), "reload: backend web added\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	p = Plan{Ops: []Op{
		{Kind: "drain-disable", Backend: "web", Server: "w1"},
		{Kind: "set-addr", Backend: "web", Server: "slot2", Addr: "10.0.0.3:80"},
		{Kind: "set-weight", Backend: "web", Server: "slot2", Weight: 5},
		{Kind: "enable", Backend: "web", Server: "slot2"},
	}}
	want := "drain-disable web/w1\nset-addr web/slot2 10.0.0.3:80\nset-weight web/slot2 5\nenable web/slot2\n"
	if diff := cmp.Diff(want, p.String()); diff != "" {
		t.Errorf("String (-want +got):\n%s", diff)
	}
}

// TestAfterRendersSlots checks that a state reached by runtime ops renders
// the names HAProxy already has.
func TestAfterRendersSlots(t *testing.T) {
	old := webState(t, "w1", "10.0.0.1")
	nw := webState(t, "w1", "10.0.0.1", "w2", "10.0.0.2")
	p := Diff(old, nw)
	after := After(old, nw, p)
	got := string(Render(after, DefaultGlobals))
	want := string(Render(old, DefaultGlobals))
	want = replaceOnce(want, "server slot1 127.0.0.1:1 weight 100 check inter 2s fall 3 rise 2 disabled",
		"server slot1 10.0.0.2:8080 weight 100 check inter 2s fall 3 rise 2")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Render(After) (-want +got):\n%s", diff)
	}
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}

func TestDiffReloadsOnBackendOptionsAndEdge(t *testing.T) {
	base := State{Backends: []Backend{{Name: "web", Mode: "http", Balance: "roundrobin", Slots: 4, TunnelTimeout: time.Hour,
		Servers: []Server{srv("w1", "10.0.0.1:80")}}}}
	for name, change := range map[string]func(*State){
		"sticky":         func(s *State) { s.Backends[0].Sticky = true },
		"proxy protocol": func(s *State) { s.Backends[0].ProxyProtocol = "v2" },
		"tunnel timeout": func(s *State) { s.Backends[0].TunnelTimeout = time.Minute },
		"trusted proxy":  func(s *State) { s.Edge.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} },
		"accept proxy":   func(s *State) { s.Edge.AcceptProxy = true },
		"hard stop":      func(s *State) { s.Edge.HardStopAfter = time.Minute },
	} {
		next := base.Clone()
		change(&next)
		if p := Diff(base, next); !p.Reload {
			t.Errorf("%s changed: plan %v, want a reload", name, p)
		}
		if p := Diff(next, next.Clone()); !p.Empty() {
			t.Errorf("%s: unchanged state gives plan %v", name, p)
		}
	}
}

// A service whose instances all fail and come back (a lossy link, a host's
// Consul agent failing; fault case T11) changes HAProxy through runtime
// operations only: its frontend and backend stay, with the service's own
// check on the empty slots, so neither the drain nor the return reloads.
// A new service whose first instance is not passing yet costs its one
// reload at registration; passing is then a runtime operation.
func TestAllFailingAndBackAreRuntimeOps(t *testing.T) {
	meta := []string{contract.KeyLBMode, "http", contract.KeyCheckKind, "http", contract.KeyCheckPath, "/healthz", contract.KeyCheckInterval, "1s"}
	snap := func(health string) map[string][]discovery.Instance {
		return map[string][]discovery.Instance{"web": {
			with(created(inst("w1", "10.0.0.1", 80, meta...), 5), health),
			with(created(inst("w2", "10.0.0.2", 80, meta...), 6), health),
		}}
	}
	up, _ := Desired(Options{}, snap("passing"))
	down, _ := Desired(Options{}, snap("critical"))
	if len(down.Backends) != 1 || len(down.Frontends) != 1 || len(down.Backends[0].Servers) != 0 {
		t.Fatalf("all critical: %+v, want the frontend and an empty backend", down)
	}
	drain := Diff(up, down)
	if drain.Reload {
		t.Fatalf("all instances failing reloads: %v", drain.Reasons)
	}
	drained := After(up, down, drain)
	back := Diff(drained, up)
	if back.Reload || len(back.Ops) == 0 {
		t.Fatalf("instances back: %+v, want runtime ops only", back)
	}
	if first := Diff(State{}, down); !first.Reload {
		t.Fatal("a new service not passing yet: no reload for its frontend")
	} else if p := Diff(down, up); p.Reload || len(p.Ops) == 0 {
		t.Fatalf("new service's instances passing: %+v, want runtime ops only", p)
	}
	// The rendered files agree: the empty backend's slots carry the
	// service's check, as its servers will.
	g := Globals{StatsSocket: "/run/x.sock", StateFile: "/run/x.state"}
	if r := string(Render(down, g)); !strings.Contains(r, "option httpchk GET /healthz") || !strings.Contains(r, "inter 1s") {
		t.Errorf("empty backend renders without the service's check:\n%s", r)
	}
}
