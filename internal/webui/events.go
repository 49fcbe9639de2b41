package webui

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Ring keeps the most recent events, at most its capacity. It is not safe
// for concurrent use.
type Ring struct {
	max int
	evs []Event // oldest first
}

// NewRing returns a ring holding at most max events.
func NewRing(max int) *Ring { return &Ring{max: max} }

// Add appends events in the order they happened, dropping the oldest
// beyond capacity.
func (r *Ring) Add(evs ...Event) {
	r.evs = append(r.evs, evs...)
	if over := len(r.evs) - r.max; over > 0 {
		r.evs = slices.Delete(r.evs, 0, over)
	}
}

// Newest returns up to n events, newest first.
func (r *Ring) Newest(n int) []Event {
	out := make([]Event, 0, min(n, len(r.evs)))
	for i := len(r.evs) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, r.evs[i])
	}
	return out
}

// Facts is what one sample of the local agent says, as far as events go.
type Facts struct {
	Subnet        string
	Peers         map[string]PeerFact // by node
	Refused       []Refusal
	HostRepairs   int
	LastRepair    string
	RecordRepairs int
	LB            *LBFacts // nil: no lb on this host
}

// PeerFact is one peer's probe verdict.
type PeerFact struct{ Probed, Reachable bool }

// LBFacts is the lb's side of a sample.
type LBFacts struct {
	Reloads, FailedReloads, RuntimeOps int64
	LastError                          string
	Frontends                          []string            // names
	Slots                              map[string]int      // backend → slots
	Servers                            map[string][]string // backend → server addresses
}

// Diff returns the events between two samples of node's agent, in a stable
// order. On the first sample (first set, prev ignored) it reports the
// lease and the containers refused at start. It is pure.
func Diff(node string, prev, cur Facts, first bool, now time.Time) []Event {
	var out []Event
	add := func(kind, format string, a ...any) {
		out = append(out, Event{At: now, Node: node, Kind: kind, Text: fmt.Sprintf(format, a...)})
	}
	if cur.Subnet != "" && (first || cur.Subnet != prev.Subnet) {
		add(EventLease, "subnet %s leased by %s", cur.Subnet, node)
	}
	if !first {
		for _, n := range sortedKeys(cur.Peers) {
			p, was := cur.Peers[n], prev.Peers[n]
			if _, ok := prev.Peers[n]; !ok {
				add(EventPeerAdded, "peer %s added", n)
			}
			if p.Probed && (!was.Probed || was.Reachable != p.Reachable) {
				if p.Reachable {
					add(EventPeerUp, "peer %s answers through the tunnel", n)
				} else {
					add(EventPeerDown, "peer %s does not answer through the tunnel", n)
				}
			}
		}
		for _, n := range sortedKeys(prev.Peers) {
			if _, ok := cur.Peers[n]; !ok {
				add(EventPeerRemoved, "peer %s removed", n)
			}
		}
		if cur.HostRepairs > prev.HostRepairs {
			add(EventRepair, "host state repaired: %s", cur.LastRepair)
		}
		if cur.RecordRepairs > prev.RecordRepairs {
			add(EventRepair, "drover-node record written back to the local Consul agent")
		}
	}
	was := map[string]bool{}
	for _, r := range prev.Refused {
		was[refusalKey(r)] = true
	}
	for _, r := range cur.Refused {
		if first || !was[refusalKey(r)] {
			if r.Port != 0 {
				add(EventRefused, "container %s port %d refused: %s", r.Container, r.Port, r.Reason)
			} else {
				add(EventRefused, "container %s refused: %s", r.Container, r.Reason)
			}
		}
	}
	if !first && cur.LB != nil {
		out = append(out, lbEvents(node, prev.LB, cur.LB, now)...)
	}
	return out
}

func refusalKey(r Refusal) string {
	return fmt.Sprintf("%s\x00%d\x00%s", r.ContainerID, r.Port, r.Reason)
}

// lbEvents names what caused reloads and runtime operations between two
// samples: the structural changes for a reload, the server changes for
// runtime operations.
func lbEvents(node string, prev, cur *LBFacts, now time.Time) []Event {
	if prev == nil {
		prev = &LBFacts{}
	}
	var out []Event
	add := func(kind, text string) { out = append(out, Event{At: now, Node: node, Kind: kind, Text: text}) }
	if n := cur.Reloads - prev.Reloads; n > 0 {
		add(EventReload, fmt.Sprintf("HAProxy reloaded (%d): %s", n, orNone(structural(prev, cur), "settings changed")))
	}
	if n := cur.FailedReloads - prev.FailedReloads; n > 0 {
		add(EventReload, fmt.Sprintf("HAProxy reload failed (%d); last-known-good config restored: %s", n, cur.LastError))
	}
	if n := cur.RuntimeOps - prev.RuntimeOps; n > 0 {
		add(EventRuntime, fmt.Sprintf("%d runtime operations, no reload: %s", n, orNone(serverChanges(prev, cur), "server state or weight changed")))
	}
	if cur.LastError != "" && cur.LastError != prev.LastError && cur.FailedReloads == prev.FailedReloads {
		add(EventLBError, "lb: "+cur.LastError)
	}
	return out
}

func structural(prev, cur *LBFacts) string {
	var parts []string
	old := map[string]bool{}
	for _, f := range prev.Frontends {
		old[f] = true
	}
	now := map[string]bool{}
	for _, f := range cur.Frontends {
		now[f] = true
		if !old[f] {
			parts = append(parts, "frontend "+f+" added")
		}
	}
	for _, f := range prev.Frontends {
		if !now[f] {
			parts = append(parts, "frontend "+f+" removed")
		}
	}
	for _, b := range sortedKeys(cur.Slots) {
		o, ok := prev.Slots[b]
		switch {
		case !ok:
			parts = append(parts, "backend "+b+" added")
		case o != cur.Slots[b]:
			parts = append(parts, fmt.Sprintf("backend %s grew from %d to %d slots", b, o, cur.Slots[b]))
		}
	}
	for _, b := range sortedKeys(prev.Slots) {
		if _, ok := cur.Slots[b]; !ok {
			parts = append(parts, "backend "+b+" removed")
		}
	}
	return strings.Join(parts, "; ")
}

func serverChanges(prev, cur *LBFacts) string {
	var parts []string
	names := map[string]bool{}
	for b := range prev.Servers {
		names[b] = true
	}
	for b := range cur.Servers {
		names[b] = true
	}
	for _, b := range sortedKeys(names) {
		o, n := setOf(prev.Servers[b]), setOf(cur.Servers[b])
		var ch []string
		for _, a := range sortedKeys(n) {
			if !o[a] {
				ch = append(ch, "+"+a)
			}
		}
		for _, a := range sortedKeys(o) {
			if !n[a] {
				ch = append(ch, "-"+a)
			}
		}
		if len(ch) > 0 {
			parts = append(parts, "backend "+b+" "+strings.Join(ch, " "))
		}
	}
	return strings.Join(parts, "; ")
}

func setOf(ss []string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}

func orNone(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// MergeEvents returns every host's events together, newest first, at most
// n. Equal times keep node order.
func MergeEvents(rows []Row, n int) []Event {
	var all []Event
	for _, r := range rows {
		all = append(all, r.Events...)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if !all[i].At.Equal(all[j].At) {
			return all[i].At.After(all[j].At)
		}
		return all[i].Node < all[j].Node
	})
	if len(all) > n {
		all = all[:n]
	}
	return all
}
