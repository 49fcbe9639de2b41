package healthcheck

import (
	"sort"
	"time"
)

// Defaults of the probe budget.
const (
	// DefaultMaxProbes is how many peers one round probes at most (16 a
	// second at the 2 s interval): at 3 or 30 hosts every peer every
	// round, at 1,000 the peers this host exchanges traffic with plus a
	// rotating sample of the rest.
	DefaultMaxProbes = 32
	// DefaultActiveBytes is how many bytes a peer must have exchanged with
	// this host since the previous round (WireGuard's counters) to count as
	// one it talks to: more than the probe itself and keepalives make.
	DefaultActiveBytes = 4096
)

// candidate is one peer as pick sees it.
type candidate struct {
	node       string
	active     bool      // exchanged traffic since the previous round
	lastProbed time.Time // zero: never
}

// pick chooses the peers one round probes, at most max of them: half the
// budget for the peers with traffic, least recently probed first, the
// rest (and what the active ones leave) for the others, least recently
// probed first, so that every peer is probed at least every
// ceil(idle/(max/2)) rounds and one that was never probed comes first. It
// is pure; the result is sorted by node.
func pick(cs []candidate, max int) []string {
	if max <= 0 || len(cs) <= max {
		out := make([]string, 0, len(cs))
		for _, c := range cs {
			out = append(out, c.node)
		}
		sort.Strings(out)
		return out
	}
	var active, idle []candidate
	for _, c := range cs {
		if c.active {
			active = append(active, c)
		} else {
			idle = append(idle, c)
		}
	}
	oldestFirst := func(s []candidate) {
		sort.Slice(s, func(i, j int) bool {
			if !s[i].lastProbed.Equal(s[j].lastProbed) {
				return s[i].lastProbed.Before(s[j].lastProbed)
			}
			return s[i].node < s[j].node
		})
	}
	oldestFirst(active)
	oldestFirst(idle)
	nActive := min(len(active), max/2)
	nIdle := min(len(idle), max-nActive)
	nActive = min(len(active), max-nIdle) // what idle leaves
	out := make([]string, 0, max)
	for _, c := range active[:nActive] {
		out = append(out, c.node)
	}
	for _, c := range idle[:nIdle] {
		out = append(out, c.node)
	}
	sort.Strings(out)
	return out
}
