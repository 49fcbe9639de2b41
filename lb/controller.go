package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/drover-net/drover/discovery"
)

// Source gives the controller the instances of every service that asks for
// a load balancer. Snapshot fails when the view is not complete and fresh
// (Consul unreachable, leaderless, a service not read yet): the controller
// then keeps HAProxy as it is.
type Source interface {
	Snapshot() (map[string][]discovery.Instance, error)
	Changed() <-chan struct{}
}

// ErrNotRead is wrapped by a Source whose view lacks a first read (of the
// service list, or of a service that just appeared); Changed fires once it
// arrives. A new service's first read is not staleness: the controller
// waits for it quietly, for up to NotReadGrace.
var ErrNotRead = errors.New("not read yet")

// NotReadGrace is how long a missing first read is waited for before the
// view counts as stale.
const NotReadGrace = 10 * time.Second

// ErrInvalidConfig is wrapped by Proxy.Reload's error when the new config
// was refused by validation (`haproxy -c`) and nothing was installed;
// such a refusal also counts as a validation failure.
var ErrInvalidConfig = errors.New("config refused by validation")

// Proxy is the HAProxy the controller drives (lb/haproxy in production,
// a fake in unit tests).
//
// Apply runs runtime operations only and touches no file, so that a server
// change reaches HAProxy in milliseconds whatever the config's size.
// Persist brings the files up to st, the state runtime operations led to:
// the config (validated, swapped atomically), the server-state file (so that
// a restarted HAProxy brings back no older address, port or state) and the
// running record; the controller calls it from its own goroutine, coalesced,
// never concurrently with itself or Reload. Ensure reports whether it had
// to start HAProxy again (from the files). Reload's error wraps
// ErrInvalidConfig when validation refused the config.
type Proxy interface {
	Running() (State, bool)
	Start(ctx context.Context, initial State) error
	Ensure(ctx context.Context) (restarted bool, err error)
	Apply(ctx context.Context, ops []Op) error
	Persist(ctx context.Context, st State) error
	Reload(ctx context.Context, next State) error
}

// ControllerOptions tune the controller. Zero fields take defaults.
type ControllerOptions struct {
	Desired Options
	// PortFree, when set, tells whether HAProxy could bind a port that no
	// running frontend holds yet (nil: it can); a port it cannot bind is
	// left out with a reason instead of failing every later reload.
	PortFree          func(port int) error
	MinReloadInterval time.Duration // at most one reload per interval; changes meanwhile coalesce (default 2s)
	Confirm           time.Duration // how long a suspicious shrink must persist before it is applied (default 3s)
	Check             time.Duration // how often the process is checked (default 2s)
	Log               *slog.Logger
}

// Controller keeps HAProxy equal to the desired state of the services in
// Consul: runtime operations for server changes, one coalesced reload for
// structural ones, nothing at all while Consul cannot be trusted.
type Controller struct {
	opt   ControllerOptions
	src   Source
	proxy Proxy

	// files orders Persist and Reload: both write the config file.
	files sync.Mutex

	mu sync.Mutex // guards st and the persist fields below
	st ControllerStatus
	// toPersist is the latest state runtime operations led to that the
	// files do not carry yet; persistGen counts such states, persistedGen
	// the last one written (or superseded by a reload).
	toPersist    State
	persistGen   uint64
	persistedGen uint64
	persistKick  chan struct{}
}

// ControllerStatus is what status and metrics show.
type ControllerStatus struct {
	Running         State
	Problems        []string
	Stale           bool      // Consul view not trusted: HAProxy kept as it is
	StaleSince      time.Time // zero when not stale
	StaleReason     string
	Holding         []string // suspicious shrinks waiting for confirmation
	RuntimeOps      int64
	Reloads         int64
	FailedReloads   int64
	ValidationFails int64
	ApplyErrors     int64
	LastError       string
	LastErrorAt     time.Time
	LastApply       time.Time
	LastApplyDur    time.Duration
	PendingReload   bool
	// PendingFile is true while the files lag the runtime (written in the
	// background after runtime operations); FileWrites counts those
	// writes, FileWriteDur is the last one's duration.
	PendingFile  bool
	FileWrites   int64
	FileWriteDur time.Duration
	Restarts     int64 // HAProxy started again by Ensure
}

// NewController returns a controller; Run starts it.
func NewController(opt ControllerOptions, src Source, proxy Proxy) *Controller {
	if opt.MinReloadInterval <= 0 {
		opt.MinReloadInterval = 2 * time.Second
	}
	if opt.Confirm <= 0 {
		opt.Confirm = 3 * time.Second
	}
	if opt.Check <= 0 {
		opt.Check = 2 * time.Second
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	return &Controller{opt: opt, src: src, proxy: proxy, persistKick: make(chan struct{}, 1)}
}

// queuePersist records st as what runs after runtime operations and kicks
// the file writer; states queued while it writes coalesce into the latest.
func (c *Controller) queuePersist(st State) {
	c.mu.Lock()
	c.toPersist = st.Clone()
	c.persistGen++
	c.st.PendingFile = true
	c.mu.Unlock()
	select {
	case c.persistKick <- struct{}{}:
	default:
	}
}

// reload runs a reload under the files lock; a successful one writes the
// files for next, superseding every state queued before it.
func (c *Controller) reload(ctx context.Context, next State) error {
	c.files.Lock()
	defer c.files.Unlock()
	c.mu.Lock()
	gen := c.persistGen
	c.mu.Unlock()
	err := c.proxy.Reload(ctx, next)
	if err == nil {
		c.mu.Lock()
		if gen > c.persistedGen {
			c.persistedGen = gen
		}
		c.st.PendingFile = c.persistGen > c.persistedGen
		c.mu.Unlock()
	}
	return err
}

// persistLoop writes the files after runtime operations, in the background
// and coalesced (issue 12 defect 19, issue 17 item 4): the controller's loop
// never waits for a validation or a file write, and the files catch up with
// the latest state. A failed write is retried on the next kick or check.
func (c *Controller) persistLoop(ctx context.Context) {
	retry := time.NewTicker(c.opt.Check)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.persistKick:
		case <-retry.C:
		}
		c.persistOnce(ctx)
	}
}

func (c *Controller) persistOnce(ctx context.Context) {
	c.files.Lock()
	defer c.files.Unlock()
	c.mu.Lock()
	gen, st := c.persistGen, c.toPersist
	due := gen > c.persistedGen
	c.mu.Unlock()
	if !due {
		return
	}
	begin := time.Now()
	if err := c.proxy.Persist(ctx, st); err != nil {
		c.fail("writing haproxy files", err)
		return
	}
	d := time.Since(begin)
	c.mu.Lock()
	if gen > c.persistedGen {
		c.persistedGen = gen
	}
	c.st.PendingFile = c.persistGen > c.persistedGen
	c.st.FileWrites++
	c.st.FileWriteDur = d
	c.mu.Unlock()
	c.opt.Log.Debug("haproxy files written after runtime changes", "took", d.Round(time.Millisecond))
}

// Status returns a copy of the controller's status.
func (c *Controller) Status() ControllerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.st
	s.Running = c.st.Running.Clone()
	s.Problems = append([]string(nil), c.st.Problems...)
	s.Holding = append([]string(nil), c.st.Holding...)
	return s
}

func (c *Controller) update(f func(*ControllerStatus)) {
	c.mu.Lock()
	f(&c.st)
	c.mu.Unlock()
}

// Run starts (or attaches to) HAProxy from the state it last ran and then
// reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	running, known := c.proxy.Running()
	// HAProxy that cannot start (a bad binary, a port taken, a full disk)
	// is the lb's problem only: it is reported and retried with backoff,
	// and the rest of the agent (mesh, discovery) keeps running.
	for delay := 250 * time.Millisecond; ; delay = min(delay*2, time.Minute) {
		err := c.proxy.Start(ctx, running)
		if err == nil {
			break
		}
		c.fail("start", fmt.Errorf("starting haproxy (retrying in %s): %w", delay, err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
	c.update(func(s *ControllerStatus) { s.LastError = "" })
	c.update(func(s *ControllerStatus) { s.Running = running.Clone() })
	persisted := make(chan struct{})
	pctx, stopPersist := context.WithCancel(ctx)
	go func() {
		defer close(persisted)
		c.persistLoop(pctx)
	}()
	defer func() {
		stopPersist()
		<-persisted
		// What the runtime runs reaches the files before the controller
		// returns (agent shutdown), so a restart starts from it.
		fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.persistOnce(fctx)
	}()
	forceReload := !known
	var lastReload time.Time
	// reloadGap grows after failed reloads (a config HAProxy refuses, say
	// a port taken by another process), up to a minute, so that a broken
	// change is retried without churning workers.
	reloadGap := c.opt.MinReloadInterval
	var held State
	var heldSince time.Time
	var lastProblems string
	var notReadSince time.Time // a first read missing since, once applied
	check := time.NewTicker(c.opt.Check)
	defer check.Stop()
	wake := time.NewTimer(0)
	defer wake.Stop()
	later := func(d time.Duration) {
		if d < 10*time.Millisecond {
			d = 10 * time.Millisecond
		}
		wake.Reset(d)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.src.Changed():
		case <-wake.C:
		case <-check.C:
			restarted, err := c.proxy.Ensure(ctx)
			if err != nil {
				c.fail("haproxy process", err)
			}
			if restarted {
				// It came back from the files, which may lag the runtime
				// by a write in flight: reload the desired state so that
				// what runs is what is desired, not what the files held.
				c.update(func(s *ControllerStatus) { s.Restarts++ })
				c.opt.Log.Warn("haproxy was started again; reloading the desired state into it")
				forceReload, lastReload = true, time.Time{}
			}
		}
		snap, err := c.src.Snapshot()
		if errors.Is(err, ErrNotRead) && !c.Status().LastApply.IsZero() {
			if notReadSince.IsZero() {
				notReadSince = time.Now()
			}
			if time.Since(notReadSince) < NotReadGrace {
				c.opt.Log.Debug("waiting for a first read", "detail", err)
				continue
			}
		}
		if err == nil || !errors.Is(err, ErrNotRead) {
			notReadSince = time.Time{}
		}
		if err != nil {
			c.update(func(s *ControllerStatus) {
				if !s.Stale {
					s.StaleSince = time.Now()
					if s.LastApply.IsZero() && errors.Is(err, ErrNotRead) {
						c.opt.Log.Info("waiting for the first Consul read; haproxy runs its last config", "detail", err)
					} else {
						c.opt.Log.Warn("consul view not trusted; keeping haproxy as it is", "err", err)
					}
				}
				s.Stale, s.StaleReason = true, err.Error()
			})
			continue
		}
		c.update(func(s *ControllerStatus) {
			if s.Stale {
				c.opt.Log.Info("consul view trusted again", "stale_for", time.Since(s.StaleSince).Round(time.Millisecond))
			}
			s.Stale, s.StaleSince, s.StaleReason = false, time.Time{}, ""
		})
		desired, probs := Desired(c.opt.Desired, snap)
		if bad := c.unbindable(running, desired); len(bad) > 0 {
			opt := c.opt.Desired
			opt.Unbindable = bad
			desired, probs = Desired(opt, snap)
		}
		ps := make([]string, len(probs))
		for i, p := range probs {
			ps[i] = p.String()
		}
		if j := strings.Join(ps, "\n"); j != lastProblems {
			for _, p := range ps {
				c.opt.Log.Warn("lb refused a setting", "problem", p)
			}
			lastProblems = j
		}
		c.update(func(s *ControllerStatus) { s.Problems = ps })

		desired = KeepPools(running, desired)
		plan := Diff(running, desired)
		if forceReload && !plan.Reload {
			plan = Plan{Reload: true, Reasons: []string{"running config unknown or out of step"}}
		}
		if plan.Empty() {
			held, heldSince = State{}, time.Time{}
			c.update(func(s *ControllerStatus) { s.Holding, s.PendingReload = nil, false })
			continue
		}
		if shrinks := SuspiciousShrinks(running, desired); len(shrinks) > 0 {
			if heldSince.IsZero() || !held.Equal(desired) {
				held, heldSince = desired.Clone(), time.Now()
				c.opt.Log.Warn("holding a suspicious shrink until it is confirmed", "shrinks", strings.Join(shrinks, "; "), "confirm_after", c.opt.Confirm)
			}
			if wait := c.opt.Confirm - time.Since(heldSince); wait > 0 {
				c.update(func(s *ControllerStatus) { s.Holding = shrinks })
				later(wait)
				continue
			}
			c.opt.Log.Info("suspicious shrink confirmed", "shrinks", strings.Join(shrinks, "; "))
		}
		held, heldSince = State{}, time.Time{}
		c.update(func(s *ControllerStatus) { s.Holding = nil })

		begin := time.Now()
		if plan.Reload {
			if wait := reloadGap - time.Since(lastReload); wait > 0 {
				c.update(func(s *ControllerStatus) { s.PendingReload = true })
				later(wait)
				continue
			}
			lastReload = time.Now()
			if err := c.reload(ctx, desired); err != nil {
				c.update(func(s *ControllerStatus) {
					s.FailedReloads++
					if errors.Is(err, ErrInvalidConfig) {
						s.ValidationFails++
					}
				})
				c.fail("reload", err)
				reloadGap = min(2*reloadGap, max(time.Minute, c.opt.MinReloadInterval))
				// The structure stays at the last good config; server
				// changes of the backends it has still go through.
				if part := KeepStructure(running, desired); !forceReload {
					if p := Diff(running, part); !p.Reload && len(p.Ops) > 0 {
						after := After(running, part, p)
						if err := c.proxy.Apply(ctx, p.Ops); err == nil {
							running = after
							c.queuePersist(running)
							c.update(func(s *ControllerStatus) {
								s.RuntimeOps += int64(len(p.Ops))
								s.Running = running.Clone()
							})
							c.opt.Log.Info("haproxy servers changed while the reload is refused", "ops", len(p.Ops))
						} else {
							c.fail("runtime api", err)
							forceReload = true
						}
					}
				}
				later(reloadGap)
				continue
			}
			reloadGap = c.opt.MinReloadInterval
			running, forceReload = desired.Clone(), false
			d := time.Since(begin)
			c.update(func(s *ControllerStatus) {
				s.Reloads++
				s.PendingReload = false
				s.LastApply, s.LastApplyDur, s.Running = time.Now(), d, running.Clone()
			})
			c.opt.Log.Info("haproxy reloaded", "reasons", strings.Join(plan.Reasons, "; "), "took", d.Round(time.Millisecond))
			continue
		}
		after := After(running, desired, plan)
		if err := c.proxy.Apply(ctx, plan.Ops); err != nil {
			c.update(func(s *ControllerStatus) { s.ApplyErrors++ })
			c.fail("runtime api", err)
			// What runs is now uncertain: the next pass reloads the
			// desired config.
			forceReload = true
			later(0)
			continue
		}
		running = after
		c.queuePersist(running)
		d := time.Since(begin)
		c.update(func(s *ControllerStatus) {
			s.RuntimeOps += int64(len(plan.Ops))
			s.LastApply, s.LastApplyDur, s.Running = time.Now(), d, running.Clone()
		})
		ops := make([]string, len(plan.Ops))
		for i, o := range plan.Ops {
			ops[i] = o.String()
		}
		c.opt.Log.Info("haproxy servers changed", "ops", strings.Join(ops, "; "), "took", d.Round(time.Millisecond))
	}
}

// unbindable probes the ports of desired's frontends that running does not
// listen on, and returns those HAProxy could not bind.
func (c *Controller) unbindable(running, desired State) map[int]string {
	if c.opt.PortFree == nil {
		return nil
	}
	held := map[int]bool{}
	for _, f := range running.Frontends {
		held[f.Port] = true
	}
	var bad map[int]string
	for _, f := range desired.Frontends {
		if held[f.Port] {
			continue
		}
		if err := c.opt.PortFree(f.Port); err != nil {
			if bad == nil {
				bad = map[int]string{}
			}
			bad[f.Port] = err.Error()
		}
	}
	return bad
}

func (c *Controller) fail(phase string, err error) {
	c.opt.Log.Error("lb "+phase+" failed", "err", err)
	c.update(func(s *ControllerStatus) {
		s.LastError, s.LastErrorAt = phase+": "+err.Error(), time.Now()
	})
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
