package webui

import (
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
