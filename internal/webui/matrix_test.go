package webui

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func row(node string, peers map[string]bool) Row {
	r := Row{Schema: Schema, Node: node, Subnet: "10.42.0.0/24", Version: "v1"}
	for _, n := range sortedKeys(peers) {
		r.Peers = append(r.Peers, Peer{Node: n, Probed: true, Reachable: peers[n], RTTMs: 0.4, HandshakeAgeS: 3})
	}
	return r
}

// states renders a matrix as lines "h1 self reachable unreachable".
func states(m Mesh) string {
	var b strings.Builder
	for i, h := range m.Hosts {
		fmt.Fprintf(&b, "%s", h.Node)
		for _, c := range m.Cells[i] {
			fmt.Fprintf(&b, " %s", c.State)
		}
		if h.Down {
			b.WriteString(" DOWN")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestBuildMesh(t *testing.T) {
	all := map[string]bool{"h1": true, "h2": true, "h3": true}
	peers := func(self string, down ...string) map[string]bool {
		m := map[string]bool{}
		for n := range all {
			if n != self {
				m[n] = true
			}
		}
		for _, d := range down {
			m[d] = false
		}
		return m
	}
	fresh := func(r Row) SeenRow { return SeenRow{Row: r, Age: time.Second} }
	cases := []struct {
		name   string
		rows   map[string]SeenRow
		health map[string]string
		want   string
	}{
		{"all reachable", map[string]SeenRow{
			"h1": fresh(row("h1", peers("h1"))), "h2": fresh(row("h2", peers("h2"))), "h3": fresh(row("h3", peers("h3")))}, nil,
			"h1 self reachable reachable\nh2 reachable self reachable\nh3 reachable reachable self\n"},
		// h3 partitioned: h1 (read live) already sees it gone, h2's row
		// does not say so yet, h3's row is frozen but not yet stale.
		{"partition seen by half of the probers", map[string]SeenRow{
			"h1": fresh(row("h1", peers("h1", "h3"))), "h2": fresh(row("h2", peers("h2"))), "h3": fresh(row("h3", peers("h3")))}, nil,
			"h1 self reachable unreachable\nh2 reachable self unreachable\nh3 unreachable unreachable self DOWN\n"},
		{"one flaky link out of three probers is a cell, not a host", map[string]SeenRow{
			"h1": fresh(row("h1", map[string]bool{"h2": true, "h3": true, "h4": false})), "h2": fresh(row("h2", map[string]bool{"h1": true, "h3": true, "h4": true})),
			"h3": fresh(row("h3", map[string]bool{"h1": true, "h2": true, "h4": true})), "h4": fresh(row("h4", map[string]bool{"h1": true, "h2": true, "h3": true}))}, nil,
			"h1 self reachable reachable unreachable\nh2 reachable self reachable reachable\nh3 reachable reachable self reachable\nh4 reachable reachable reachable self\n"},
		{"stale row", map[string]SeenRow{
			"h1": fresh(row("h1", peers("h1"))), "h2": fresh(row("h2", peers("h2"))), "h3": {Row: row("h3", peers("h3")), Age: StaleAfter + time.Second}}, nil,
			"h1 self reachable unreachable\nh2 reachable self unreachable\nh3 unreachable unreachable self DOWN\n"},
		{"self is never stale", map[string]SeenRow{
			"h1": {Row: row("h1", peers("h1")), Age: time.Hour}, "h2": fresh(row("h2", peers("h2"))), "h3": fresh(row("h3", peers("h3")))}, nil,
			"h1 self reachable reachable\nh2 reachable self reachable\nh3 reachable reachable self\n"},
		{"critical in Consul, no row", map[string]SeenRow{
			"h1": fresh(row("h1", map[string]bool{"h2": true})), "h2": fresh(row("h2", map[string]bool{"h1": true}))}, map[string]string{"h1": "passing", "h2": "passing", "h3": "critical"},
			"h1 self reachable unreachable\nh2 reachable self unreachable\nh3 unreachable unreachable self DOWN\n"},
		{"no row yet, passing", map[string]SeenRow{
			"h1": fresh(row("h1", map[string]bool{"h2": true})), "h2": fresh(row("h2", map[string]bool{"h1": true}))}, map[string]string{"h3": "passing"},
			"h1 self reachable unknown\nh2 reachable self unknown\nh3 unknown unknown self\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := BuildMesh("h1", c.rows, c.health)
			if got := states(m); got != c.want {
				t.Errorf("got\n%swant\n%s", got, c.want)
			}
			if len(m.Cells) != len(m.Hosts) {
				t.Fatalf("%d rows of cells for %d hosts", len(m.Cells), len(m.Hosts))
			}
			for i, h := range m.Hosts {
				if h.Down && h.Why == "" {
					t.Errorf("%s down without a reason", h.Node)
				}
				for j, cell := range m.Cells[i] {
					if cell.From != h.Node || cell.To != m.Hosts[j].Node {
						t.Errorf("cell [%d][%d] is %s→%s", i, j, cell.From, cell.To)
					}
				}
			}
		})
	}
}

func TestBuildMeshAges(t *testing.T) {
	r := row("h2", map[string]bool{"h1": true})
	r.UptimeS = 100
	m := BuildMesh("h1", map[string]SeenRow{"h1": {Row: row("h1", map[string]bool{"h2": true})}, "h2": {Row: r, Age: 4 * time.Second}}, nil)
	h2 := m.Hosts[1]
	if h2.UptimeS != 104 || h2.RowAgeS != 4 {
		t.Errorf("h2 uptime %d row age %v, want 104 and 4", h2.UptimeS, h2.RowAgeS)
	}
	if c := m.Cells[1][0]; c.HandshakeAgeS != 7 || c.RTTMs != 0.4 {
		t.Errorf("h2→h1 handshake age %v rtt %v, want 7 (3 when written + 4 since) and 0.4", c.HandshakeAgeS, c.RTTMs)
	}
}

func TestTracker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tr := NewTracker()
	tr.Observe(map[string]uint64{"a": 1, "b": 1}, t0)
	tr.Observe(map[string]uint64{"a": 2, "b": 1}, t0.Add(5*time.Second))
	if age, _ := tr.Age("a", t0.Add(6*time.Second)); age != time.Second {
		t.Errorf("a changed 1 s ago, age %v", age)
	}
	if age, _ := tr.Age("b", t0.Add(6*time.Second)); age != 6*time.Second {
		t.Errorf("b unchanged for 6 s, age %v", age)
	}
	tr.Observe(map[string]uint64{"a": 2}, t0.Add(7*time.Second))
	if _, ok := tr.Age("b", t0.Add(7*time.Second)); ok {
		t.Error("b is gone from the read but still tracked")
	}
}

func TestDecodeRows(t *testing.T) {
	good, _ := json.Marshal(Row{Schema: Schema, Node: "forged", Events: []Event{{Node: "forged", Kind: EventLease}}})
	old, _ := json.Marshal(Row{Schema: Schema + 1})
	rows, problems := DecodeRows(MeshPrefix, map[string][]byte{
		MeshPrefix + "h1":     good,
		MeshPrefix + "h2":     old,
		MeshPrefix + "h3":     []byte("{not json"),
		MeshPrefix + "h4/sub": good,
		MeshPrefix + "h5":     []byte(strings.Repeat(" ", maxDoc+1)),
	})
	if len(rows) != 1 || rows["h1"].Node != "h1" || rows["h1"].Events[0].Node != "h1" {
		t.Errorf("rows %+v: want only h1, named by its key", rows)
	}
	if len(problems) != 3 {
		t.Errorf("problems %q: want 3 (schema, parse, size)", problems)
	}
}
