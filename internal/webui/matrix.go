package webui

import (
	"fmt"
	"strings"
	"time"
)

// Tracker remembers, on the reader's own clock, when each KV row last
// changed (its modify index moved). Comparing that with now tells a row
// that stopped moving without comparing two hosts' clocks. It is not safe
// for concurrent use.
type Tracker struct{ seen map[string]seen }

type seen struct {
	index uint64
	at    time.Time
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{seen: map[string]seen{}} }

// Observe records the modify index of every key read now; keys absent from
// the read are forgotten.
func (t *Tracker) Observe(index map[string]uint64, now time.Time) {
	for k, i := range index {
		if s, ok := t.seen[k]; !ok || s.index != i {
			t.seen[k] = seen{index: i, at: now}
		}
	}
	for k := range t.seen {
		if _, ok := index[k]; !ok {
			delete(t.seen, k)
		}
	}
}

// Age is how long ago key last changed, as far as this reader saw.
func (t *Tracker) Age(key string, now time.Time) (time.Duration, bool) {
	s, ok := t.seen[key]
	if !ok {
		return 0, false
	}
	return now.Sub(s.at), true
}

// SeenRow is a row and how long ago its reader saw it change.
type SeenRow struct {
	Row Row
	Age time.Duration
}

// Mesh is the /api/v1/mesh answer: every host and the N×N matrix of who
// reaches whom. Cells[i][j] is how Hosts[i] sees Hosts[j].
type Mesh struct {
	Schema int      `json:"schema"`
	Self   string   `json:"self"`
	Hosts  []Host   `json:"hosts"`
	Cells  [][]Cell `json:"cells"`
}

// Host is one host of the matrix.
type Host struct {
	Node     string  `json:"node"`
	Subnet   string  `json:"subnet"`
	Endpoint string  `json:"endpoint"`
	Version  string  `json:"version"`
	UptimeS  int64   `json:"uptime_s"`
	RowAgeS  float64 `json:"row_age_s"` // -1: no row published
	Health   string  `json:"consul_health"`
	// Down is true when the host's row is stale, Consul holds its
	// drover-node critical, or at least half of the hosts that probe it
	// (with fresh rows) report it unreachable; Why says which.
	Down bool   `json:"down"`
	Why  string `json:"why,omitempty"`
}

// Cell states.
const (
	CellSelf        = "self"
	CellReachable   = "reachable"
	CellUnreachable = "unreachable"
	CellUnknown     = "unknown"
)

// Cell is how one host sees another.
type Cell struct {
	From  string `json:"from"`
	To    string `json:"to"`
	State string `json:"state"`
	// Reported is what From's row says of To (reachable, unreachable,
	// unprobed, absent); State differs from it when either host is down.
	Reported      string  `json:"reported"`
	RTTMs         float64 `json:"rtt_ms"`
	HandshakeAgeS float64 `json:"handshake_age_s"` // -1: never or unknown
	Why           string  `json:"why,omitempty"`
}

// BuildMesh draws the matrix from every host's row as self reads them and
// the drover-node health Consul reports (node → passing, warning,
// critical). A row older than StaleAfter makes its host down, except self's
// own (read live). It is pure.
func BuildMesh(self string, rows map[string]SeenRow, health map[string]string) Mesh {
	names := map[string]bool{}
	for n := range rows {
		names[n] = true
	}
	for n := range health {
		names[n] = true
	}
	order := sortedKeys(names)
	m := Mesh{Schema: Schema, Self: self, Hosts: make([]Host, len(order)), Cells: make([][]Cell, len(order))}
	fresh := func(n string) bool {
		r, ok := rows[n]
		return ok && (n == self || r.Age <= StaleAfter)
	}
	for i, n := range order {
		h := Host{Node: n, RowAgeS: -1, Health: health[n]}
		var why []string
		if r, ok := rows[n]; ok {
			h.Subnet, h.Endpoint, h.Version = r.Row.Subnet, r.Row.Endpoint, r.Row.Version
			h.UptimeS = r.Row.UptimeS + int64(r.Age/time.Second)
			h.RowAgeS = r.Age.Seconds()
			if !fresh(n) {
				why = append(why, fmt.Sprintf("its row has not changed for %s", r.Age.Round(time.Second)))
			}
		}
		if health[n] == "critical" {
			why = append(why, "Consul reports its drover-node critical")
		}
		probers, down := 0, 0
		for _, o := range order {
			if o == n || !fresh(o) {
				continue
			}
			if p, ok := peerOf(rows[o].Row, n); ok && p.Probed {
				probers++
				if !p.Reachable {
					down++
				}
			}
		}
		if probers > 0 && down*2 >= probers {
			why = append(why, fmt.Sprintf("%d of %d hosts probing it get no answer", down, probers))
		}
		h.Down, h.Why = len(why) > 0, strings.Join(why, "; ")
		m.Hosts[i] = h
	}
	for i := range order {
		m.Cells[i] = make([]Cell, len(order))
		for j := range order {
			m.Cells[i][j] = cell(m.Hosts[i], m.Hosts[j], rows)
		}
	}
	return m
}

func peerOf(r Row, node string) (Peer, bool) {
	for _, p := range r.Peers {
		if p.Node == node {
			return p, true
		}
	}
	return Peer{}, false
}

func cell(from, to Host, rows map[string]SeenRow) Cell {
	c := Cell{From: from.Node, To: to.Node, HandshakeAgeS: -1, Reported: "absent"}
	if from.Node == to.Node {
		c.State, c.Reported = CellSelf, CellSelf
		return c
	}
	r, ok := rows[from.Node]
	if ok {
		if p, ok := peerOf(r.Row, to.Node); ok {
			c.RTTMs = p.RTTMs
			if p.HandshakeAgeS >= 0 {
				c.HandshakeAgeS = p.HandshakeAgeS + r.Age.Seconds()
			}
			switch {
			case !p.Probed:
				c.Reported = "unprobed"
			case p.Reachable:
				c.Reported = CellReachable
			default:
				c.Reported = CellUnreachable
				c.Why = p.LastError
			}
		}
	}
	switch {
	case from.Down:
		c.State, c.Why = CellUnreachable, from.Node+" is down: "+from.Why
	case to.Down:
		c.State, c.Why = CellUnreachable, to.Node+" is down: "+to.Why
	case c.Reported == CellReachable || c.Reported == CellUnreachable:
		c.State = c.Reported
	default:
		c.State = CellUnknown
		if c.Why == "" {
			c.Why = fmt.Sprintf("%s reports nothing of %s (%s)", from.Node, to.Node, c.Reported)
		}
	}
	return c
}

// DecodeRows decodes the published rows of a KV read (key → value), skipping
// values of another schema or that do not parse; the node is the key's
// last element, never what the value claims. Problems are returned as text.
func DecodeRows(prefix string, kv map[string][]byte) (map[string]Row, []string) {
	out := map[string]Row{}
	var problems []string
	for _, k := range sortedKeys(kv) {
		node := strings.TrimPrefix(k, prefix)
		if node == "" || strings.Contains(node, "/") {
			continue
		}
		var r Row
		if err := decode(kv[k], &r); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		if r.Schema != Schema {
			problems = append(problems, fmt.Sprintf("%s: schema %d, want %d", k, r.Schema, Schema))
			continue
		}
		r.Node = node
		for i := range r.Events {
			r.Events[i].Node = node
		}
		out[node] = r
	}
	return out, problems
}

// DecodeLBs decodes the published lb summaries like DecodeRows.
func DecodeLBs(prefix string, kv map[string][]byte) (map[string]LBSummary, []string) {
	out := map[string]LBSummary{}
	var problems []string
	for _, k := range sortedKeys(kv) {
		node := strings.TrimPrefix(k, prefix)
		if node == "" || strings.Contains(node, "/") {
			continue
		}
		var s LBSummary
		if err := decode(kv[k], &s); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		if s.Schema != Schema {
			problems = append(problems, fmt.Sprintf("%s: schema %d, want %d", k, s.Schema, Schema))
			continue
		}
		s.Node = node
		out[node] = s
	}
	return out, problems
}
