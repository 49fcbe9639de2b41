package healthcheck

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPickSmallClusterProbesEveryone(t *testing.T) {
	cs := []candidate{{node: "h3"}, {node: "h2", active: true}}
	if diff := cmp.Diff([]string{"h2", "h3"}, pick(cs, DefaultMaxProbes)); diff != "" {
		t.Error(diff)
	}
}

func TestPickBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var cs []candidate
	for i := 0; i < 10; i++ {
		cs = append(cs, candidate{node: fmt.Sprintf("a%d", i), active: true, lastProbed: t0.Add(time.Duration(i) * time.Second)})
	}
	for i := 0; i < 10; i++ {
		cs = append(cs, candidate{node: fmt.Sprintf("i%d", i), lastProbed: t0.Add(time.Duration(10-i) * time.Second)})
	}
	cs = append(cs, candidate{node: "new"}) // never probed: first among the idle
	got := pick(cs, 6)
	want := []string{"a0", "a1", "a2", "i8", "i9", "new"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pick (-want +got):\n%s", diff)
	}
	// Few active peers: the idle ones get the budget they leave.
	got = pick(append(cs[10:], cs[0]), 6)
	want = []string{"a0", "i6", "i7", "i8", "i9", "new"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pick with one active (-want +got):\n%s", diff)
	}
}

// TestPickRotation: with 999 idle peers and the default budget, every peer
// is probed within ceil(999/32) rounds, and none again before all once.
func TestPickRotation(t *testing.T) {
	last := map[string]time.Time{}
	var nodes []string
	for i := 0; i < 999; i++ {
		nodes = append(nodes, fmt.Sprintf("n%03d", i))
	}
	now := time.Unix(0, 0)
	seen := map[string]int{}
	rounds := (999 + DefaultMaxProbes - 1) / DefaultMaxProbes
	for r := 0; r < rounds; r++ {
		now = now.Add(2 * time.Second)
		cs := make([]candidate, len(nodes))
		for i, n := range nodes {
			cs[i] = candidate{node: n, lastProbed: last[n]}
		}
		got := pick(cs, DefaultMaxProbes)
		if len(got) > DefaultMaxProbes {
			t.Fatalf("round %d probes %d peers, budget %d", r, len(got), DefaultMaxProbes)
		}
		repeats := 0
		for _, n := range got {
			if seen[n] > 0 {
				repeats++
			}
		}
		if never := len(nodes) - len(seen); repeats > 0 && len(got)-repeats < never {
			t.Fatalf("round %d probes %d peers again while %d were never probed", r, repeats, never)
		}
		for _, n := range got {
			last[n] = now
			seen[n]++
		}
	}
	if len(seen) != len(nodes) {
		t.Fatalf("%d of %d peers probed in %d rounds", len(seen), len(nodes), rounds)
	}
}
