package watch

import (
	"maps"
	"slices"

	"github.com/hashicorp/consul/api"

	"github.com/drover-net/drover/discovery"
)

// Catalog is what the catalog query of a set answers: the names (with
// tags) of the services its filter selects, and the index of the answer,
// which moves on any service change anywhere in the catalog.
type Catalog struct {
	Index uint64
	Names map[string][]string
}

// CheckKey names one check: its node and check ID.
type CheckKey struct{ Node, ID string }

// Check is one check of /v1/health/state/any as a set compares it.
type Check struct {
	Service string // the service name; "" for a node check (serfHealth)
	Status  string
	Modify  uint64 // its ModifyIndex
}

// Checks is every check in the catalog and the index of the answer, which
// moves on any check change.
type Checks struct {
	Index  uint64
	Checks map[CheckKey]Check
}

// ChecksFrom converts a /v1/health/state/any answer. It is pure.
func ChecksFrom(hc api.HealthChecks, index uint64) Checks {
	out := Checks{Index: index, Checks: make(map[CheckKey]Check, len(hc))}
	for _, c := range hc {
		if c == nil {
			continue
		}
		out.Checks[CheckKey{c.Node, c.CheckID}] = Check{Service: c.ServiceName, Status: c.Status, Modify: c.ModifyIndex}
	}
	return out
}

// View is what a set plans from: the services it wants (with their tags),
// the catalog index, and every check.
type View struct {
	Index  uint64
	Names  map[string][]string
	Checks map[CheckKey]Check
}

// Plan is what a set does after its view moved: fetch these services'
// instances (one non-blocking /v1/health/service/<name> each) and drop
// these. All marks a catalog move that nothing else explained (an address,
// port or meta change): every wanted service is fetched again.
type Plan struct {
	Fetch []string
	Drop  []string
	All   bool
}

// Empty reports whether the plan does nothing.
func (p Plan) Empty() bool { return len(p.Fetch) == 0 && len(p.Drop) == 0 }

// PlanSet decides which services of a set to fetch again and which to drop
// when its view moves from old to cur; have is the set's current content
// (it maps a node check to the services with an instance on that node). A
// zero old (the first pass) fetches every wanted service. It is pure; it
// compares content (names, tags, check status and modify index), never
// fetches because an index alone moved unless nothing explains the move.
//
// A catalog move is explained by a wanted service appearing, going or
// changing its tags, or by a check that appeared, went or changed with a
// modify index past the old catalog index (a registration writes its
// checks in the same transaction). A re-registration that changes only an
// address, port or meta writes no check: that is the unexplained case.
func PlanSet(old, cur View, have map[string][]discovery.Instance) Plan {
	fetch := map[string]bool{}
	var p Plan
	if old.Index == 0 && old.Names == nil {
		for n := range cur.Names {
			fetch[n] = true
		}
		p.Fetch = slices.Sorted(maps.Keys(fetch))
		return p
	}
	explained := false
	drop := map[string]bool{}
	for n := range old.Names {
		if _, ok := cur.Names[n]; !ok {
			drop[n] = true
			explained = true
		}
	}
	for n := range have {
		if _, ok := cur.Names[n]; !ok {
			drop[n] = true
		}
	}
	p.Drop = slices.Sorted(maps.Keys(drop))
	for n, tags := range cur.Names {
		otags, ok := old.Names[n]
		if !ok || !slices.Equal(otags, tags) {
			fetch[n] = true
			explained = true
		}
	}
	var nodes map[string][]string // node → wanted services with an instance there, built on demand
	touch := func(k CheckKey, c Check) {
		if c.Service != "" {
			if _, ok := cur.Names[c.Service]; ok {
				fetch[c.Service] = true
			}
			return
		}
		if nodes == nil {
			nodes = nodeServices(have)
		}
		for _, n := range nodes[k.Node] {
			if _, ok := cur.Names[n]; ok {
				fetch[n] = true
			}
		}
	}
	for k, c := range cur.Checks {
		o, ok := old.Checks[k]
		if ok && o == c {
			continue
		}
		touch(k, c)
		if c.Modify > old.Index || ok && o.Service != c.Service {
			explained = true
		}
		if ok && o.Service != c.Service {
			touch(k, o)
		}
	}
	for k, o := range old.Checks {
		if _, ok := cur.Checks[k]; !ok {
			touch(k, o)
			explained = true
		}
	}
	if cur.Index != old.Index && !explained {
		p.All = true
		for n := range cur.Names {
			fetch[n] = true
		}
	}
	p.Fetch = slices.Sorted(maps.Keys(fetch))
	return p
}

// nodeServices maps each node to the services with an instance on it.
func nodeServices(have map[string][]discovery.Instance) map[string][]string {
	out := map[string][]string{}
	for n, ins := range have {
		seen := map[string]bool{}
		for _, in := range ins {
			if !seen[in.Node] {
				seen[in.Node] = true
				out[in.Node] = append(out[in.Node], n)
			}
		}
	}
	return out
}
