package confgen

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/watch"
	"github.com/drover-net/drover/internal/backoff"
	"github.com/drover-net/drover/internal/kick"
)

// KVWatches is the part of watch.Hub confgen reads.
type KVWatches interface {
	KV(prefix string) (*watch.Latest[map[string]discovery.KVPair], <-chan struct{})
}

// ResourceStatus is one resource's part of `drover status`.
type ResourceStatus struct {
	Resource   string    `json:"resource"`
	Dest       string    `json:"dest"`
	LastRender time.Time `json:"last_render"`
	LastChange time.Time `json:"last_change"`
	Renders    int       `json:"renders"`
	Changes    int       `json:"changes"`
	Reloads    int       `json:"reloads"`
	LastError  string    `json:"last_error,omitempty"`
}

// Watcher re-renders every resource when its keys change, with a debounce
// per resource: a change waits min_wait of quiet (default 50 ms), but never
// longer than max_wait (default 2 s) after the first change of a burst, so
// a burst gives one render and one reload. Errors keep the old file and are
// retried with backoff.
type Watcher struct {
	p         *Processor
	resources []Resource
	watches   KVWatches

	kicks map[string]chan struct{} // per resource, capacity 1

	mu     sync.Mutex
	status map[string]*ResourceStatus
}

// NewWatcher returns a watcher; Run starts it.
func NewWatcher(p *Processor, rs []Resource, w KVWatches) *Watcher {
	st := map[string]*ResourceStatus{}
	kicks := map[string]chan struct{}{}
	for _, r := range rs {
		st[r.File] = &ResourceStatus{Resource: r.File, Dest: r.Dest}
		kicks[r.File] = make(chan struct{}, 1)
	}
	return &Watcher{p: p, resources: rs, watches: w, status: st, kicks: kicks}
}

// KickAll asks every resource to render again (service data changed).
func (w *Watcher) KickAll() {
	for _, k := range w.kicks {
		kick.Send(k)
	}
}

// Status returns every resource's status, sorted by resource.
func (w *Watcher) Status() []ResourceStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ResourceStatus
	for _, s := range w.status {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range w.resources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.runOne(ctx, r)
		}()
	}
	wg.Wait()
	return nil
}

func (w *Watcher) runOne(ctx context.Context, r Resource) {
	type src struct {
		latest *watch.Latest[map[string]discovery.KVPair]
	}
	var srcs []src
	wake := w.kicks[r.File]
	for _, p := range r.Prefixes() {
		l, k := w.watches.KV(p)
		srcs = append(srcs, src{l})
		go kick.Forward(ctx, k, wake)
	}
	minWait, maxWait := r.MinWait, r.MaxWait
	if minWait == 0 {
		minWait = 50 * time.Millisecond
	}
	if maxWait == 0 {
		maxWait = 2 * time.Second
	}
	bo := backoff.New(250*time.Millisecond, 30*time.Second)
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-retry:
		}
		// Debounce: wait for min_wait of quiet, at most max_wait in all.
		deadline := time.After(maxWait)
	quiet:
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			case <-time.After(minWait):
				break quiet
			case <-deadline:
				break quiet
			}
		}
		kv := map[string]string{}
		complete := true
		for _, s := range srcs {
			m, ok, _ := s.latest.Get()
			if !ok || s.latest.Err() != nil && len(m) == 0 {
				complete = false // never render from data we have not read
				break
			}
			for k, v := range m {
				kv[k] = string(v.Value)
			}
		}
		if !complete {
			continue
		}
		out, err := w.p.Sync(ctx, r, kv)
		w.record(r, out, err)
		if err != nil {
			w.p.opt.Log.Warn("confgen: render failed; old file kept", "resource", r.File, "dest", r.Dest, "err", err)
			retry = time.After(bo.Next())
			continue
		}
		bo.Reset()
		retry = nil
	}
}

func (w *Watcher) record(r Resource, out Outcome, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status[r.File]
	s.LastRender = time.Now()
	s.Renders++
	if out.Changed {
		s.Changes++
		s.LastChange = s.LastRender
	}
	if out.Reloaded {
		s.Reloads++
	}
	s.LastError = ""
	if err != nil {
		s.LastError = err.Error()
	}
}
