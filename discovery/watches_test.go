package discovery

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// fakeCatalog answers blocking queries from in-memory data: a query with
// the current index blocks until the data changes.
type fakeCatalog struct {
	mu      sync.Mutex
	cond    *sync.Cond
	index   uint64
	entries []*api.ServiceEntry
	calls   map[string]int
}

func newFakeCatalog() *fakeCatalog {
	f := &fakeCatalog{index: 1, calls: map[string]int{}}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *fakeCatalog) set(es []*api.ServiceEntry) {
	f.mu.Lock()
	f.entries, f.index = es, f.index+1
	f.mu.Unlock()
	f.cond.Broadcast()
}

func (f *fakeCatalog) wait(ctx context.Context, index uint64) {
	go func() { <-ctx.Done(); f.cond.Broadcast() }()
	for f.index <= index && ctx.Err() == nil {
		f.cond.Wait()
	}
}

func (f *fakeCatalog) HealthService(ctx context.Context, name string, index uint64) ([]*api.ServiceEntry, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["service:"+name]++
	f.wait(ctx, index)
	return f.entries, f.index, ctx.Err()
}

func (f *fakeCatalog) KVList(ctx context.Context, prefix string, index uint64) (api.KVPairs, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["kv:"+prefix]++
	f.wait(ctx, index)
	return api.KVPairs{{Key: prefix + "a", Value: []byte("1"), ModifyIndex: 3}}, f.index, ctx.Err()
}

func (f *fakeCatalog) WatchServiceNames(ctx context.Context, filter string, index uint64) (map[string][]string, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["services:"+filter]++
	f.wait(ctx, index)
	return map[string][]string{"web": nil, "api": nil}, f.index, ctx.Err()
}

func svcEntry(id string) *api.ServiceEntry {
	return &api.ServiceEntry{Node: &api.Node{Node: "h1"}, Service: &api.AgentService{ID: id, Service: "web", Address: "10.42.0.2", Port: 8080},
		Checks: api.HealthChecks{&api.HealthCheck{Status: api.HealthPassing}}}
}

func TestWatchesShareOneQueryPerTopic(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cat := newFakeCatalog()
	cat.set([]*api.ServiceEntry{svcEntry("a")})
	w := NewWatches(ctx, cat, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.minWait = time.Millisecond
	l1, k1 := w.Service("web")
	l2, k2 := w.Service("web")
	if l1 != l2 || w.Topics() != 1 {
		t.Fatalf("two consumers of one service got %d topics", w.Topics())
	}
	kv, kk := w.KV("drover/")
	if w.Topics() != 2 {
		t.Fatalf("topics = %d, want 2", w.Topics())
	}
	for _, k := range []<-chan struct{}{k1, k2, kk} {
		select {
		case <-k:
		case <-time.After(5 * time.Second):
			t.Fatal("a consumer was not kicked for the first value")
		}
	}
	if v, ok, _ := kv.Get(); !ok || string(v["drover/a"].Value) != "1" || v["drover/a"].Index != 3 {
		t.Errorf("kv = %v, %v", v, ok)
	}
	cat.set([]*api.ServiceEntry{svcEntry("a"), svcEntry("b")})
	for _, k := range []<-chan struct{}{k1, k2} {
		select {
		case <-k:
		case <-time.After(5 * time.Second):
			t.Fatal("a consumer was not kicked for the change")
		}
	}
	v, _, _ := l1.Get()
	if len(v) != 2 || v[0].ID != "a" || v[1].ID != "b" || v[0].Health != "passing" || v[0].Node != "h1" {
		t.Errorf("instances = %+v", v)
	}
	// A late consumer is kicked at once for the value that exists.
	_, k3 := w.Service("web")
	select {
	case <-k3:
	case <-time.After(time.Second):
		t.Error("late consumer not kicked")
	}
}
