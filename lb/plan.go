package lb

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/drover-net/drover/discovery"
)

// Op is one runtime-API operation on a server slot.
type Op struct {
	Kind    string // "set-addr", "enable", "drain-disable" or "set-weight"
	Backend string
	Server  string // the slot's server name as written in the running config
	Addr    string // set-addr only
	Weight  int    // set-weight only
}

func (o Op) String() string {
	switch o.Kind {
	case "set-addr":
		return fmt.Sprintf("set-addr %s/%s %s", o.Backend, o.Server, o.Addr)
	case "set-weight":
		return fmt.Sprintf("set-weight %s/%s %d", o.Backend, o.Server, o.Weight)
	default:
		return fmt.Sprintf("%s %s/%s", o.Kind, o.Backend, o.Server)
	}
}

// Plan is how to get from one State to another: either a reload with the
// new config (Reload, with Reasons) or runtime operations (Ops), never
// both. An empty Plan means nothing to do.
type Plan struct {
	Reload  bool
	Reasons []string
	Ops     []Op
}

// Empty reports whether the plan does nothing.
func (p Plan) Empty() bool { return !p.Reload && len(p.Ops) == 0 }

// String prints one line per reason or op.
func (p Plan) String() string {
	var b strings.Builder
	for _, r := range p.Reasons {
		fmt.Fprintf(&b, "reload: %s\n", r)
	}
	for _, o := range p.Ops {
		b.WriteString(o.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Diff computes the plan that takes a running HAProxy from old (what runs:
// Servers[i] is slot i, see Server) to new (normally from Desired). It is
// pure.
//
// A reload is needed when frontends or the edge settings change, a backend
// is added or removed or changes mode, balance, slots, check
// kind/path/timeout, stickiness, PROXY protocol or tunnel timeout, or a server
// would keep or take a slot whose check (interval, rise, fall) differs
// from its own. Otherwise servers are matched to slots by address:
// removed servers' slots are drained ("drain-disable"), new servers take
// the lowest free slot ("set-addr", "set-weight" when it differs,
// "enable"), and kept servers get "set-weight" when their weight changed.
// Slots being drained are reused only when no other slot is free.
func Diff(old, new State) Plan {
	var p Plan
	p.Reasons = frontendReasons(old.Frontends, new.Frontends)
	if !reflect.DeepEqual(State{Edge: old.Edge}.normal().Edge, State{Edge: new.Edge}.normal().Edge) {
		p.Reasons = append(p.Reasons, "edge settings changed")
	}
	oldBE := map[string]Backend{}
	for _, b := range old.Backends {
		oldBE[b.Name] = b
	}
	newBE := map[string]bool{}
	var ops []Op
	for _, nb := range new.Backends {
		newBE[nb.Name] = true
		ob, ok := oldBE[nb.Name]
		if !ok {
			p.Reasons = append(p.Reasons, "backend "+nb.Name+" added")
			continue
		}
		rs, bops := diffBackend(ob, nb)
		p.Reasons = append(p.Reasons, rs...)
		ops = append(ops, bops...)
	}
	for _, ob := range old.Backends {
		if !newBE[ob.Name] {
			p.Reasons = append(p.Reasons, "backend "+ob.Name+" removed")
		}
	}
	if len(p.Reasons) > 0 {
		p.Reload = true
		return p
	}
	p.Reasons = nil
	p.Ops = ops
	return p
}

func frontendReasons(old, new []Frontend) []string {
	var rs []string
	om := map[string]Frontend{}
	for _, f := range old {
		om[f.Name] = f
	}
	nm := map[string]bool{}
	for _, f := range new {
		nm[f.Name] = true
		o, ok := om[f.Name]
		switch {
		case !ok:
			rs = append(rs, "frontend "+f.Name+" added")
		case !reflect.DeepEqual(State{Frontends: []Frontend{o}}.normal(), State{Frontends: []Frontend{f}}.normal()):
			rs = append(rs, "frontend "+f.Name+" changed")
		}
	}
	for _, f := range old {
		if !nm[f.Name] {
			rs = append(rs, "frontend "+f.Name+" removed")
		}
	}
	return rs
}

// backendCheck is the backend-level part of the check that Render writes:
// the kind and path (option httpchk) and the largest timeout (timeout
// check).
func backendCheck(b Backend) discovery.Check {
	if len(b.Servers) == 0 {
		if b.Check.Kind != "" {
			return discovery.Check{Kind: b.Check.Kind, Path: b.Check.Path, Timeout: b.Check.Timeout}
		}
		return discovery.Check{Kind: DefaultCheck.Kind, Timeout: DefaultCheck.Timeout}
	}
	c := discovery.Check{Kind: b.Servers[0].Check.Kind, Path: b.Servers[0].Check.Path}
	for _, s := range b.Servers {
		c.Timeout = max(c.Timeout, s.Check.Timeout)
	}
	return c
}

// slotCheck is the check written on slot i's server line.
func slotCheck(b Backend, i int) discovery.Check {
	switch {
	case i < len(b.Servers):
		return b.Servers[i].Check
	case len(b.Servers) > 0:
		return b.Servers[0].Check
	case b.Check.Kind != "":
		return b.Check
	default:
		return DefaultCheck
	}
}

// lineCheck is the part of a check on a server line.
func lineCheck(c discovery.Check) [3]int64 {
	return [3]int64{int64(c.Interval), int64(c.Rise), int64(c.Fall)}
}

// slotWeight is the weight written on (or last set on) slot i.
func slotWeight(b Backend, i int) int {
	if i < len(b.Servers) {
		return b.Servers[i].Weight
	}
	return 100
}

func slotName(b Backend, i int) string {
	if i < len(b.Servers) && b.Servers[i].Name != "" {
		return b.Servers[i].Name
	}
	return fmt.Sprintf("slot%d", i)
}

// tunnelOf is the tunnel timeout Render writes for b.
func tunnelOf(b Backend) time.Duration {
	if b.TunnelTimeout <= 0 {
		return DefaultTunnelTimeout
	}
	return b.TunnelTimeout
}

func diffBackend(ob, nb Backend) ([]string, []Op) {
	var rs []string
	if ob.Mode != nb.Mode {
		rs = append(rs, fmt.Sprintf("backend %s mode %s → %s", nb.Name, ob.Mode, nb.Mode))
	}
	if ob.Balance != nb.Balance {
		rs = append(rs, fmt.Sprintf("backend %s balance %s → %s", nb.Name, ob.Balance, nb.Balance))
	}
	if ob.Slots != nb.Slots {
		rs = append(rs, fmt.Sprintf("backend %s slots %d → %d", nb.Name, ob.Slots, nb.Slots))
	}
	if backendCheck(ob) != backendCheck(nb) {
		rs = append(rs, fmt.Sprintf("backend %s check changed", nb.Name))
	}
	if ob.Sticky != nb.Sticky || ob.ProxyProtocol != nb.ProxyProtocol || tunnelOf(ob) != tunnelOf(nb) || ob.HSTS != nb.HSTS {
		rs = append(rs, fmt.Sprintf("backend %s options changed", nb.Name))
	}
	if len(rs) > 0 {
		return rs, nil
	}

	// Match new servers to old slots by address: enabled slots first,
	// then disabled slots still holding that address.
	slotOf := map[string]int{}
	for _, enabled := range []bool{true, false} {
		for i := 0; i < ob.Slots; i++ {
			if i >= len(ob.Servers) || ob.Servers[i].Enabled != enabled || ob.Servers[i].Addr == "" {
				continue
			}
			if _, ok := slotOf[ob.Servers[i].Addr]; !ok {
				slotOf[ob.Servers[i].Addr] = i
			}
		}
	}
	used := map[int]bool{}
	var kept, added []Server
	keptSlot := map[string]int{}
	for _, s := range nb.Servers {
		if i, ok := slotOf[s.Addr]; ok && !used[i] {
			used[i] = true
			keptSlot[s.Addr] = i
			kept = append(kept, s)
		} else {
			added = append(added, s)
		}
	}
	var drains []Op
	var vacated []int
	for i := 0; i < ob.Slots; i++ {
		if i < len(ob.Servers) && ob.Servers[i].Enabled && !used[i] {
			drains = append(drains, Op{Kind: "drain-disable", Backend: nb.Name, Server: slotName(ob, i)})
			vacated = append(vacated, i)
		}
	}
	var free []int
	for i := 0; i < ob.Slots; i++ {
		if !used[i] && (i >= len(ob.Servers) || !ob.Servers[i].Enabled) {
			free = append(free, i)
		}
	}
	free = append(free, vacated...)

	var ops []Op
	ops = append(ops, drains...)
	for _, s := range added {
		if len(free) == 0 {
			return []string{fmt.Sprintf("backend %s has no free slot", nb.Name)}, nil
		}
		i := free[0]
		free = free[1:]
		if lineCheck(slotCheck(ob, i)) != lineCheck(s.Check) {
			rs = append(rs, fmt.Sprintf("backend %s server %s check differs from slot %s", nb.Name, s.Name, slotName(ob, i)))
			continue
		}
		name := slotName(ob, i)
		ops = append(ops, Op{Kind: "set-addr", Backend: nb.Name, Server: name, Addr: s.Addr})
		if slotWeight(ob, i) != s.Weight {
			ops = append(ops, Op{Kind: "set-weight", Backend: nb.Name, Server: name, Weight: s.Weight})
		}
		ops = append(ops, Op{Kind: "enable", Backend: nb.Name, Server: name})
	}
	sort.Slice(kept, func(a, b int) bool { return keptSlot[kept[a].Addr] < keptSlot[kept[b].Addr] })
	for _, s := range kept {
		i := keptSlot[s.Addr]
		o := ob.Servers[i]
		if lineCheck(o.Check) != lineCheck(s.Check) {
			rs = append(rs, fmt.Sprintf("backend %s server %s check changed", nb.Name, s.Name))
			continue
		}
		if o.Weight != s.Weight {
			ops = append(ops, Op{Kind: "set-weight", Backend: nb.Name, Server: o.Name, Weight: s.Weight})
		}
		if !o.Enabled {
			ops = append(ops, Op{Kind: "enable", Backend: nb.Name, Server: o.Name})
		}
	}
	if len(rs) > 0 {
		return rs, nil
	}
	return nil, ops
}

// After returns the running state once p has been applied to old: new
// itself after a reload, otherwise old with p's operations on its slots.
// Diff(After(old, p), new) is then empty.
func After(old, new State, p Plan) State {
	if p.Reload {
		return new.Clone()
	}
	st := old.Clone()
	idx := map[string]int{}
	for i, b := range st.Backends {
		idx[b.Name] = i
	}
	for _, op := range p.Ops {
		bi, ok := idx[op.Backend]
		if !ok {
			continue
		}
		b := &st.Backends[bi]
		si := -1
		for i := 0; i < b.Slots; i++ {
			if slotName(*b, i) == op.Server {
				si = i
				break
			}
		}
		if si < 0 {
			continue
		}
		// Materialise slots up to si so that they keep their name.
		for len(b.Servers) <= si {
			i := len(b.Servers)
			b.Servers = append(b.Servers, Server{Name: slotName(*b, i), Addr: "127.0.0.1:1", Weight: 100, Check: slotCheck(*b, i)})
		}
		s := &b.Servers[si]
		switch op.Kind {
		case "set-addr":
			s.Addr = op.Addr
		case "set-weight":
			s.Weight = op.Weight
		case "enable":
			s.Enabled = true
		case "drain-disable":
			s.Enabled = false
		}
	}
	return st
}
