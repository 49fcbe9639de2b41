package lb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-net/drover/discovery"

	"github.com/drover-net/drover/discovery/contract"
)

type fakeSource struct {
	mu   sync.Mutex
	snap map[string][]discovery.Instance
	err  error
	kick chan struct{}
}

func newFakeSource() *fakeSource { return &fakeSource{kick: make(chan struct{}, 1)} }

func (f *fakeSource) Snapshot() (map[string][]discovery.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := map[string][]discovery.Instance{}
	for k, v := range f.snap {
		out[k] = append([]discovery.Instance(nil), v...)
	}
	return out, nil
}

func (f *fakeSource) Changed() <-chan struct{} { return f.kick }

func (f *fakeSource) set(snap map[string][]discovery.Instance, err error) {
	f.mu.Lock()
	f.snap, f.err = snap, err
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

type fakeProxy struct {
	mu       sync.Mutex
	running  State
	known    bool
	reloads  int
	ops      []Op
	applyErr error
	started  bool
	// reloadErr makes every reload fail (HAProxy refusing the config).
	reloadErr error
	failed    int
	// startErrs fail the first Start calls, one each.
	startErrs []error
	starts    int
	// write is how long Persist takes (validation and file rewrite at
	// 10,000 servers take about 0.6 s); persists counts its calls.
	write time.Duration
	// hold, when set, keeps every Persist in progress until it is closed.
	hold     chan struct{}
	writing  int
	overlap  bool
	persists int
	// restarted makes the next Ensure report a restart.
	restarted bool
}

func (p *fakeProxy) Running() (State, bool) { return p.running, p.known }
func (p *fakeProxy) Start(context.Context, State) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts++
	if len(p.startErrs) > 0 {
		err := p.startErrs[0]
		p.startErrs = p.startErrs[1:]
		return err
	}
	p.started = true
	return nil
}
func (p *fakeProxy) Ensure(context.Context) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.restarted
	p.restarted = false
	return r, nil
}
func (p *fakeProxy) Apply(_ context.Context, ops []Op) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.applyErr != nil {
		err := p.applyErr
		p.applyErr = nil
		return err
	}
	p.ops = append(p.ops, ops...)
	return nil
}

// Persist writes "the files": slowly when write is set, and never twice at
// once (the controller must not).
func (p *fakeProxy) Persist(_ context.Context, st State) error {
	p.mu.Lock()
	write, hold := p.write, p.hold
	p.writing++
	if p.writing > 1 {
		p.overlap = true
	}
	p.mu.Unlock()
	time.Sleep(write)
	if hold != nil {
		<-hold
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writing--
	p.running, p.persists = st, p.persists+1
	return nil
}

// file returns the state the files hold and how many writes there were.
func (p *fakeProxy) file() (State, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running.Clone(), p.persists
}
func (p *fakeProxy) Reload(_ context.Context, next State) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.writing > 0 {
		p.overlap = true
	}
	if p.reloadErr != nil {
		p.failed++
		return p.reloadErr
	}
	p.reloads++
	p.running = next
	return nil
}

func (p *fakeProxy) counts() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reloads, len(p.ops)
}

func webInstances(n int) map[string][]discovery.Instance {
	var ins []discovery.Instance
	for i := 1; i <= n; i++ {
		ins = append(ins, inst(fmt.Sprintf("w%d", i), fmt.Sprintf("10.42.0.%d", i), 8080, contract.KeyLBMode, "http"))
	}
	return map[string][]discovery.Instance{"web": ins}
}

func startController(t *testing.T, src *fakeSource, px *fakeProxy, opt ControllerOptions) *Controller {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := NewController(opt, src, px)
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestControllerServerChangesUseRuntimeOps(t *testing.T) {
	src, px := newFakeSource(), &fakeProxy{}
	src.set(webInstances(2), nil)
	c := startController(t, src, px, ControllerOptions{MinReloadInterval: 10 * time.Millisecond})
	eventually(t, "first reload (running state unknown)", func() bool { r, _ := px.counts(); return r == 1 })
	src.set(webInstances(3), nil)
	eventually(t, "runtime ops for the third server", func() bool { _, o := px.counts(); return o > 0 })
	src.set(webInstances(2), nil)
	eventually(t, "drain of the third server", func() bool { _, o := px.counts(); return o >= 3 })
	if r, _ := px.counts(); r != 1 {
		t.Errorf("server-only changes reloaded: %d reloads, want 1 (the first)", r)
	}
	if s := c.Status(); s.RuntimeOps == 0 || s.Reloads != 1 {
		t.Errorf("status runtime ops %d reloads %d", s.RuntimeOps, s.Reloads)
	}
}

func TestControllerKnownRunningStateDoesNotReload(t *testing.T) {
	want, _ := Desired(Options{}, webInstances(2))
	src, px := newFakeSource(), &fakeProxy{running: want, known: true}
	src.set(webInstances(2), nil)
	startController(t, src, px, ControllerOptions{})
	time.Sleep(100 * time.Millisecond)
	if r, o := px.counts(); r != 0 || o != 0 {
		t.Errorf("restart with nothing changed: %d reloads, %d ops; want none", r, o)
	}
}

func TestControllerFailsStatic(t *testing.T) {
	src, px := newFakeSource(), &fakeProxy{}
	src.set(webInstances(2), nil)
	c := startController(t, src, px, ControllerOptions{MinReloadInterval: 10 * time.Millisecond})
	eventually(t, "first reload", func() bool { r, _ := px.counts(); return r == 1 })
	src.set(nil, errors.New("No cluster leader"))
	eventually(t, "stale status", func() bool { return c.Status().Stale })
	time.Sleep(50 * time.Millisecond)
	if r, o := px.counts(); r != 1 || o != 0 {
		t.Errorf("changed haproxy while stale: %d reloads, %d ops", r, o)
	}
	if s := c.Status(); s.StaleSince.IsZero() || s.StaleReason == "" {
		t.Errorf("stale status without since/reason: %+v", s)
	}
	src.set(webInstances(2), nil)
	eventually(t, "fresh again", func() bool { return !c.Status().Stale })
	if r, o := px.counts(); r != 1 || o != 0 {
		t.Errorf("recovery with nothing changed: %d reloads, %d ops", r, o)
	}
}

func TestControllerConfirmsSuspiciousShrink(t *testing.T) {
	src, px := newFakeSource(), &fakeProxy{}
	src.set(webInstances(4), nil)
	confirm := 200 * time.Millisecond
	c := startController(t, src, px, ControllerOptions{MinReloadInterval: 10 * time.Millisecond, Confirm: confirm})
	eventually(t, "first reload", func() bool { r, _ := px.counts(); return r == 1 })
	// One read with all servers gone: held.
	src.set(map[string][]discovery.Instance{"web": nil}, nil)
	eventually(t, "holding", func() bool { return len(c.Status().Holding) == 1 })
	if _, o := px.counts(); o != 0 {
		t.Fatalf("applied an unconfirmed shrink")
	}
	// The next read brings them back: nothing was ever dropped.
	src.set(webInstances(4), nil)
	eventually(t, "hold released", func() bool { return len(c.Status().Holding) == 0 })
	if r, o := px.counts(); r != 1 || o != 0 {
		t.Fatalf("after a transient shrink: %d reloads %d ops, want nothing", r, o)
	}
	// A shrink that persists is applied after Confirm.
	begin := time.Now()
	src.set(webInstances(1), nil)
	eventually(t, "confirmed shrink applied", func() bool { _, o := px.counts(); return o == 3 })
	if d := time.Since(begin); d < confirm {
		t.Errorf("shrink applied after %s, before the %s confirmation", d, confirm)
	}
}

func TestControllerCoalescesReloads(t *testing.T) {
	src, px := newFakeSource(), &fakeProxy{}
	src.set(webInstances(1), nil)
	interval := 300 * time.Millisecond
	startController(t, src, px, ControllerOptions{MinReloadInterval: interval})
	eventually(t, "first reload", func() bool { r, _ := px.counts(); return r == 1 })
	// Three structural changes in a row: new services, each a new backend.
	for i, name := range []string{"a", "b", "c"} {
		snap := webInstances(1)
		for _, n := range []string{"a", "b", "c"}[:i+1] {
			snap[n] = []discovery.Instance{inst(n+"1", "10.42.1.1", 9000, contract.KeyLBMode, "http", contract.KeyLBHost, n+".example")}
		}
		src.set(snap, nil)
		_ = name
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, "coalesced reload", func() bool { r, _ := px.counts(); return r == 2 })
	time.Sleep(interval + 100*time.Millisecond)
	if r, _ := px.counts(); r != 2 {
		t.Errorf("three changes within the interval gave %d reloads after the first, want 1", r-1)
	}
	px.mu.Lock()
	n := len(px.running.Backends)
	px.mu.Unlock()
	if n != 4 {
		t.Errorf("running has %d backends, want 4 (web, a, b, c)", n)
	}
}

func TestControllerApplyFailureReloads(t *testing.T) {
	src, px := newFakeSource(), &fakeProxy{}
	src.set(webInstances(1), nil)
	startController(t, src, px, ControllerOptions{MinReloadInterval: 10 * time.Millisecond})
	eventually(t, "first reload", func() bool { r, _ := px.counts(); return r == 1 })
	px.mu.Lock()
	px.applyErr = errors.New("runtime socket gone")
	px.mu.Unlock()
	src.set(webInstances(2), nil)
	eventually(t, "reload after a failed runtime apply", func() bool { r, _ := px.counts(); return r == 2 })
}

func TestSuspiciousShrinks(t *testing.T) {
	st := func(n int) State { s, _ := Desired(Options{}, webInstances(n)); return s }
	for _, tc := range []struct {
		from, to int
		want     bool
	}{
		{1, 0, true}, {2, 0, true}, {2, 1, false}, {3, 1, true}, {4, 2, false}, {5, 2, true}, {5, 4, false}, {0, 0, false}, {1, 3, false},
	} {
		got := len(SuspiciousShrinks(st(tc.from), st(tc.to))) > 0
		if tc.from == 0 {
			got = len(SuspiciousShrinks(State{}, st(tc.to))) > 0
		}
		if got != tc.want {
			t.Errorf("%d → %d servers: suspicious %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestControllerServerChangesContinueWhileReloadFails(t *testing.T) {
	src, px := newFakeSource(), &fakeProxy{}
	src.set(webInstances(2), nil)
	c := startController(t, src, px, ControllerOptions{MinReloadInterval: 20 * time.Millisecond})
	eventually(t, "first reload", func() bool { r, _ := px.counts(); return r == 1 })
	px.mu.Lock()
	px.reloadErr = errors.New("cannot bind :8500")
	px.mu.Unlock()
	// A new service whose frontend HAProxy refuses, and a third web server.
	snap := webInstances(3)
	snap["bad"] = []discovery.Instance{inst("b1", "10.42.1.1", 9000, contract.KeyLBMode, "tcp", contract.KeyLBPort, "8500")}
	src.set(snap, nil)
	eventually(t, "the web server added by runtime ops despite the failing reload", func() bool { _, o := px.counts(); return o > 0 })
	// The files (px.running) follow the runtime ops in the background.
	eventually(t, "the files written after the runtime ops", func() bool {
		px.mu.Lock()
		defer px.mu.Unlock()
		return len(px.running.Backends) > 0 && enabledCount(px.running.Backends[0]) == 3
	})
	px.mu.Lock()
	failed, running := px.failed, px.running.Clone()
	px.mu.Unlock()
	if failed == 0 {
		t.Fatal("no failed reload")
	}
	if len(running.Frontends) != 1 || enabledCount(running.Backends[0]) != 3 {
		t.Errorf("running %+v: want the old frontend only and 3 web servers", running)
	}
	if s := c.Status(); s.FailedReloads == 0 || s.LastError == "" {
		t.Errorf("status does not show the failed reload: %+v", s)
	}
}

func TestKeepPools(t *testing.T) {
	st := func(n int) State { s, _ := Desired(Options{SlotsMin: 4}, webInstances(n)); return s }
	for _, tc := range []struct {
		running, desired, wantSlots int
	}{
		{9, 8, 16}, // grew to 16 at 9; back to 8 keeps 16: no reload
		{9, 5, 16}, // 5 > 16/4
		{9, 4, 4},  // 4 servers fill a quarter: the pool shrinks (one reload)
		{3, 5, 8},  // growing is Desired's business
		{5, 5, 8},  // unchanged
	} {
		got := KeepPools(st(tc.running), st(tc.desired))
		if s := got.Backends[0].Slots; s != tc.wantSlots {
			t.Errorf("running %d servers, desired %d: slots %d, want %d", tc.running, tc.desired, s, tc.wantSlots)
		}
	}
	// Scaling 9 → 8 after the pool grew is runtime ops only.
	run := st(9)
	want := KeepPools(run, st(8))
	if p := Diff(run, want); p.Reload {
		t.Errorf("9 → 8 servers reloads: %v", p.Reasons)
	}
}

// HAProxy failing to start is reported and retried; Run does not return
// (it used to, and its error stopped the whole agent: issue 12, defect 8).
func TestStartFailureIsRetried(t *testing.T) {
	src := newFakeSource()
	src.set(webInstances(1), nil)
	px := &fakeProxy{startErrs: []error{errors.New("cannot bind socket [0.0.0.0:80]"), errors.New("cannot bind socket [0.0.0.0:80]")}}
	c := startController(t, src, px, ControllerOptions{})
	eventually(t, "the failure in status", func() bool { return strings.Contains(c.Status().LastError, "cannot bind socket") })
	eventually(t, "a retried start", func() bool {
		px.mu.Lock()
		defer px.mu.Unlock()
		return px.started && px.starts == 3
	})
	eventually(t, "the error cleared and servers applied", func() bool { return c.Status().LastError == "" && px.reloads+len(px.ops) > 0 })
}

// A new service's first read is awaited quietly: the view is not marked
// stale and nothing is warned (issue 12, defect 13); once the read arrives
// the service is applied.
func TestNewServiceFirstReadIsNotStale(t *testing.T) {
	src := newFakeSource()
	src.set(webInstances(1), nil)
	px := &fakeProxy{}
	c := startController(t, src, px, ControllerOptions{})
	eventually(t, "the first apply", func() bool { return !c.Status().LastApply.IsZero() })
	src.set(nil, fmt.Errorf("service api: %w", ErrNotRead))
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if st := c.Status(); st.Stale {
			t.Fatalf("a first read marked the view stale: %s", st.StaleReason)
		}
		time.Sleep(10 * time.Millisecond)
	}
	snap := webInstances(1)
	snap["api"] = []discovery.Instance{inst("a1", "10.42.0.9", 8080, contract.KeyLBMode, "http", contract.KeyLBHost, "api.example")}
	src.set(snap, nil)
	eventually(t, "api applied", func() bool {
		px.mu.Lock()
		defer px.mu.Unlock()
		return len(px.running.Backends) == 2
	})
}

// A slow file write after runtime operations delays neither the next
// runtime operation nor anything else in the loop, and the files catch up
// with the latest state, coalesced (issue 12 defect 19, issue 17 item 4).
func TestControllerRuntimeOpsDoNotWaitForTheFile(t *testing.T) {
	// The file write after w3's runtime ops is held in progress until the
	// changes after it reached the runtime: they must not wait for it (no
	// wall-clock bound, so a loaded machine cannot fail the test).
	hold := make(chan struct{})
	src, px := newFakeSource(), &fakeProxy{hold: hold}
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	defer release()
	src.set(webInstances(2), nil)
	c := startController(t, src, px, ControllerOptions{MinReloadInterval: 10 * time.Millisecond})
	eventually(t, "first reload", func() bool { r, _ := px.counts(); return r == 1 })
	src.set(webInstances(3), nil)
	eventually(t, "runtime ops for w3", func() bool { _, o := px.counts(); return o > 0 })
	eventually(t, "the file write for w3 in progress", func() bool {
		px.mu.Lock()
		defer px.mu.Unlock()
		return px.writing == 1
	})
	for n := 4; n <= 6; n++ {
		_, before := px.counts()
		src.set(webInstances(n), nil)
		eventually(t, fmt.Sprintf("runtime ops for w%d while the file write is held", n), func() bool { _, o := px.counts(); return o > before })
	}
	if !c.Status().PendingFile {
		t.Errorf("status does not show the files lagging while they are written")
	}
	release()
	eventually(t, "the files catch up with 6 servers", func() bool {
		st, _ := px.file()
		return st.Equal(c.Status().Running) && enabledCount(st.Backends[0]) == 6
	})
	if _, n := px.file(); n > 3 {
		t.Errorf("%d file writes for 4 quick changes; want them coalesced (≤ 3)", n)
	}
	eventually(t, "no file pending", func() bool { return !c.Status().PendingFile })
	if px.overlap {
		t.Error("a file write overlapped another or a reload")
	}
}

// After HAProxy was started again from files that may lag the runtime, the
// controller reloads the desired state into it.
func TestControllerReloadsAfterRestart(t *testing.T) {
	src, px := newFakeSource(), &fakeProxy{}
	src.set(webInstances(2), nil)
	c := startController(t, src, px, ControllerOptions{MinReloadInterval: 10 * time.Millisecond, Check: 20 * time.Millisecond})
	eventually(t, "first reload", func() bool { r, _ := px.counts(); return r == 1 })
	px.mu.Lock()
	px.restarted = true
	px.mu.Unlock()
	eventually(t, "a reload after the restart", func() bool { r, _ := px.counts(); return r == 2 })
	if s := c.Status(); s.Restarts != 1 {
		t.Errorf("status restarts %d, want 1", s.Restarts)
	}
}

// A service on a port another program holds is left out with a reason;
// the rest still reloads.
func TestControllerLeavesOutAPortItCannotBind(t *testing.T) {
	src, px := newFakeSource(), &fakeProxy{}
	snap := webInstances(2)
	snap["taken"] = []discovery.Instance{inst("t1", "10.42.1.9", 9000, contract.KeyLBMode, "tcp", contract.KeyLBPort, "8500")}
	src.set(snap, nil)
	c := startController(t, src, px, ControllerOptions{MinReloadInterval: 10 * time.Millisecond,
		PortFree: func(port int) error {
			if port == 8500 {
				return errors.New("address already in use")
			}
			return nil
		}})
	eventually(t, "a reload with web", func() bool { r, _ := px.counts(); return r == 1 })
	st, _ := px.file()
	for _, f := range st.Frontends {
		if f.Port == 8500 {
			t.Errorf("the unbindable port was rendered: %v", st.Frontends)
		}
	}
	found := false
	for _, p := range c.Status().Problems {
		found = found || strings.Contains(p, "port 8500 cannot be bound on this host (address already in use)")
	}
	if !found {
		t.Errorf("no reason for the unbindable port: %v", c.Status().Problems)
	}
}

// A reload refused by validation is told by its type, not its text.
func TestControllerCountsValidationFailuresByType(t *testing.T) {
	src, px := newFakeSource(), &fakeProxy{}
	src.set(webInstances(1), nil)
	c := startController(t, src, px, ControllerOptions{MinReloadInterval: 10 * time.Millisecond})
	eventually(t, "first reload", func() bool { r, _ := px.counts(); return r == 1 })
	px.mu.Lock()
	px.reloadErr = fmt.Errorf("haproxy says no: %w", ErrInvalidConfig)
	px.mu.Unlock()
	snap := webInstances(1)
	snap["api"] = []discovery.Instance{inst("a1", "10.42.0.9", 8080, contract.KeyLBMode, "http", contract.KeyLBHost, "api.example")}
	src.set(snap, nil)
	eventually(t, "a validation failure counted", func() bool { return c.Status().ValidationFails > 0 })
	px.mu.Lock()
	px.reloadErr = errors.New("validating is not in the type")
	px.mu.Unlock()
	before := c.Status()
	eventually(t, "another failed reload", func() bool { return c.Status().FailedReloads > before.FailedReloads+1 })
	if got := c.Status().ValidationFails; got > before.ValidationFails+1 {
		t.Errorf("a refusal without ErrInvalidConfig counted as a validation failure (%d → %d)", before.ValidationFails, got)
	}
}
