package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-net/drover/discovery"
)

// fakeConsul is an in-memory catalog answering blocking queries: a query
// with the current index blocks until the data changes. Service writes
// move the catalog index, check writes the check index (as in Consul, a
// registration with checks moves both to the same index).
type fakeConsul struct {
	mu       sync.Mutex
	cond     *sync.Cond
	index    uint64 // the Raft index: every write takes the next one
	catIdx   uint64
	chkIdx   uint64
	services map[string][]*api.ServiceEntry
	kv       api.KVPairs
	calls    map[string]int
	fail     map[string]error // HealthService answers for these services
}

func newFakeConsul() *fakeConsul {
	f := &fakeConsul{index: 1, catIdx: 1, chkIdx: 1, services: map[string][]*api.ServiceEntry{}, calls: map[string]int{}, fail: map[string]error{}}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// put registers (or replaces) instance id of service on node with one
// check of status; meta marks lb services.
func (f *fakeConsul) put(service, id, node, addr, status string, meta map[string]string, withCheck bool) {
	f.mu.Lock()
	f.index++
	var es []*api.ServiceEntry
	for _, e := range f.services[service] {
		if e.Service.ID != id {
			es = append(es, e)
		}
	}
	e := &api.ServiceEntry{Node: &api.Node{Node: node}, Service: &api.AgentService{ID: id, Service: service, Address: addr, Port: 8080, Meta: meta}}
	if withCheck {
		e.Checks = api.HealthChecks{{Node: node, CheckID: "check:" + id, ServiceID: id, ServiceName: service, Status: status, ModifyIndex: f.index}}
		f.chkIdx = f.index
	}
	f.services[service] = append(es, e)
	f.catIdx = f.index
	f.mu.Unlock()
	f.cond.Broadcast()
}

// setStatus changes one instance's check (the catalog index stays).
func (f *fakeConsul) setStatus(service, id, status string) {
	f.mu.Lock()
	f.index++
	for _, e := range f.services[service] {
		if e.Service.ID == id {
			e.Checks[0] = &api.HealthCheck{Node: e.Node.Node, CheckID: "check:" + id, ServiceID: id, ServiceName: service, Status: status, ModifyIndex: f.index}
		}
	}
	f.chkIdx = f.index
	f.mu.Unlock()
	f.cond.Broadcast()
}

// drop deregisters a whole service.
func (f *fakeConsul) drop(service string) {
	f.mu.Lock()
	f.index++
	delete(f.services, service)
	f.catIdx, f.chkIdx = f.index, f.index
	f.mu.Unlock()
	f.cond.Broadcast()
}

func (f *fakeConsul) waitFor(ctx context.Context, idx *uint64, index uint64) {
	stop := context.AfterFunc(ctx, func() { f.mu.Lock(); f.cond.Broadcast(); f.mu.Unlock() })
	defer stop()
	for *idx <= index && ctx.Err() == nil {
		f.cond.Wait()
	}
}

func (f *fakeConsul) HealthService(ctx context.Context, name string, index uint64) ([]*api.ServiceEntry, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["service:"+name]++
	if err := f.fail[name]; err != nil {
		return nil, 0, err
	}
	if index != 0 {
		return nil, 0, fmt.Errorf("HealthService %s blocked on index %d: a set never blocks on one service", name, index)
	}
	var out []*api.ServiceEntry
	for _, e := range f.services[name] {
		c := *e
		c.Checks = append(api.HealthChecks(nil), e.Checks...)
		out = append(out, &c)
	}
	return out, f.catIdx, nil
}

func (f *fakeConsul) HealthState(ctx context.Context, index uint64) (api.HealthChecks, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["checks"]++
	f.waitFor(ctx, &f.chkIdx, index)
	var out api.HealthChecks
	for _, es := range f.services {
		for _, e := range es {
			out = append(out, e.Checks...)
		}
	}
	return out, f.chkIdx, ctx.Err()
}

func (f *fakeConsul) KVList(ctx context.Context, prefix string, index uint64) (api.KVPairs, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["kv:"+prefix]++
	f.waitFor(ctx, &f.catIdx, index)
	return api.KVPairs{{Key: prefix + "a", Value: []byte("1"), ModifyIndex: 3}}, f.catIdx, ctx.Err()
}

func (f *fakeConsul) WatchServiceNames(ctx context.Context, filter string, index uint64) (map[string][]string, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["services:"+filter]++
	f.waitFor(ctx, &f.catIdx, index)
	out := map[string][]string{}
	for n, es := range f.services {
		for _, e := range es {
			if _, ok := e.Service.Meta["wanted"]; filter == "" || ok {
				out[n] = nil
			}
		}
	}
	return out, f.catIdx, ctx.Err()
}

func (f *fakeConsul) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

func newHub(t *testing.T, f *fakeConsul) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := New(ctx, f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.minWait = time.Millisecond
	return h
}

func kicked(t *testing.T, k <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-k:
	case <-time.After(5 * time.Second):
		t.Fatalf("not kicked: %s", what)
	}
}

// eventually polls f until it returns nil (every 5 ms, 5 s at most).
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lbMeta marks the instances the filter `"wanted" in ServiceMeta` selects.
var lbMeta = map[string]string{"wanted": "yes"}

func TestServiceSharesTheNamedSet(t *testing.T) {
	f := newFakeConsul()
	f.put("web", "a", "h1", "10.42.0.2", api.HealthPassing, nil, true)
	h := newHub(t, f)
	l1, k1 := h.Service("web")
	l2, k2 := h.Service("web")
	if l1 != l2 {
		t.Fatal("two consumers of one service got two latests")
	}
	ghost, kg := h.Service("ghost")
	kv, kk := h.KV("drover/")
	for _, k := range []<-chan struct{}{k1, k2, kk, kg} {
		kicked(t, k, "first value")
	}
	if v, ok, _ := kv.Get(); !ok || string(v["drover/a"].Value) != "1" || v["drover/a"].Index != 3 {
		t.Errorf("kv = %v, %v", v, ok)
	}
	if v, ok, _ := ghost.Get(); !ok || len(v) != 0 {
		t.Errorf("a service the catalog lacks: %v %v, want read and empty", v, ok)
	}
	f.put("web", "b", "h2", "10.42.1.2", api.HealthCritical, nil, true)
	kicked(t, k1, "a new instance")
	eventually(t, "two instances", func() error {
		v, _, _ := l1.Get()
		if len(v) != 2 || v[0].ID != "a" || v[1].ID != "b" || v[0].Health != "passing" || v[1].Health != "critical" || v[0].Node != "h1" {
			return fmt.Errorf("instances = %+v", v)
		}
		return nil
	})
	if n := h.Queries(); n != 3 { // catalog "", checks, kv
		t.Errorf("queries = %d, want 3 (never one per service)", n)
	}
	if f.count("service:ghost") != 0 {
		t.Errorf("a service absent from the catalog was fetched %d times", f.count("service:ghost"))
	}
	_, k3 := h.Service("web")
	kicked(t, k3, "late consumer")
}

func TestSetFetchesOnlyWhatChanged(t *testing.T) {
	f := newFakeConsul()
	for i := range 50 {
		for j := range 3 {
			f.put(fmt.Sprintf("s%02d", i), fmt.Sprintf("s%02d-%d", i, j), fmt.Sprintf("n%d", j), "10.0.0.1", api.HealthPassing, lbMeta, true)
		}
	}
	f.put("plain", "plain-1", "n0", "10.0.0.9", api.HealthPassing, nil, true)
	h := newHub(t, f)
	s := h.Services(`"wanted" in ServiceMeta`)
	k := s.Changed()
	snap := func() map[string][]discovery.Instance {
		t.Helper()
		var m map[string][]discovery.Instance
		eventually(t, "snapshot", func() (err error) { m, err = s.Snapshot(); return err })
		return m
	}
	kicked(t, k, "first read")
	if m := snap(); len(m) != 50 || len(m["s07"]) != 3 || m["plain"] != nil {
		t.Fatalf("first snapshot has %d services, s07 %d instances", len(m), len(m["s07"]))
	}
	base := s.Stats().Fetches
	if base != 50 {
		t.Errorf("first read fetched %d services, want 50", base)
	}

	f.setStatus("s07", "s07-1", api.HealthCritical)
	eventually(t, "s07-1 critical", func() error {
		m, err := s.Snapshot()
		if err != nil || m["s07"][1].Health != "critical" {
			return fmt.Errorf("s07 %+v %v", m["s07"], err)
		}
		return nil
	})
	if got := s.Stats().Fetches - base; got != 1 {
		t.Errorf("one check change fetched %d services, want 1", got)
	}

	base = s.Stats().Fetches
	f.drop("s08")
	f.put("s99", "s99-0", "n0", "10.0.0.2", api.HealthPassing, lbMeta, true)
	eventually(t, "s08 gone, s99 there", func() error {
		m, err := s.Snapshot()
		if _, ok := m["s08"]; ok || len(m["s99"]) != 1 || err != nil {
			return fmt.Errorf("%d services, s99 %v, err %v", len(m), m["s99"], err)
		}
		return nil
	})
	// The check query may see s08's checks gone before the catalog query
	// sees s08 gone: then s08 is read once more (empty) before its drop.
	if got := s.Stats().Fetches - base; got > 2 {
		t.Errorf("a drop and a new service fetched %d services, want 1 or 2", got)
	}
	if n := f.count("service:s08"); n > 2 {
		t.Errorf("the dropped service was fetched %d times, want at most twice", n)
	}

	// An address change writes no check: nothing explains the catalog
	// move, so the whole set is read again (and the change is seen).
	base = s.Stats().Fetches
	f.put("s10", "s10-0", "n0", "10.9.9.9", api.HealthPassing, lbMeta, false)
	eventually(t, "s10-0 moved", func() error {
		m, _ := s.Snapshot()
		for _, in := range m["s10"] {
			if in.ID == "s10-0" && in.Address == "10.9.9.9" {
				return nil
			}
		}
		return fmt.Errorf("s10 %+v", m["s10"])
	})
	if st := s.Stats(); st.FullPasses != 1 || st.Fetches-base < 50 {
		t.Errorf("an unexplained move: %+v (fetches +%d), want one full pass", st, st.Fetches-base)
	}
	if n := h.Queries(); n != 2 {
		t.Errorf("queries = %d, want 2", n)
	}
}

func TestSetNotReadThenFresh(t *testing.T) {
	f := newFakeConsul()
	f.put("web", "a", "h1", "10.42.0.2", api.HealthPassing, lbMeta, true)
	h := newHub(t, f)
	s := h.Services("")
	if _, err := s.Snapshot(); err == nil {
		t.Fatal("a snapshot before any read succeeded")
	}
	kicked(t, s.Changed(), "first read")
	eventually(t, "fresh", func() error { _, err := s.Snapshot(); return err })
}

func TestServiceGoneIsNotReadAgain(t *testing.T) {
	f := newFakeConsul()
	f.put("web", "a", "h1", "10.42.0.2", api.HealthPassing, nil, true)
	f.put("api", "b", "h1", "10.42.0.3", api.HealthPassing, nil, true)
	h := newHub(t, f)
	web, k := h.Service("web")
	h.Service("api")
	kicked(t, k, "first value")
	f.drop("web")
	eventually(t, "web empty", func() error {
		if v, ok, _ := web.Get(); !ok || len(v) != 0 {
			return fmt.Errorf("web = %v (read %v)", v, ok)
		}
		return nil
	})
	n := f.count("service:web")
	for i := range 5 {
		f.setStatus("api", "b", []string{api.HealthCritical, api.HealthPassing}[i%2])
	}
	apiL, _ := h.Service("api")
	eventually(t, "api's last change read", func() error {
		if v, _, _ := apiL.Get(); len(v) != 1 || v[0].Health != api.HealthCritical {
			return fmt.Errorf("api = %+v", v)
		}
		return nil
	})
	if m := f.count("service:web"); m != n {
		t.Errorf("web, gone from the catalog, was fetched %d more times", m-n)
	}
}

func TestSetFetchErrorIsStaleThenFresh(t *testing.T) {
	f := newFakeConsul()
	f.put("web", "a", "h1", "10.42.0.2", api.HealthPassing, lbMeta, true)
	h := newHub(t, f)
	s := h.Services("")
	kicked(t, s.Changed(), "first read")
	eventually(t, "fresh", func() error { _, err := s.Snapshot(); return err })
	f.mu.Lock()
	f.fail["web"] = fmt.Errorf("429 Too Many Requests")
	f.mu.Unlock()
	f.setStatus("web", "a", api.HealthCritical)
	eventually(t, "stale", func() error {
		_, err := s.Snapshot()
		if err == nil || errors.Is(err, ErrNotRead) {
			return fmt.Errorf("snapshot err %v, want the fetch error", err)
		}
		return nil
	})
	f.mu.Lock()
	delete(f.fail, "web")
	f.mu.Unlock()
	eventually(t, "fresh again with the change", func() error {
		m, err := s.Snapshot()
		if err != nil || m["web"][0].Health != "critical" {
			return fmt.Errorf("%v %v", m, err)
		}
		return nil
	})
}

func TestRunWaitsForEveryGoroutine(t *testing.T) {
	f := newFakeConsul()
	f.put("web", "a", "h1", "10.42.0.2", api.HealthPassing, lbMeta, true)
	ctx, cancel := context.WithCancel(context.Background())
	h := New(ctx, f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.Services("")
	h.Service("web")
	h.KV("drover/")
	done := make(chan error, 1)
	go func() { done <- h.Run() }()
	select {
	case <-done:
		t.Fatal("Run returned before the context ended")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the context ended")
	}
	h.Service("late") // after the stop: starts nothing, must not panic
}
