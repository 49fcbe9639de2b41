package lb

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/drover-net/drover/discovery"

	"github.com/drover-net/drover/discovery/contract"
)

// inst builds a passing instance; kv are Meta key/value pairs.
func inst(id, addr string, port int, kv ...string) discovery.Instance {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return discovery.Instance{ID: id, Address: addr, Port: port, Meta: m, Health: "passing"}
}

// withStateDefaults fills in what Desired sets when Options leave it
// unset: the edge's hard-stop-after and every backend's tunnel timeout.
func withStateDefaults(s State) State {
	if s.Edge.HardStopAfter == 0 {
		s.Edge.HardStopAfter = DefaultHardStopAfter
	}
	for i := range s.Backends {
		if s.Backends[i].TunnelTimeout == 0 {
			s.Backends[i].TunnelTimeout = DefaultTunnelTimeout
		}
	}
	return s
}

// with sets the instance's health.
func with(in discovery.Instance, health string) discovery.Instance {
	in.Health = health
	return in
}

// created sets the instance's Consul create index.
func created(in discovery.Instance, index uint64) discovery.Instance {
	in.CreateIndex = index
	return in
}

func srv(name, addr string) Server {
	return Server{Name: name, Addr: addr, Weight: 100, Check: DefaultCheck, Enabled: true}
}

func TestDesired(t *testing.T) {
	httpCheck := DefaultCheck
	httpCheck.Kind, httpCheck.Path = "http", "/healthz"
	critical := inst("web-3", "10.42.0.3", 8080, contract.KeyLBMode, "http")
	critical.Health = "critical"

	tests := []struct {
		name     string
		opt      Options
		services map[string][]discovery.Instance
		want     State
		probs    []Problem
	}{
		{
			name: "empty",
		},
		{
			name: "http default port, unhealthy and non-lb instances left out",
			services: map[string][]discovery.Instance{
				"web": {
					inst("web-2", "10.42.0.2", 8080, contract.KeyLBMode, "http"),
					inst("web-1", "10.42.0.1", 8080, contract.KeyLBMode, "http", "weight", "50"),
					critical,
				},
				"db": {inst("db-1", "10.42.0.9", 5432)},
			},
			want: State{
				Frontends: []Frontend{{Name: "http_80", Mode: "http", Port: 80, Routes: []Route{{Backend: "web"}}}},
				Backends: []Backend{{Name: "web", Mode: "http", Balance: "roundrobin", Slots: 4, Servers: []Server{
					{Name: "web-1", Addr: "10.42.0.1:8080", Weight: 50, Check: DefaultCheck, Enabled: true},
					srv("web-2", "10.42.0.2:8080"),
				}}},
			},
		},
		{
			name: "routes sorted most specific first",
			opt:  Options{HTTPPort: 8000, DefaultBalance: "leastconn"},
			services: map[string][]discovery.Instance{
				"api":  {inst("a", "10.0.0.1", 1, contract.KeyLBMode, "http", contract.KeyLBHost, "web.example", contract.KeyLBPath, "/api")},
				"web":  {inst("w", "10.0.0.2", 1, contract.KeyLBMode, "http", contract.KeyLBHost, "web.example")},
				"all":  {inst("c", "10.0.0.3", 1, contract.KeyLBMode, "http")},
				"img":  {inst("i", "10.0.0.4", 1, contract.KeyLBMode, "http", contract.KeyLBPath, "/img")},
				"long": {inst("l", "10.0.0.5", 1, contract.KeyLBMode, "http", contract.KeyLBHost, "static.web.example")},
			},
			want: State{
				Frontends: []Frontend{{Name: "http_8000", Mode: "http", Port: 8000, Routes: []Route{
					{Host: "static.web.example", Backend: "long"},
					{Host: "web.example", PathPrefix: "/api", Backend: "api"},
					{Host: "web.example", Backend: "web"},
					{PathPrefix: "/img", Backend: "img"},
					{Backend: "all"},
				}}},
				Backends: []Backend{
					{Name: "all", Mode: "http", Balance: "leastconn", Slots: 4, Servers: []Server{srv("c", "10.0.0.3:1")}},
					{Name: "api", Mode: "http", Balance: "leastconn", Slots: 4, Servers: []Server{srv("a", "10.0.0.1:1")}},
					{Name: "img", Mode: "http", Balance: "leastconn", Slots: 4, Servers: []Server{srv("i", "10.0.0.4:1")}},
					{Name: "long", Mode: "http", Balance: "leastconn", Slots: 4, Servers: []Server{srv("l", "10.0.0.5:1")}},
					{Name: "web", Mode: "http", Balance: "leastconn", Slots: 4, Servers: []Server{srv("w", "10.0.0.2:1")}},
				},
			},
		},
		{
			name: "tcp frontend and slots grow to a power of two",
			opt:  Options{SlotsMin: 2},
			services: map[string][]discovery.Instance{
				"pg": {
					inst("drover:h1:abc:5432", "10.42.1.2", 5432, contract.KeyLBMode, "tcp", contract.KeyLBPort, "5432", contract.KeyLBBalance, "source"),
					inst("drover:h2:def:5432", "10.42.2.2", 5432, contract.KeyLBMode, "tcp", contract.KeyLBPort, "5432", contract.KeyLBBalance, "source"),
					inst("drover:h3:123:5432", "10.42.3.2", 5432, contract.KeyLBMode, "tcp", contract.KeyLBPort, "5432", contract.KeyLBBalance, "source"),
				},
			},
			want: State{
				Frontends: []Frontend{{Name: "tcp_5432", Mode: "tcp", Port: 5432, DefaultBackend: "pg"}},
				Backends: []Backend{{Name: "pg", Mode: "tcp", Balance: "source", Slots: 4, Servers: []Server{
					srv("drover_h1_abc_5432", "10.42.1.2:5432"),
					srv("drover_h2_def_5432", "10.42.2.2:5432"),
					srv("drover_h3_123_5432", "10.42.3.2:5432"),
				}}},
			},
		},
		{
			name: "a disagreeing instance is left out alone; the first instance's settings hold",
			services: map[string][]discovery.Instance{
				"web": {
					created(inst("web-2", "10.0.0.2", 80, contract.KeyLBMode, "http", contract.KeyLBPath, "/b"), 8),
					created(inst("web-1", "10.0.0.1", 80, contract.KeyLBMode, "http", contract.KeyLBPath, "/a"), 5),
					created(inst("web-3", "10.0.0.3", 80, contract.KeyLBMode, "http", contract.KeyLBPath, "/a"), 9),
					created(inst("web-4", "10.0.0.4", 80, contract.KeyLBMode, "http", contract.KeyLBPort, "x"), 10),
				},
				"ok": {inst("ok-1", "10.0.0.9", 80, contract.KeyLBMode, "http")},
			},
			want: State{
				Frontends: []Frontend{{Name: "http_80", Mode: "http", Port: 80, Routes: []Route{{PathPrefix: "/a", Backend: "web"}, {Backend: "ok"}}}},
				Backends: []Backend{
					{Name: "ok", Mode: "http", Balance: "roundrobin", Slots: 4, Servers: []Server{srv("ok-1", "10.0.0.9:80")}},
					{Name: "web", Mode: "http", Balance: "roundrobin", Slots: 4, Servers: []Server{srv("web-1", "10.0.0.1:80"), srv("web-3", "10.0.0.3:80")}},
				},
			},
			probs: []Problem{
				{"web", "web-2", `lb settings mode=http port=80 host="" path="/b" balance=roundrobin check=tcp "" tunnel=3600s disagree with the service's (mode=http port=80 host="" path="/a" balance=roundrobin check=tcp "" tunnel=3600s, from instance web-1, registered first); instance left out`},
				{"web", "web-4", `lb_port "x": want a port 1-65535; instance left out`},
			},
		},
		{
			name: "the first instance's settings hold while it is critical",
			services: map[string][]discovery.Instance{
				"web": {
					with(created(inst("web-1", "10.0.0.1", 80, contract.KeyLBMode, "http", contract.KeyLBPath, "/a"), 5), "critical"),
					created(inst("web-2", "10.0.0.2", 80, contract.KeyLBMode, "http", contract.KeyLBPath, "/b"), 8),
				},
			},
			// web keeps web-1's route, with no server while web-1 is
			// critical: its return is a runtime change, not a reload.
			want: State{
				Frontends: []Frontend{{Name: "http_80", Mode: "http", Port: 80, Routes: []Route{{PathPrefix: "/a", Backend: "web"}}}},
				Backends:  []Backend{{Name: "web", Mode: "http", Balance: "roundrobin", Slots: 4, Check: DefaultCheck}},
			},
			probs: []Problem{
				{"web", "web-2", `lb settings mode=http port=80 host="" path="/b" balance=roundrobin check=tcp "" tunnel=3600s disagree with the service's (mode=http port=80 host="" path="/a" balance=roundrobin check=tcp "" tunnel=3600s, from instance web-1, registered first); instance left out`},
			},
		},
		{
			name: "a service whose instances are all failing keeps its frontend and backend, with no server",
			services: map[string][]discovery.Instance{
				"web": {
					with(inst("web-1", "10.0.0.1", 80, contract.KeyLBMode, "http", contract.KeyCheckKind, "http", contract.KeyCheckPath, "/healthz"), "critical"),
					with(inst("web-2", "10.0.0.2", 80, contract.KeyLBMode, "http", contract.KeyCheckKind, "http", contract.KeyCheckPath, "/healthz"), "warning"),
				},
			},
			want: State{
				Frontends: []Frontend{{Name: "http_80", Mode: "http", Port: 80, Routes: []Route{{Backend: "web"}}}},
				Backends:  []Backend{{Name: "web", Mode: "http", Balance: "roundrobin", Slots: 4, Check: httpCheck}},
			},
		},
		{
			name: "a service whose only instances are refused leaves, failing or not",
			services: map[string][]discovery.Instance{
				"web": {
					inst("web-1", "0.0.0.0", 80, contract.KeyLBMode, "http"),
					with(inst("web-2", "10.0.0.2", 80, contract.KeyLBMode, "udp"), "critical"),
				},
			},
			probs: []Problem{
				{"web", "web-1", `address "0.0.0.0": an unspecified address would make HAProxy connect back to itself; instance left out`},
			},
		},
		{
			name: "invalid service settings leave the instance out",
			services: map[string][]discovery.Instance{
				"a": {inst("a1", "10.0.0.1", 80, contract.KeyLBMode, "udp")},
				"b": {inst("b1", "10.0.0.1", 80, contract.KeyLBMode, "tcp")},
				"c": {inst("c1", "10.0.0.1", 80, contract.KeyLBMode, "http", contract.KeyLBPort, "70000")},
				"d": {inst("d1", "10.0.0.1", 80, contract.KeyLBMode, "http", contract.KeyLBHost, "Web Example")},
				"e": {inst("e1", "10.0.0.1", 80, contract.KeyLBMode, "http", contract.KeyLBPath, "/a#b")},
				"f": {inst("f1", "10.0.0.1", 80, contract.KeyLBMode, "http", contract.KeyLBBalance, "random")},
				"g": {inst("g1", "10.0.0.1", 80, contract.KeyLBMode, "tcp", contract.KeyLBPort, "9000", contract.KeyLBHost, "x.example")},
				"h": {inst("h1", "10.0.0.1", 80, contract.KeyLBMode, "http", contract.KeyCheckKind, "udp")},
			},
			probs: []Problem{
				{"a", "a1", `lb_mode "udp": want http or tcp; instance left out`},
				{"b", "b1", "lb_mode tcp needs lb_port; instance left out"},
				{"c", "c1", `lb_port "70000": want a port 1-65535; instance left out`},
				{"d", "d1", `lb_host "Web Example": want a lower-case DNS name; instance left out`},
				{"e", "e1", `lb_path "/a#b": want a path starting with "/" without spaces, quotes, '\' or '#'; instance left out`},
				{"f", "f1", `lb_balance "random": want roundrobin, leastconn or source; instance left out`},
				{"g", "g1", "lb_host and lb_path need lb_mode http; instance left out"},
				{"h", "h1", `check_kind "udp": want http, tcp or none; instance left out`},
			},
		},
		{
			name: "two tcp services on one port: the first keeps it",
			services: map[string][]discovery.Instance{
				"a": {inst("a1", "10.0.0.1", 1, contract.KeyLBMode, "tcp", contract.KeyLBPort, "9000")},
				"b": {created(inst("b1", "10.0.0.2", 1, contract.KeyLBMode, "tcp", contract.KeyLBPort, "9000"), 5)},
				"c": {created(inst("c1", "10.0.0.3", 1, contract.KeyLBMode, "tcp", contract.KeyLBPort, "9000"), 9)},
			},
			want: State{
				Frontends: []Frontend{{Name: "tcp_9000", Mode: "tcp", Port: 9000, DefaultBackend: "a"}},
				Backends:  []Backend{{Name: "a", Mode: "tcp", Balance: "roundrobin", Slots: 4, Servers: []Server{srv("a1", "10.0.0.1:1")}}},
			},
			probs: []Problem{
				{"b", "", "tcp port 9000 is taken by service a (registered first); service left out"},
				{"c", "", "tcp port 9000 is taken by service a (registered first); service left out"},
			},
		},
		{
			name: "the first claimant wins by create index, not by name",
			services: map[string][]discovery.Instance{
				"a": {created(inst("a1", "10.0.0.1", 1, contract.KeyLBMode, "tcp", contract.KeyLBPort, "9000"), 20)},
				"b": {created(inst("b1", "10.0.0.2", 1, contract.KeyLBMode, "tcp", contract.KeyLBPort, "9000"), 10)},
			},
			want: State{
				Frontends: []Frontend{{Name: "tcp_9000", Mode: "tcp", Port: 9000, DefaultBackend: "b"}},
				Backends:  []Backend{{Name: "b", Mode: "tcp", Balance: "roundrobin", Slots: 4, Servers: []Server{srv("b1", "10.0.0.2:1")}}},
			},
			probs: []Problem{{"a", "", "tcp port 9000 is taken by service b (registered first); service left out"}},
		},
		{
			name: "tcp service on an http port is refused, http keeps it",
			services: map[string][]discovery.Instance{
				"t": {created(inst("t1", "10.0.0.1", 1, contract.KeyLBMode, "tcp", contract.KeyLBPort, "80"), 7)},
				"w": {created(inst("w1", "10.0.0.2", 1, contract.KeyLBMode, "http"), 3)},
			},
			want: State{
				Frontends: []Frontend{{Name: "http_80", Mode: "http", Port: 80, Routes: []Route{{Backend: "w"}}}},
				Backends:  []Backend{{Name: "w", Mode: "http", Balance: "roundrobin", Slots: 4, Servers: []Server{srv("w1", "10.0.0.2:1")}}},
			},
			probs: []Problem{{"t", "", "port 80 is the http frontend of service w (registered first); tcp service left out"}},
		},
		{
			name: "a tcp service that came first keeps its port from http newcomers",
			services: map[string][]discovery.Instance{
				"t": {created(inst("t1", "10.0.0.1", 1, contract.KeyLBMode, "tcp", contract.KeyLBPort, "80"), 3)},
				"w": {created(inst("w1", "10.0.0.2", 1, contract.KeyLBMode, "http"), 7)},
			},
			want: State{
				Frontends: []Frontend{{Name: "tcp_80", Mode: "tcp", Port: 80, DefaultBackend: "t"}},
				Backends:  []Backend{{Name: "t", Mode: "tcp", Balance: "roundrobin", Slots: 4, Servers: []Server{srv("t1", "10.0.0.1:1")}}},
			},
			probs: []Problem{{"w", "", "port 80 is the tcp frontend of service t (registered first); http service left out"}},
		},
		{
			name: "same route for two services: the first keeps it, other routes unaffected",
			services: map[string][]discovery.Instance{
				"a": {created(inst("a1", "10.0.0.1", 1, contract.KeyLBMode, "http", contract.KeyLBHost, "x.example"), 9)},
				"b": {created(inst("b1", "10.0.0.2", 1, contract.KeyLBMode, "http", contract.KeyLBHost, "x.example"), 4)},
				"c": {created(inst("c1", "10.0.0.3", 1, contract.KeyLBMode, "http", contract.KeyLBHost, "y.example"), 12)},
			},
			want: State{
				Frontends: []Frontend{{Name: "http_80", Mode: "http", Port: 80, Routes: []Route{
					{Host: "x.example", Backend: "b"}, {Host: "y.example", Backend: "c"}}}},
				Backends: []Backend{
					{Name: "b", Mode: "http", Balance: "roundrobin", Slots: 4, Servers: []Server{srv("b1", "10.0.0.2:1")}},
					{Name: "c", Mode: "http", Balance: "roundrobin", Slots: 4, Servers: []Server{srv("c1", "10.0.0.3:1")}},
				},
			},
			probs: []Problem{{"a", "", `route host "x.example" path "" on port 80 is taken by service b (registered first); service left out`}},
		},
		{
			name: "check from meta, bad values default",
			services: map[string][]discovery.Instance{
				"web": {
					inst("w1", "10.0.0.1", 80, contract.KeyLBMode, "http", contract.KeyCheckKind, "http", contract.KeyCheckPath, "/healthz"),
					inst("w2", "10.0.0.2", 80, contract.KeyLBMode, "http", contract.KeyCheckKind, "http", contract.KeyCheckPath, "/healthz",
						contract.KeyCheckInterval, "5s", contract.KeyCheckTimeout, "500ms", contract.KeyCheckRise, "1", contract.KeyCheckFall, "5"),
					inst("w3", "10.0.0.3", 80, contract.KeyLBMode, "http", contract.KeyCheckKind, "http", contract.KeyCheckPath, "/healthz",
						contract.KeyCheckInterval, "soon", contract.KeyCheckRise, "0", "weight", "300"),
				},
			},
			want: State{
				Frontends: []Frontend{{Name: "http_80", Mode: "http", Port: 80, Routes: []Route{{Backend: "web"}}}},
				Backends: []Backend{{Name: "web", Mode: "http", Balance: "roundrobin", Slots: 4, Servers: []Server{
					{Name: "w1", Addr: "10.0.0.1:80", Weight: 100, Check: httpCheck, Enabled: true},
					{Name: "w2", Addr: "10.0.0.2:80", Weight: 100, Enabled: true, Check: discovery.Check{
						Kind: "http", Path: "/healthz", Interval: 5 * time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 5}},
					{Name: "w3", Addr: "10.0.0.3:80", Weight: 100, Check: httpCheck, Enabled: true},
				}}},
			},
			probs: []Problem{
				{"web", "w3", `check_interval "soon": want a duration of whole milliseconds, 1ms to 1h; using 2s`},
				{"web", "w3", `check_rise "0": want 1-1000; using 2`},
				{"web", "w3", `weight "300": want 0-256; using 100`},
			},
		},
		{
			name: "bad address, unspecified address, duplicate address and colliding names",
			services: map[string][]discovery.Instance{
				"web": {
					inst("a:1", "10.0.0.1", 80, contract.KeyLBMode, "http"),
					inst("a_1", "10.0.0.2", 80, contract.KeyLBMode, "http"),
					inst("b", "10.0.0.1", 80, contract.KeyLBMode, "http"),
					inst("c", "not-an-ip", 80, contract.KeyLBMode, "http"),
					inst("slot1", "10.0.0.4", 80, contract.KeyLBMode, "http"),
					inst("d", "0.0.0.0", 80, contract.KeyLBMode, "http"),
					inst("e", "::", 80, contract.KeyLBMode, "http"),
					inst("f", "::ffff:0.0.0.0", 80, contract.KeyLBMode, "http"),
				},
			},
			want: State{
				Frontends: []Frontend{{Name: "http_80", Mode: "http", Port: 80, Routes: []Route{{Backend: "web"}}}},
				Backends: []Backend{{Name: "web", Mode: "http", Balance: "roundrobin", Slots: 4, Servers: []Server{
					srv("a_1", "10.0.0.1:80"),
					srv("a_1_"+shortHash("a_1"), "10.0.0.2:80"),
					srv("slot1_"+shortHash("slot1"), "10.0.0.4:80"),
				}}},
			},
			probs: []Problem{
				{"web", "b", "address 10.0.0.1:80 is already used by another instance; instance left out"},
				{"web", "c", `address "not-an-ip" port 80: want an IP address and a port 1-65535; instance left out`},
				{"web", "d", `address "0.0.0.0": an unspecified address would make HAProxy connect back to itself; instance left out`},
				{"web", "e", `address "::": an unspecified address would make HAProxy connect back to itself; instance left out`},
				{"web", "f", `address "::ffff:0.0.0.0": an unspecified address would make HAProxy connect back to itself; instance left out`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opt.SlotsMin == 0 {
				tt.opt.SlotsMin = 4 // the cases were written for pools of 4
			}
			got, probs := Desired(tt.opt, tt.services)
			tt.want = withStateDefaults(tt.want)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.probs, probs); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			again, _ := Desired(tt.opt, tt.services)
			if !got.Equal(again) {
				t.Errorf("not deterministic")
			}
		})
	}
}

func TestSlotsFor(t *testing.T) {
	for _, c := range []struct{ min, n, want int }{{4, 0, 4}, {4, 4, 4}, {4, 5, 8}, {5, 1, 8}, {1, 17, 32}} {
		if got := slotsFor(c.min, c.n); got != c.want {
			t.Errorf("slotsFor(%d, %d) = %d, want %d", c.min, c.n, got, c.want)
		}
	}
}

func TestStateEqualClone(t *testing.T) {
	s, _ := Desired(Options{}, map[string][]discovery.Instance{"web": {inst("w1", "10.0.0.1", 80, contract.KeyLBMode, "http")}})
	c := s.Clone()
	if !s.Equal(c) {
		t.Fatal("clone not equal")
	}
	c.Backends[0].Servers[0].Weight = 1
	if s.Equal(c) || s.Backends[0].Servers[0].Weight != 100 {
		t.Fatal("clone shares servers")
	}
	if !(State{}).Equal(State{Frontends: []Frontend{}, Backends: []Backend{}}) {
		t.Error("nil and empty slices should be equal")
	}
	a := State{Backends: []Backend{{Name: "x", Servers: []Server{}}}}
	if !a.Equal(State{Backends: []Backend{{Name: "x"}}}) {
		t.Error("nil and empty servers should be equal")
	}
}

func TestSanitizeBoundsLength(t *testing.T) {
	long := strings.Repeat("a", 5000)
	a, b := sanitize(long), sanitize(long+"b")
	if len(a) != maxName || len(b) != maxName || a == b {
		t.Errorf("sanitize of long names: %d and %d bytes, equal %v; want %d bytes each, distinct", len(a), len(b), a == b, maxName)
	}
	if got := sanitize("web-1"); got != "web-1" {
		t.Errorf("sanitize(web-1) = %q", got)
	}
}

func TestDesiredLeavesOutUnbindablePorts(t *testing.T) {
	services := map[string][]discovery.Instance{
		"consul-ui": {inst("c1", "10.0.0.1", 1, contract.KeyLBMode, "tcp", contract.KeyLBPort, "8500")},
		"web":       {inst("w1", "10.0.0.2", 1, contract.KeyLBMode, "http")},
		"shop":      {inst("s1", "10.0.0.3", 1, contract.KeyLBMode, "http", contract.KeyLBHost, "shop.example", contract.KeyLBTLS, "true")},
	}
	st, probs := Desired(Options{Unbindable: map[int]string{8500: "address already in use", 443: "address already in use"}}, services)
	var fes []string
	for _, f := range st.Frontends {
		fes = append(fes, f.Name)
	}
	if strings.Join(fes, " ") != "http_80" || len(st.Backends) != 1 || st.Backends[0].Name != "web" {
		t.Errorf("frontends %v, backends %v; want only web on port 80", fes, st.Backends)
	}
	if len(probs) != 2 || !strings.Contains(probs[0].Reason, "port 8500 cannot be bound on this host (address already in use)") ||
		!strings.Contains(probs[1].Reason, "port 443 cannot be bound") {
		t.Errorf("problems %v", probs)
	}
}
