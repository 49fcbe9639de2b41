package lb

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/contract"
)

// t0 is "now" in the step tables.
var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

var stepOpt = ControllerOptions{MinReloadInterval: 2 * time.Second, Confirm: 3 * time.Second}

// webN is Desired for n web servers; withAPI adds a second service
// (a structural change: a new backend and route).
func webN(n int) State { s, _ := Desired(Options{}, webInstances(n)); return s }

func withAPI(n int) State {
	snap := webInstances(n)
	snap["api"] = []discovery.Instance{inst("a1", "10.42.1.1", 9000, contract.KeyLBMode, "http", contract.KeyLBHost, "api.example")}
	s, _ := Desired(Options{}, snap)
	return s
}

// describe writes what a step test looks at as one line of text: the
// loop's state (times relative to t0) and the action.
func describe(s loop, a action) string {
	rel := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Sub(t0).String()
	}
	var run []string
	for _, b := range s.Running.Backends {
		run = append(run, fmt.Sprintf("%s:%d", b.Name, enabledCount(b)))
	}
	out := fmt.Sprintf("running=%s stale=%v since=%s reason=%q notread=%s holding=%d held=%s pending=%v force=%v applied=%v last=%s gap=%s",
		strings.Join(run, ","), s.Stale, rel(s.StaleSince), s.StaleReason, rel(s.NotReadSince), len(s.Holding), rel(s.HeldSince),
		s.PendingReload, s.ForceReload, s.Applied, rel(s.LastReload), s.ReloadGap)
	switch a.Kind {
	case doNothing:
		out += " | nothing"
	case doReload:
		out += fmt.Sprintf(" | reload %d backends (%s)", len(a.Next.Backends), strings.Join(a.Reasons, "; "))
	case doApply:
		var ops []string
		for _, o := range a.Ops {
			ops = append(ops, o.Kind)
		}
		out += fmt.Sprintf(" | apply partial=%v %s frontends=%d", a.Partial, strings.Join(ops, ","), len(a.Next.Frontends))
	}
	if a.Wake > 0 {
		out += " wake=" + a.Wake.String()
	}
	return out
}

func TestStep(t *testing.T) {
	shrunk := KeepPools(webN(4), webN(1))
	for _, tc := range []struct {
		name string
		s    loop
		in   read
		want string
	}{
		{
			name: "fail-static: Consul unreadable changes nothing and flags stale",
			s:    loop{Running: webN(2), Applied: true, ReloadGap: 2 * time.Second},
			in:   read{Err: errors.New("No cluster leader"), Desired: webN(5)},
			want: `running=web:2 stale=true since=0s reason="No cluster leader" notread=- holding=0 held=- pending=false force=false applied=true last=- gap=2s | nothing`,
		},
		{
			name: "fail-static: still unreadable keeps the first since",
			s:    loop{Running: webN(2), Applied: true, Stale: true, StaleSince: t0.Add(-5 * time.Second), StaleReason: "old", ReloadGap: 2 * time.Second},
			in:   read{Err: errors.New("No cluster leader")},
			want: `running=web:2 stale=true since=-5s reason="No cluster leader" notread=- holding=0 held=- pending=false force=false applied=true last=- gap=2s | nothing`,
		},
		{
			name: "fail-static: trusted again with nothing changed does nothing",
			s:    loop{Running: webN(2), Applied: true, Stale: true, StaleSince: t0.Add(-5 * time.Second), StaleReason: "old", ReloadGap: 2 * time.Second},
			in:   read{Desired: webN(2)},
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=true last=- gap=2s | nothing`,
		},
		{
			name: "a new service's first read is awaited quietly",
			s:    loop{Running: webN(2), Applied: true, ReloadGap: 2 * time.Second},
			in:   read{Err: fmt.Errorf("service api: %w", ErrNotRead)},
			want: `running=web:2 stale=false since=- reason="" notread=0s holding=0 held=- pending=false force=false applied=true last=- gap=2s | nothing`,
		},
		{
			name: "a first read missing past the grace is stale",
			s:    loop{Running: webN(2), Applied: true, NotReadSince: t0.Add(-NotReadGrace), ReloadGap: 2 * time.Second},
			in:   read{Err: fmt.Errorf("service api: %w", ErrNotRead)},
			want: `running=web:2 stale=true since=0s reason="service api: not read yet" notread=-10s holding=0 held=- pending=false force=false applied=true last=- gap=2s | nothing`,
		},
		{
			name: "before anything was applied a missing first read is stale at once",
			s:    loop{Running: webN(2), ReloadGap: 2 * time.Second},
			in:   read{Err: fmt.Errorf("services: %w", ErrNotRead)},
			want: `running=web:2 stale=true since=0s reason="services: not read yet" notread=- holding=0 held=- pending=false force=false applied=false last=- gap=2s | nothing`,
		},
		{
			name: "shrink confirmation: all servers gone in one read is held",
			s:    loop{Running: webN(4), Applied: true, ReloadGap: 2 * time.Second},
			in:   read{Desired: webN(0)},
			want: `running=web:4 stale=false since=- reason="" notread=- holding=1 held=0s pending=false force=false applied=true last=- gap=2s | nothing wake=3s`,
		},
		{
			name: "shrink confirmation: the same read keeps waiting for Confirm",
			s:    loop{Running: webN(4), Applied: true, Held: shrunk, HeldSince: t0.Add(-time.Second), ReloadGap: 2 * time.Second},
			in:   read{Desired: webN(1)},
			want: `running=web:4 stale=false since=- reason="" notread=- holding=1 held=-1s pending=false force=false applied=true last=- gap=2s | nothing wake=2s`,
		},
		{
			name: "shrink confirmation: the same read after Confirm is applied",
			s:    loop{Running: webN(4), Applied: true, Held: shrunk, HeldSince: t0.Add(-3 * time.Second), Holding: []string{"x"}, ReloadGap: 2 * time.Second},
			in:   read{Desired: webN(1)},
			want: `running=web:4 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=true last=- gap=2s | apply partial=false drain-disable,drain-disable,drain-disable frontends=1`,
		},
		{
			name: "shrink confirmation: a different shrink starts the wait again",
			s:    loop{Running: webN(4), Applied: true, Held: shrunk, HeldSince: t0.Add(-2 * time.Second), ReloadGap: 2 * time.Second},
			in:   read{Desired: webN(0)},
			want: `running=web:4 stale=false since=- reason="" notread=- holding=1 held=0s pending=false force=false applied=true last=- gap=2s | nothing wake=3s`,
		},
		{
			name: "shrink confirmation: servers back releases the hold",
			s:    loop{Running: webN(4), Applied: true, Held: shrunk, HeldSince: t0.Add(-time.Second), Holding: []string{"x"}, ReloadGap: 2 * time.Second},
			in:   read{Desired: webN(4)},
			want: `running=web:4 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=true last=- gap=2s | nothing`,
		},
		{
			name: "coalescing: a structural change within the gap waits",
			s:    loop{Running: webN(2), Applied: true, LastReload: t0.Add(-500 * time.Millisecond), ReloadGap: 2 * time.Second},
			in:   read{Desired: withAPI(2)},
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=true force=false applied=true last=-500ms gap=2s | nothing wake=1.5s`,
		},
		{
			name: "coalescing: once the gap passed the latest desired state is reloaded",
			s:    loop{Running: webN(2), Applied: true, LastReload: t0.Add(-2 * time.Second), PendingReload: true, ReloadGap: 2 * time.Second},
			in:   read{Desired: withAPI(3)},
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=true force=false applied=true last=0s gap=2s | reload 2 backends (frontend http_80 changed; backend api added)`,
		},
		{
			name: "backoff: after a refused reload the doubled gap holds the next one",
			s:    loop{Running: webN(2), Applied: true, LastReload: t0.Add(-3 * time.Second), ReloadGap: 4 * time.Second},
			in:   read{Desired: withAPI(2)},
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=true force=false applied=true last=-3s gap=4s | nothing wake=1s`,
		},
		{
			name: "an unknown running config is reloaded even when nothing differs",
			s:    loop{Running: webN(2), ForceReload: true, ReloadGap: 2 * time.Second},
			in:   read{Desired: webN(2)},
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=true applied=false last=0s gap=2s | reload 1 backends (running config unknown or out of step)`,
		},
		{
			name: "a server change is runtime operations, no reload",
			s:    loop{Running: webN(2), Applied: true, LastReload: t0, ReloadGap: 2 * time.Second},
			in:   read{Desired: webN(3)},
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=true last=0s gap=2s | apply partial=false set-addr,enable frontends=1`,
		},
		{
			name: "an empty plan clears a pending reload",
			s:    loop{Running: webN(2), Applied: true, PendingReload: true, ReloadGap: 2 * time.Second},
			in:   read{Desired: webN(2)},
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=true last=- gap=2s | nothing`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, a := step(tc.s, tc.in, t0, stepOpt)
			if got := describe(s, a); got != tc.want {
				t.Errorf("step:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestReloaded(t *testing.T) {
	refused := errors.New("haproxy refused the new config")
	for _, tc := range []struct {
		name string
		s    loop
		next State
		err  error
		opt  ControllerOptions
		want string
	}{
		{
			name: "success: the gap is back to the minimum",
			s:    loop{Running: webN(2), LastReload: t0, PendingReload: true, ForceReload: true, ReloadGap: 8 * time.Second},
			next: withAPI(3), opt: stepOpt,
			want: `running=api:1,web:3 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=true last=0s gap=2s | nothing`,
		},
		{
			name: "refused: backoff doubles the gap; the last good structure keeps and server changes still go through",
			err:  refused,
			s:    loop{Running: webN(2), Applied: true, LastReload: t0, ReloadGap: 2 * time.Second},
			next: withAPI(3), opt: stepOpt,
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=true last=0s gap=4s | apply partial=true set-addr,enable frontends=1 wake=4s`,
		},
		{
			name: "refused: backoff is capped at a minute",
			err:  refused,
			s:    loop{Running: webN(2), Applied: true, LastReload: t0, ReloadGap: 40 * time.Second},
			next: withAPI(2), opt: stepOpt,
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=true last=0s gap=1m0s | nothing wake=1m0s`,
		},
		{
			name: "refused: a minimum interval over a minute is the cap",
			err:  refused,
			s:    loop{Running: webN(2), Applied: true, LastReload: t0, ReloadGap: 2 * time.Minute},
			next: withAPI(2), opt: ControllerOptions{MinReloadInterval: 2 * time.Minute},
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=true last=0s gap=2m0s | nothing wake=2m0s`,
		},
		{
			name: "refused while what runs is unknown: no runtime operations",
			err:  refused,
			s:    loop{Running: webN(2), ForceReload: true, LastReload: t0, ReloadGap: 2 * time.Second},
			next: withAPI(3), opt: stepOpt,
			want: `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=true applied=false last=0s gap=4s | nothing wake=4s`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, a := reloaded(tc.s, action{Kind: doReload, Next: tc.next}, tc.err, tc.opt)
			if got := describe(s, a); got != tc.want {
				t.Errorf("reloaded:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestApplied(t *testing.T) {
	gone := errors.New("runtime socket gone")
	base := loop{Running: webN(2), ReloadGap: 2 * time.Second}
	for _, tc := range []struct {
		name    string
		partial bool
		err     error
		want    string
	}{
		{"ok", false, nil, `running=web:3 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=true last=- gap=2s | nothing`},
		{"failed: the next pass reloads, soon", false, gone, `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=true applied=false last=- gap=2s | nothing wake=10ms`},
		{"partial ok: not an apply of the desired state", true, nil, `running=web:3 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=false applied=false last=- gap=2s | nothing`},
		{"partial failed: the refused reload's wait stands", true, gone, `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=true applied=false last=- gap=2s | nothing`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, a := applied(base, action{Kind: doApply, Next: webN(3), Partial: tc.partial}, tc.err)
			if got := describe(s, a); got != tc.want {
				t.Errorf("applied:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// HAProxy started again from its files: the next read reloads at once,
// whatever the gap, even with nothing changed.
func TestRestartedReloadsAtOnce(t *testing.T) {
	s := restarted(loop{Running: webN(2), Applied: true, LastReload: t0.Add(-time.Millisecond), ReloadGap: 2 * time.Second})
	s, a := step(s, read{Desired: webN(2)}, t0, stepOpt)
	want := `running=web:2 stale=false since=- reason="" notread=- holding=0 held=- pending=false force=true applied=true last=0s gap=2s | reload 1 backends (running config unknown or out of step)`
	if got := describe(s, a); got != want {
		t.Errorf("after a restart:\n got %s\nwant %s", got, want)
	}
}
