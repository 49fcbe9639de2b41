package webui

import (
	"strings"
	"testing"
	"time"
)

func TestRing(t *testing.T) {
	r := NewRing(3)
	for i := range 5 {
		r.Add(Event{Text: string(rune('a' + i))})
	}
	var got []string
	for _, e := range r.Newest(10) {
		got = append(got, e.Text)
	}
	if strings.Join(got, "") != "edc" {
		t.Errorf("newest first, capped at 3: got %q, want edc", got)
	}
	if n := len(r.Newest(2)); n != 2 {
		t.Errorf("Newest(2) gave %d", n)
	}
}

func texts(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.Kind + ": " + e.Text + "\n")
	}
	return b.String()
}

func TestDiff(t *testing.T) {
	now := time.Unix(1000, 0)
	base := Facts{Subnet: "10.42.1.0/24", Peers: map[string]PeerFact{"h2": {true, true}},
		Refused: []Refusal{{Container: "bad", ContainerID: "c1", Reason: `label drover.port "x": want a port`}}}
	cases := []struct {
		name      string
		prev, cur Facts
		first     bool
		want      string
	}{
		{"first sample: lease and refusals", Facts{}, base, true,
			"lease: subnet 10.42.1.0/24 leased by h1\nrefused: container bad refused: label drover.port \"x\": want a port\n"},
		{"nothing changed", base, base, false, ""},
		{"peers come, go, fail", base, Facts{Subnet: base.Subnet, Refused: base.Refused, Peers: map[string]PeerFact{"h3": {true, false}}}, false,
			"peer-added: peer h3 added\npeer-unreachable: peer h3 does not answer through the tunnel\npeer-removed: peer h2 removed\n"},
		{"new refusal, repairs", base, Facts{Subnet: base.Subnet, Peers: base.Peers, HostRepairs: 1, LastRepair: "nft table put back", RecordRepairs: 1,
			Refused: append(base.Refused[:1:1], Refusal{Container: "other", ContainerID: "c2", Port: 80, Reason: "conflict"})}, false,
			"repair: host state repaired: nft table put back\nrepair: drover-node record written back to the local Consul agent\nrefused: container other port 80 refused: conflict\n"},
		{"lb reload and runtime ops with their causes",
			Facts{Subnet: base.Subnet, LB: &LBFacts{Reloads: 1, RuntimeOps: 4, Frontends: []string{"http_80"}, Slots: map[string]int{"web": 8},
				Servers: map[string][]string{"web": {"10.42.2.2:8080", "10.42.3.2:8080"}}}},
			Facts{Subnet: base.Subnet, LB: &LBFacts{Reloads: 2, RuntimeOps: 6, Frontends: []string{"http_80", "tcp_5432"}, Slots: map[string]int{"web": 16, "db": 8},
				Servers: map[string][]string{"web": {"10.42.2.2:8080", "10.42.2.3:8080"}, "db": {"10.42.3.5:5432"}}}}, false,
			"reload: HAProxy reloaded (1): frontend tcp_5432 added; backend db added; backend web grew from 8 to 16 slots\n" +
				"runtime-ops: 2 runtime operations, no reload: backend db +10.42.3.5:5432; backend web +10.42.2.3:8080 -10.42.3.2:8080\n"},
		{"failed reload", Facts{LB: &LBFacts{}}, Facts{LB: &LBFacts{FailedReloads: 1, LastError: "haproxy -c: bad"}}, false,
			"reload: HAProxy reload failed (1); last-known-good config restored: haproxy -c: bad\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs := Diff("h1", c.prev, c.cur, c.first, now)
			if got := texts(evs); got != c.want {
				t.Errorf("got\n%swant\n%s", got, c.want)
			}
			for _, e := range evs {
				if e.Node != "h1" || !e.At.Equal(now) {
					t.Errorf("event %+v: want node h1 at now", e)
				}
			}
		})
	}
}

func TestMergeEvents(t *testing.T) {
	t0 := time.Unix(1000, 0)
	rows := []Row{
		{Node: "h1", Events: []Event{{At: t0.Add(3 * time.Second), Node: "h1", Text: "c"}, {At: t0, Node: "h1", Text: "a"}}},
		{Node: "h2", Events: []Event{{At: t0.Add(2 * time.Second), Node: "h2", Text: "b"}, {At: t0, Node: "h2", Text: "a2"}}},
	}
	var got []string
	for _, e := range MergeEvents(rows, 3) {
		got = append(got, e.Text)
	}
	if strings.Join(got, ",") != "c,b,a" {
		t.Errorf("got %v, want newest first, capped: c,b,a", got)
	}
}

func TestBuildServicesNamesOmittedRefusals(t *testing.T) {
	s := BuildServices(nil, map[string]Row{"h2": {Refused: []Refusal{{Container: "a"}}, OmittedRefused: 3}}, nil)
	if len(s.Refused) != 1 || s.Refused[0].Node != "h2" || len(s.Problems) != 1 || !strings.Contains(s.Problems[0], "3 more") {
		t.Errorf("services %+v", s)
	}
	if s.Services == nil {
		t.Error("no services must be [], not null")
	}
}
