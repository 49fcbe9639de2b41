package lb

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"
)

// loop is what the controller's loop carries from one pass to the next.
// step and the outcome functions (reloaded, applied, restarted) take one
// and return the next; they are pure, and Run only does what they ask.
//
//	              read fails
//	in step ----------------------> stale  (HAProxy kept as it is;
//	   ^    <---------------------    |     a first read missing once
//	   |        read succeeds         |     applied: quiet for NotReadGrace)
//	   |                              v
//	   +------ plan empty ------- desired vs running
//	   |                              |
//	   |     suspicious shrink        v
//	   +--- (held until the same --- plan
//	   |     read for Confirm)        |
//	   |                 +------------+-------------------+
//	   |                 | server changes only            | structural, or ForceReload
//	   |                 v                                v
//	   +--- ok ----- apply ops                    pending (ReloadGap since LastReload)
//	   |                 | fails: ForceReload             |
//	   |                 v                                v
//	   |           next pass reloads                    reload
//	   |                                                  |
//	   +--- ok: ReloadGap = MinReloadInterval ------------+
//	                                                      | refused: ReloadGap doubles (to 1m);
//	                                                      v servers of unchanged backends
//	                                                 apply ops on the last good structure
type loop struct {
	Running     State     // what HAProxy runs, as far as drover knows
	Applied     bool      // something was applied once (a reload or runtime ops)
	ForceReload bool      // what runs is unknown or out of step: the next change is a reload
	LastReload  time.Time // when the last reload was sent
	// ReloadGap is the least time between reloads: MinReloadInterval,
	// doubled after each refused reload up to a minute.
	ReloadGap     time.Duration
	Held          State     // a suspicious shrink waiting for confirmation
	HeldSince     time.Time // zero when nothing is held
	NotReadSince  time.Time // a first read missing since (once applied)
	Stale         bool      // the view is not trusted: nothing changes
	StaleSince    time.Time
	StaleReason   string
	Holding       []string // the shrinks held, for status
	PendingReload bool     // a reload waits for ReloadGap
}

// read is one look at Consul: the Source's error (the view is not
// trusted), or the desired state of its snapshot.
type read struct {
	Err     error
	Desired State
}

// actionKind is what the loop must do.
type actionKind int

const (
	doNothing actionKind = iota
	doReload             // Proxy.Reload(Next)
	doApply              // Proxy.Apply(Ops), leading to Next
)

// action is what a step asks of the loop: at most one thing to do to
// HAProxy, lines to log, and when to look again without a kick.
type action struct {
	Kind    actionKind
	Next    State    // doReload: the config; doApply: the state Ops lead to
	Ops     []Op     // doApply
	Reasons []string // doReload
	// Partial marks runtime ops on the last good structure while a
	// reload is refused.
	Partial bool
	Wake    time.Duration // look again after this long (0: no timer)
	Notes   []note
}

// note is one log line a step asks for.
type note struct {
	Level slog.Level
	Msg   string
	Args  []any
}

func (a *action) note(l slog.Level, msg string, args ...any) {
	a.Notes = append(a.Notes, note{l, msg, args})
}

// minWake is the shortest wait the loop schedules.
const minWake = 10 * time.Millisecond

// step decides what one read means: nothing while the view is stale or a
// first read is awaited, a held shrink, a pending reload, a reload, or
// runtime operations.
func step(s loop, in read, now time.Time, opt ControllerOptions) (loop, action) {
	var a action
	notRead := errors.Is(in.Err, ErrNotRead)
	if notRead && s.Applied {
		if s.NotReadSince.IsZero() {
			s.NotReadSince = now
		}
		if now.Sub(s.NotReadSince) < NotReadGrace {
			a.note(slog.LevelDebug, "waiting for a first read", "detail", in.Err)
			return s, a
		}
	}
	if in.Err == nil || !notRead {
		s.NotReadSince = time.Time{}
	}
	if in.Err != nil {
		if !s.Stale {
			s.StaleSince = now
			if !s.Applied && notRead {
				a.note(slog.LevelInfo, "waiting for the first Consul read; haproxy runs its last config", "detail", in.Err)
			} else {
				a.note(slog.LevelWarn, "consul view not trusted; keeping haproxy as it is", "err", in.Err)
			}
		}
		s.Stale, s.StaleReason = true, in.Err.Error()
		return s, a
	}
	if s.Stale {
		a.note(slog.LevelInfo, "consul view trusted again", "stale_for", now.Sub(s.StaleSince).Round(time.Millisecond))
	}
	s.Stale, s.StaleSince, s.StaleReason = false, time.Time{}, ""

	desired := KeepPools(s.Running, in.Desired)
	plan := Diff(s.Running, desired)
	if s.ForceReload && !plan.Reload {
		plan = Plan{Reload: true, Reasons: []string{"running config unknown or out of step"}}
	}
	if plan.Empty() {
		s.Held, s.HeldSince = State{}, time.Time{}
		s.Holding, s.PendingReload = nil, false
		return s, a
	}
	if shrinks := SuspiciousShrinks(s.Running, desired); len(shrinks) > 0 {
		if s.HeldSince.IsZero() || !s.Held.Equal(desired) {
			s.Held, s.HeldSince = desired.Clone(), now
			a.note(slog.LevelWarn, "holding a suspicious shrink until it is confirmed", "shrinks", strings.Join(shrinks, "; "), "confirm_after", opt.Confirm)
		}
		if wait := opt.Confirm - now.Sub(s.HeldSince); wait > 0 {
			s.Holding = shrinks
			a.Wake = wait
			return s, a
		}
		a.note(slog.LevelInfo, "suspicious shrink confirmed", "shrinks", strings.Join(shrinks, "; "))
	}
	s.Held, s.HeldSince = State{}, time.Time{}
	s.Holding = nil

	if plan.Reload {
		if wait := s.ReloadGap - now.Sub(s.LastReload); wait > 0 {
			s.PendingReload = true
			a.Wake = wait
			return s, a
		}
		s.LastReload = now
		a.Kind, a.Next, a.Reasons = doReload, desired, plan.Reasons
		return s, a
	}
	a.Kind, a.Ops, a.Next = doApply, plan.Ops, After(s.Running, desired, plan)
	return s, a
}

// reloaded is the outcome of a's reload. A refused reload doubles the
// gap to the next one (up to a minute, or MinReloadInterval if longer)
// and, unless what runs is unknown, asks for the server changes of the
// backends whose structure stays, on the last good structure.
func reloaded(s loop, a action, err error, opt ControllerOptions) (loop, action) {
	if err == nil {
		s.ReloadGap = opt.MinReloadInterval
		s.Running, s.ForceReload = a.Next.Clone(), false
		s.PendingReload = false
		s.Applied = true
		return s, action{}
	}
	s.ReloadGap = min(2*s.ReloadGap, max(time.Minute, opt.MinReloadInterval))
	next := action{Wake: s.ReloadGap}
	if !s.ForceReload {
		part := KeepStructure(s.Running, a.Next)
		if p := Diff(s.Running, part); !p.Reload && len(p.Ops) > 0 {
			next.Kind, next.Ops, next.Next, next.Partial = doApply, p.Ops, After(s.Running, part, p), true
		}
	}
	return s, next
}

// applied is the outcome of a's runtime operations. When they fail, what
// runs is uncertain: the next pass reloads the desired config (soon,
// unless a refused reload already set the time).
func applied(s loop, a action, err error) (loop, action) {
	if err != nil {
		s.ForceReload = true
		if a.Partial {
			return s, action{}
		}
		return s, action{Wake: minWake}
	}
	s.Running = a.Next
	if !a.Partial {
		s.Applied = true
	}
	return s, action{}
}

// restarted is HAProxy having been started again from its files, which
// may lag the runtime by a write in flight: the desired state is reloaded
// into it at once.
func restarted(s loop) loop {
	s.ForceReload, s.LastReload = true, time.Time{}
	return s
}

// KeepPools keeps a backend's larger running pool of server slots while
// its servers still fill more than a quarter of it, so that scaling back
// down after a pool grew does not cost a second reload (and scaling around
// a power of two does not reload on every step). It is pure.
func KeepPools(running, desired State) State {
	slots := map[string]int{}
	for _, b := range running.Backends {
		slots[b.Name] = b.Slots
	}
	out := desired.Clone()
	for i, b := range out.Backends {
		if r := slots[b.Name]; r > b.Slots && len(b.Servers)*4 > r {
			out.Backends[i].Slots = r
		}
	}
	return out
}

// KeepStructure returns running's frontends and backends with the servers
// desired gives each backend whose structure (mode, balance, slots, check)
// is unchanged; other backends stay as they run. When a structural change
// cannot be installed (HAProxy refuses the reload), Diff(running,
// KeepStructure(running, desired)) still carries the server changes as
// runtime operations. It is pure.
func KeepStructure(running, desired State) State {
	want := map[string]Backend{}
	for _, b := range desired.Backends {
		want[b.Name] = b
	}
	out := State{Frontends: running.Clone().Frontends}
	for _, b := range running.Backends {
		nb, ok := want[b.Name]
		if ok && nb.Mode == b.Mode && nb.Balance == b.Balance && nb.Slots == b.Slots && backendCheck(nb) == backendCheck(b) {
			nb.Servers = append([]Server(nil), nb.Servers...)
			out.Backends = append(out.Backends, nb)
			continue
		}
		c := b
		c.Servers = append([]Server(nil), b.Servers...)
		out.Backends = append(out.Backends, c)
	}
	return out
}

// SuspiciousShrinks lists the backends that would lose all their enabled
// servers, or more than half of at least three, going from old to new. A
// single read that says so is not trusted (a Consul agent that restarted
// with an empty catalog, a partial answer); the controller waits for the
// same answer to persist. It is pure.
func SuspiciousShrinks(old, new State) []string {
	n := map[string]int{}
	for _, b := range new.Backends {
		n[b.Name] = enabledCount(b)
	}
	var out []string
	for _, b := range old.Backends {
		before := enabledCount(b)
		after := n[b.Name]
		if before == 0 {
			continue
		}
		if after == 0 || (before >= 3 && after*2 < before) {
			out = append(out, fmt.Sprintf("backend %s %d → %d servers", b.Name, before, after))
		}
	}
	sort.Strings(out)
	return out
}

func enabledCount(b Backend) int {
	n := 0
	for _, s := range b.Servers {
		if s.Enabled {
			n++
		}
	}
	return n
}
