package webui

import (
	"fmt"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := NewGate(2*time.Second, 3*time.Second)
	steps := []struct {
		at    time.Duration
		key   string
		want  bool
		wrote bool
	}{
		{0, "a", true, true},                       // first write
		{time.Second, "a", false, false},           // nothing new, before the heartbeat
		{time.Second, "b", false, false},           // changed, but within MinInterval
		{2 * time.Second, "b", true, true},         // changed, MinInterval passed
		{4 * time.Second, "b", false, false},       // same, 2 s after the write
		{5 * time.Second, "b", true, false},        // heartbeat due; the write fails
		{5500 * time.Millisecond, "b", true, true}, // still due: a failed write is not recorded
		{6 * time.Second, "b", false, false},
	}
	for i, s := range steps {
		now := t0.Add(s.at)
		if got := g.Due(s.key, now); got != s.want {
			t.Fatalf("step %d (%v, %q): Due = %v, want %v", i, s.at, s.key, got, s.want)
		}
		if s.wrote {
			g.Wrote(s.key, now)
		}
	}
}

func TestRowKeyIgnoresCounters(t *testing.T) {
	r := Row{Schema: Schema, Node: "h1", Seq: 1, UptimeS: 10, Peers: []Peer{{Node: "h2", Probed: true, Reachable: true, RTTMs: 0.3, HandshakeAgeS: 5, RxBytes: 10, TxBytes: 20}}}
	moved := r
	moved.Seq, moved.UptimeS = 2, 13
	moved.Peers = []Peer{{Node: "h2", Probed: true, Reachable: true, RTTMs: 0.5, HandshakeAgeS: 8, RxBytes: 99, TxBytes: 99, LastError: "x"}}
	if RowKey(r) != RowKey(moved) {
		t.Errorf("counters changed the key:\n%s\n%s", RowKey(r), RowKey(moved))
	}
	if r.Peers[0].RTTMs != 0.3 {
		t.Errorf("RowKey changed its argument's peers")
	}
	down := moved
	down.Peers = []Peer{{Node: "h2", Probed: true, Reachable: false}}
	if RowKey(r) == RowKey(down) {
		t.Error("a peer turning unreachable did not change the key")
	}
	refused := r
	refused.Refused = []Refusal{{Container: "c", Reason: "bad"}}
	if RowKey(r) == RowKey(refused) {
		t.Error("a refusal did not change the key")
	}
}

func TestLBKeyIgnoresTraffic(t *testing.T) {
	s := LBSummary{Schema: Schema, Seq: 1, Backends: []LBBackend{{Name: "web", Stats: LBStats{Status: "UP", Sessions: 1},
		Servers: []LBServer{{Slot: "s0", Addr: "10.42.1.2:80", Stats: LBStats{Status: "UP", Sessions: 3, Rate: 5}}}}}}
	busy := s
	busy.Seq = 9
	busy.Backends = []LBBackend{{Name: "web", Stats: LBStats{Status: "UP", Sessions: 7, Total: 100},
		Servers: []LBServer{{Slot: "s0", Addr: "10.42.1.2:80", Stats: LBStats{Status: "UP", Sessions: 30, Rate: 50, Errors: 1}}}}}
	if LBKey(s) != LBKey(busy) {
		t.Error("traffic changed the key")
	}
	down := busy
	down.Backends = []LBBackend{{Name: "web", Stats: LBStats{Status: "UP"}, Servers: []LBServer{{Slot: "s0", Addr: "10.42.1.2:80", Stats: LBStats{Status: "DOWN"}}}}}
	if LBKey(s) == LBKey(down) {
		t.Error("a server going DOWN did not change the key")
	}
	if s.Backends[0].Servers[0].Stats.Rate != 5 {
		t.Error("LBKey changed its argument")
	}
}

func TestGateBacksOffAfterFailures(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := NewGate(2*time.Second, 10*time.Second)
	now := t0
	var waits []time.Duration
	for range 5 {
		if !g.Due("a", now) {
			t.Fatalf("not due at %v", now.Sub(t0))
		}
		g.Failed(now)
		last := now
		for !g.Due("a", now) {
			now = now.Add(100 * time.Millisecond)
		}
		waits = append(waits, now.Sub(last))
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits after failures %v, want %v", waits, want)
		}
	}
	g.Wrote("a", now)
	if g.Due("b", now.Add(2*time.Second)) != true {
		t.Error("a success resets the backoff: a change is due after MinInterval")
	}
}

func TestCaps(t *testing.T) {
	r := Row{Schema: Schema}
	for i := range MaxRefused + 7 {
		r.Refused = append(r.Refused, Refusal{Container: fmt.Sprint(i)})
	}
	c := CapRow(r)
	if len(c.Refused) != MaxRefused || c.OmittedRefused != 7 || len(r.Refused) != MaxRefused+7 {
		t.Errorf("CapRow kept %d, omitted %d", len(c.Refused), c.OmittedRefused)
	}
	s := LBSummary{Schema: Schema, Frontends: []LBFrontend{}}
	for i := range 2000 {
		b := LBBackend{Name: fmt.Sprintf("svc-%04d", i), Mode: "http", Balance: "roundrobin", Slots: 8}
		for j := range 3 {
			b.Servers = append(b.Servers, LBServer{Slot: fmt.Sprintf("drover_h%d_0123456789ab_8080", j), Addr: "10.42.1.2:8080", Weight: 100, Stats: LBStats{Status: "UP"}})
		}
		s.Backends = append(s.Backends, b)
	}
	capped := CapLB(s)
	size := len(mustJSON(capped))
	if size > MaxPublished || capped.OmittedBackends == 0 || len(capped.Backends)+capped.OmittedBackends != 2000 {
		t.Errorf("capped: %d bytes, %d backends kept, %d omitted", size, len(capped.Backends), capped.OmittedBackends)
	}
	if capped.Backends[0].Name != "svc-0000" {
		t.Errorf("the first backends are kept, got %s", capped.Backends[0].Name)
	}
	small := LBSummary{Schema: Schema, Backends: s.Backends[:3]}
	if got := CapLB(small); got.OmittedBackends != 0 || len(got.Backends) != 3 {
		t.Errorf("a small summary is left as it is: %+v", got)
	}
}
