package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/internal/backoff"
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

// Proxy is the HAProxy the controller drives (lb/haproxy behind
// cmd/drover's proxyShim in production, a fake in unit tests).
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
// reconciles until ctx ends. Each pass reads the source, asks step what
// the read means (see loop for the states) and does it; the decisions are
// step's, reloaded's and applied's, all pure.
func (c *Controller) Run(ctx context.Context) error {
	running, known := c.proxy.Running()
	if !c.start(ctx, running) {
		return nil
	}
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
	s := loop{Running: running, ForceReload: !known, ReloadGap: c.opt.MinReloadInterval}
	var lastProblems string
	check := time.NewTicker(c.opt.Check)
	defer check.Stop()
	wake := time.NewTimer(0)
	defer wake.Stop()
	later := func(d time.Duration) {
		if d > 0 {
			wake.Reset(max(d, minWake))
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.src.Changed():
		case <-wake.C:
		case <-check.C:
			s = c.checkProcess(ctx, s)
		}
		var in read
		snap, err := c.src.Snapshot()
		if in.Err = err; err == nil {
			in.Desired, lastProblems, in.Err = c.safeDesired(s.Running, snap, lastProblems)
		}
		var act action
		s, act = step(s, in, time.Now(), c.opt)
		s = c.do(ctx, s, act, later)
		c.update(func(st *ControllerStatus) {
			st.Stale, st.StaleSince, st.StaleReason = s.Stale, s.StaleSince, s.StaleReason
			st.Holding, st.PendingReload = s.Holding, s.PendingReload
		})
	}
}

// start starts (or attaches to) HAProxy, retrying with backoff (250 ms
// doubling to a minute) until it works; false when ctx ended first.
// HAProxy that cannot start (a bad binary, a port taken, a full disk) is
// the lb's problem only: it is reported, and the rest of the agent (mesh,
// discovery) keeps running.
func (c *Controller) start(ctx context.Context, running State) bool {
	err := backoff.Retry(ctx, backoff.New(250*time.Millisecond, time.Minute),
		func(ctx context.Context) error { return c.proxy.Start(ctx, running) },
		func(err error, wait time.Duration) time.Duration {
			c.fail("start", fmt.Errorf("starting haproxy (retrying in %s): %w", wait.Round(time.Millisecond), err))
			return wait
		}, nil)
	if err != nil {
		return false
	}
	c.update(func(s *ControllerStatus) { s.LastError = "" })
	c.update(func(s *ControllerStatus) { s.Running = running.Clone() })
	return true
}

// checkProcess makes sure HAProxy runs; one started again gets the
// desired state reloaded into it (restarted).
func (c *Controller) checkProcess(ctx context.Context, s loop) loop {
	again, err := c.proxy.Ensure(ctx)
	if err != nil {
		c.fail("haproxy process", err)
	}
	if !again {
		return s
	}
	c.update(func(s *ControllerStatus) { s.Restarts++ })
	c.opt.Log.Warn("haproxy was started again; reloading the desired state into it")
	return restarted(s)
}

// desired is the desired state for snap, leaving out ports HAProxy could
// not bind; the settings it refused go into status, and into the log when
// they differ from last (the joined problems of the previous read, which
// it returns updated).
func (c *Controller) desired(running State, snap map[string][]discovery.Instance, last string) (State, string) {
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
	if j := strings.Join(ps, "\n"); j != last {
		for _, p := range ps {
			c.opt.Log.Warn("lb refused a setting", "problem", p)
		}
		last = j
	}
	c.update(func(s *ControllerStatus) { s.Problems = ps })
	return desired, last
}

// safeDesired is desired with a panic (a defect in the pure core) turned
// into an error: the loop then keeps HAProxy as it runs, as for an
// unreadable Consul, and the rest of the agent (mesh, discovery) lives on.
func (c *Controller) safeDesired(running State, snap map[string][]discovery.Instance, last string) (st State, next string, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.opt.Log.Error("computing the lb's desired state panicked; haproxy kept as it is", "panic", r, "stack", string(debug.Stack()))
			st, next, err = State{}, last, fmt.Errorf("computing the desired state panicked (a drover defect; haproxy kept as it is): %v", r)
		}
	}()
	st, next = c.desired(running, snap, last)
	return st, next, nil
}

// do carries out a step's action and its follow-ups (the runtime
// operations after a refused reload), records the outcome in status and
// returns the loop state the outcomes lead to.
func (c *Controller) do(ctx context.Context, s loop, a action, later func(time.Duration)) loop {
	c.log(a.Notes)
	later(a.Wake)
	begin := time.Now()
	switch a.Kind {
	case doReload:
		err := c.reload(ctx, a.Next)
		var next action
		s, next = reloaded(s, a, err, c.opt)
		if err != nil {
			c.update(func(st *ControllerStatus) {
				st.FailedReloads++
				if errors.Is(err, ErrInvalidConfig) {
					st.ValidationFails++
				}
			})
			c.fail("reload", err)
			if next.Kind == doApply {
				s = c.apply(ctx, s, next, begin, later)
			}
			later(next.Wake)
			return s
		}
		d := time.Since(begin)
		c.update(func(st *ControllerStatus) {
			st.Reloads++
			st.LastApply, st.LastApplyDur, st.Running = time.Now(), d, s.Running.Clone()
		})
		c.opt.Log.Info("haproxy reloaded", "reasons", strings.Join(a.Reasons, "; "), "took", d.Round(time.Millisecond))
	case doApply:
		s = c.apply(ctx, s, a, begin, later)
	}
	return s
}

// apply runs a's runtime operations and queues the files' rewrite.
func (c *Controller) apply(ctx context.Context, s loop, a action, begin time.Time, later func(time.Duration)) loop {
	err := c.proxy.Apply(ctx, a.Ops)
	var next action
	s, next = applied(s, a, err)
	later(next.Wake)
	switch {
	case err != nil && a.Partial:
		c.fail("runtime api", err)
	case err != nil:
		c.update(func(st *ControllerStatus) { st.ApplyErrors++ })
		c.fail("runtime api", err)
	case a.Partial:
		c.queuePersist(s.Running)
		c.update(func(st *ControllerStatus) {
			st.RuntimeOps += int64(len(a.Ops))
			st.Running = s.Running.Clone()
		})
		c.opt.Log.Info("haproxy servers changed while the reload is refused", "ops", len(a.Ops))
	default:
		c.queuePersist(s.Running)
		d := time.Since(begin)
		c.update(func(st *ControllerStatus) {
			st.RuntimeOps += int64(len(a.Ops))
			st.LastApply, st.LastApplyDur, st.Running = time.Now(), d, s.Running.Clone()
		})
		ops := make([]string, len(a.Ops))
		for i, o := range a.Ops {
			ops[i] = o.String()
		}
		c.opt.Log.Info("haproxy servers changed", "ops", strings.Join(ops, "; "), "took", d.Round(time.Millisecond))
	}
	return s
}

func (c *Controller) log(notes []note) {
	for _, n := range notes {
		c.opt.Log.Log(context.Background(), n.Level, n.Msg, n.Args...)
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
