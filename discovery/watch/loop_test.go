package watch

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// stepFetch is a Fetch the test drives one call at a time: every call
// reports the index it was given on calls, then returns the next reply.
type stepFetch struct {
	calls   chan uint64
	replies chan reply
}

type reply struct {
	val   []string
	index uint64
	err   error
}

func newStepFetch() *stepFetch {
	return &stepFetch{calls: make(chan uint64), replies: make(chan reply)}
}

func (s *stepFetch) fetch(ctx context.Context, index uint64) ([]string, uint64, error) {
	select {
	case s.calls <- index:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	select {
	case r := <-s.replies:
		return r.val, r.index, r.err
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// watchRun is one running Watch.
type watchRun struct {
	t      *testing.T
	f      *stepFetch
	out    *Latest[[]string]
	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func startWatch(t *testing.T) *watchRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchRun{t: t, f: newStepFetch(), kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	w.out = NewLatest[[]string](w.kick)
	go func() {
		defer close(w.done)
		Watch(ctx, slog.New(slog.DiscardHandler), "test", w.f.fetch, w.out, time.Millisecond)
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *watchRun) stop() {
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		w.t.Fatalf("Watch did not return after its context ended")
	}
}

// call waits for the next fetch and returns the index it was passed.
func (w *watchRun) call() uint64 {
	w.t.Helper()
	select {
	case i := <-w.f.calls:
		return i
	case <-time.After(5 * time.Second):
		w.t.Fatalf("no fetch within 5s")
		return 0
	}
}

func (w *watchRun) reply(r reply) {
	w.t.Helper()
	select {
	case w.f.replies <- r:
	case <-time.After(5 * time.Second):
		w.t.Fatalf("fetch did not take its reply within 5s")
	}
}

// kicked reports whether a kick is pending, and consumes it.
func (w *watchRun) kicked() bool {
	select {
	case <-w.kick:
		return true
	default:
		return false
	}
}

func TestWatchIndexes(t *testing.T) {
	tests := []struct {
		name     string
		returned []uint64 // index returned by each successful fetch
		want     []uint64 // index passed to each fetch, one more than returned
	}{
		{"first query blocks on nothing", nil, []uint64{0}},
		{"index passed back", []uint64{5, 9, 9, 12}, []uint64{0, 5, 9, 9, 12}},
		{"index going backwards resets to 0", []uint64{10, 4, 6}, []uint64{0, 10, 0, 6}},
		{"index 0 from the server becomes 1", []uint64{0, 3}, []uint64{0, 1, 3}},
		{"index 0 after a higher one is a reset", []uint64{7, 0, 0}, []uint64{0, 7, 0, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := startWatch(t)
			var got []uint64
			got = append(got, w.call())
			for i, idx := range tc.returned {
				w.reply(reply{val: []string{"v", string(rune('a' + i))}, index: idx})
				got = append(got, w.call())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("indexes passed to fetch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWatchKicks(t *testing.T) {
	type step struct {
		val      []string
		wantKick bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name:  "first result kicks, even when empty",
			steps: []step{{nil, true}},
		},
		{
			name: "equal results do not kick",
			steps: []step{
				{[]string{"a"}, true},
				{[]string{"a"}, false},
				{[]string{"a"}, false},
			},
		},
		{
			name: "changed results kick",
			steps: []step{
				{[]string{"a"}, true},
				{[]string{"a", "b"}, true},
				{[]string{"b"}, true},
				{[]string{"b"}, false},
				{[]string{"a"}, true},
			},
		},
		{
			name: "nil then empty is a change (deep equality)",
			steps: []step{
				{nil, true},
				{[]string{}, true},
				{[]string{}, false},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := startWatch(t)
			if _, ok, _ := w.out.Get(); ok {
				t.Fatalf("Get reports a value before any fetch")
			}
			w.call()
			for i, s := range tc.steps {
				before := time.Now()
				w.reply(reply{val: s.val, index: uint64(i + 1)})
				w.call() // the loop went round: the reply has been stored
				if got := w.kicked(); got != s.wantKick {
					t.Errorf("step %d (%q): kicked = %v, want %v", i, s.val, got, s.wantKick)
				}
				v, ok, at := w.out.Get()
				if !ok {
					t.Errorf("step %d: Get reports no value", i)
				}
				if diff := cmp.Diff(s.val, v); diff != "" {
					t.Errorf("step %d: value (-want +got):\n%s", i, diff)
				}
				if at.Before(before) {
					t.Errorf("step %d: contact time %v not updated (before %v)", i, at, before)
				}
			}
		})
	}
}

func TestWatchKickDoesNotBlock(t *testing.T) {
	// Nobody reads kick: changes coalesce into the one pending kick and
	// Watch keeps going.
	w := startWatch(t)
	w.call()
	for i := range 5 {
		w.reply(reply{val: []string{string(rune('a' + i))}, index: uint64(i + 1)})
		w.call()
	}
	if !w.kicked() {
		t.Errorf("no kick pending after changes")
	}
	if w.kicked() {
		t.Errorf("more than one kick pending")
	}
	if v, _, _ := w.out.Get(); len(v) != 1 || v[0] != "e" {
		t.Errorf("Get = %q, want the newest value [e]", v)
	}
}

func TestWatchErrors(t *testing.T) {
	w := startWatch(t)
	boom := errors.New("consul unreachable")
	boom2 := errors.New("consul still unreachable")

	if i := w.call(); i != 0 {
		t.Fatalf("first index = %d, want 0", i)
	}
	w.reply(reply{err: boom})
	if i := w.call(); i != 0 {
		t.Errorf("index after a failed first query = %d, want 0", i)
	}
	if err := w.out.Err(); !errors.Is(err, boom) {
		t.Errorf("Err() = %v, want %v", err, boom)
	}
	if _, ok, _ := w.out.Get(); ok {
		t.Errorf("Get reports a value after only a failure")
	}
	if w.kicked() {
		t.Errorf("a failure kicked")
	}

	w.reply(reply{val: []string{"a"}, index: 7})
	if i := w.call(); i != 7 {
		t.Errorf("index after success = %d, want 7", i)
	}
	if err := w.out.Err(); err != nil {
		t.Errorf("Err() after success = %v, want nil", err)
	}
	if !w.kicked() {
		t.Errorf("first success did not kick")
	}

	w.reply(reply{err: boom2, index: 99})
	if i := w.call(); i != 0 {
		t.Errorf("index after a failure = %d, want 0 (a read that answers at once, so that recovery is seen without waiting for a change)", i)
	}
	if err := w.out.Err(); !errors.Is(err, boom2) {
		t.Errorf("Err() = %v, want %v", err, boom2)
	}
	if v, ok, _ := w.out.Get(); !ok || len(v) != 1 || v[0] != "a" {
		t.Errorf("Get after a failure = %q, %v; want the last good value [a]", v, ok)
	}
	if w.kicked() {
		t.Errorf("a failure kicked")
	}

	w.reply(reply{val: []string{"a"}, index: 8})
	if i := w.call(); i != 8 {
		t.Errorf("index after success = %d, want 8", i)
	}
	if err := w.out.Err(); err != nil {
		t.Errorf("Err() after success = %v, want nil", err)
	}
	if w.kicked() {
		t.Errorf("an unchanged value after a failure kicked")
	}
}

func TestWatchStopsWithContext(t *testing.T) {
	tests := []struct {
		name  string
		setup func(w *watchRun)
	}{
		{"while a fetch blocks", func(w *watchRun) { w.call() }},
		{"while waiting between queries", func(w *watchRun) {
			w.call()
			w.reply(reply{val: []string{"a"}, index: 1})
		}},
		{"while backing off", func(w *watchRun) {
			w.call()
			w.reply(reply{err: errors.New("down")})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := startWatch(t)
			tc.setup(w)
			w.stop()
		})
	}
}

func TestLatestWithoutKick(t *testing.T) {
	l := NewLatest[int](nil)
	if v, ok, at := l.Get(); v != 0 || ok || !at.IsZero() {
		t.Errorf("new Latest Get = %v, %v, %v; want zero", v, ok, at)
	}
	l.set(3)
	if v, ok, _ := l.Get(); v != 3 || !ok {
		t.Errorf("Get = %v, %v; want 3, true", v, ok)
	}
	l.fail(errors.New("x"))
	if l.Err() == nil {
		t.Errorf("Err() = nil after fail")
	}
	l.set(3)
	if l.Err() != nil {
		t.Errorf("Err() = %v after set", l.Err())
	}
}
