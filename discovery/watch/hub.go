package watch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/internal/kick"
)

// Consul is the read side of Consul the hub queries. *consul.Client fits.
type Consul interface {
	// HealthService answers /v1/health/service/<name> (every instance,
	// passing or not, with its checks); index 0 answers at once.
	HealthService(ctx context.Context, service string, index uint64) ([]*api.ServiceEntry, uint64, error)
	// HealthState is a blocking query on /v1/health/state/any.
	HealthState(ctx context.Context, index uint64) (api.HealthChecks, uint64, error)
	// KVList is a blocking query on a KV prefix.
	KVList(ctx context.Context, prefix string, index uint64) (api.KVPairs, uint64, error)
	// WatchServiceNames is a blocking query on /v1/catalog/services with a
	// filter over service instances ("" keeps all).
	WatchServiceNames(ctx context.Context, filter string, index uint64) (map[string][]string, uint64, error)
}

// FetchConcurrency bounds the non-blocking service fetches of all sets of a
// hub together. With an lb host's 5 blocking queries (two catalog queries,
// the check query, the lease folder, the overlay's own-record watch) and
// the occasional registration or TTL write, 3 keeps every agent at ≤ 10
// requests in flight (measured 10 at 4). The first read of 2,000
// services still takes about a second.
const FetchConcurrency = 3

// Hub is the one place that runs Consul blocking queries. Every query is
// shared by all its consumers, and the number of queries is fixed by what
// is asked (one per KV prefix, one per set filter, one over every check),
// never by the number of services or instances. Each consumer gets its own
// capacity-1 kick channel and reads the latest snapshot.
type Hub struct {
	ctx     context.Context
	consul  Consul
	log     *slog.Logger
	minWait time.Duration
	slots   chan struct{}  // FetchConcurrency tokens for service fetches
	wg      sync.WaitGroup // every goroutine of the hub
	runMu   sync.Mutex     // guards stopped against wg.Add after Run's Wait began
	stopped bool

	mu       sync.Mutex // guards the maps and checks
	kvs      map[string]*topic[map[string]discovery.KVPair]
	catalogs map[string]*topic[Catalog]
	checks   *topic[Checks]
	sets     map[string]*Set
	named    *Set
	services map[string]*topic[[]discovery.Instance] // Service(name) consumers
}

// New returns a hub whose queries run until ctx ends.
func New(ctx context.Context, c Consul, log *slog.Logger) *Hub {
	return &Hub{ctx: ctx, consul: c, log: log, minWait: 100 * time.Millisecond, slots: make(chan struct{}, FetchConcurrency),
		kvs: map[string]*topic[map[string]discovery.KVPair]{}, catalogs: map[string]*topic[Catalog]{},
		sets: map[string]*Set{}, services: map[string]*topic[[]discovery.Instance]{}}
}

// Run waits until the hub's context ends and every goroutine of the hub
// (query loops, set loops, fetches, kick fan-outs) has returned, so that
// the agent's errgroup owns them: run it with g.Go.
func (h *Hub) Run() error {
	<-h.ctx.Done()
	h.runMu.Lock()
	h.stopped = true
	h.runMu.Unlock()
	h.wg.Wait()
	return nil
}

// spawn runs f in a goroutine Run waits for; once the hub stopped it runs
// nothing (f would return at once).
func (h *Hub) spawn(f func()) {
	h.runMu.Lock()
	defer h.runMu.Unlock()
	if h.stopped {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		f()
	}()
}

// Queries returns how many blocking queries run (one Consul connection
// each while it waits); fetches in flight come on top, at most
// FetchConcurrency.
func (h *Hub) Queries() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.kvs) + len(h.catalogs)
	if h.checks != nil {
		n++
	}
	return n
}

// KV returns the latest content of a KV prefix and a channel kicked on every
// change.
func (h *Hub) KV(prefix string) (*Latest[map[string]discovery.KVPair], <-chan struct{}) {
	h.mu.Lock()
	t := start(h, h.kvs, prefix, "kv:"+prefix, func(ctx context.Context, idx uint64) (map[string]discovery.KVPair, uint64, error) {
		ps, i, err := h.consul.KVList(ctx, prefix, idx)
		out := make(map[string]discovery.KVPair, len(ps))
		for _, p := range ps {
			out[p.Key] = discovery.KVPair{Value: p.Value, Index: p.ModifyIndex}
		}
		return out, i, err
	})
	h.mu.Unlock()
	return t.latest, t.subscribe()
}

// Services returns the set of every service one of whose instances matches
// filter (Consul's filter language over a service instance, e.g.
// contract.LBFilter; "" selects all), kept current by the shared
// queries. Asking twice for one filter returns the same set.
func (h *Hub) Services(filter string) *Set {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.sets[filter]; ok {
		return s
	}
	s := h.newSetLocked(filter, nil)
	h.sets[filter] = s
	return s
}

// Service returns the latest instances of one service (all health states;
// empty while the catalog has none) and a channel kicked on every change.
// Every service asked for this way is one more member of one shared set:
// no query of its own runs for it, and while the catalog lacks it nothing
// is fetched for it.
func (h *Hub) Service(name string) (*Latest[[]discovery.Instance], <-chan struct{}) {
	h.mu.Lock()
	t, ok := h.services[name]
	if !ok {
		t = newTopic[[]discovery.Instance](h)
		h.services[name] = t
		if h.named == nil {
			h.named = h.newSetLocked("", h.wanted)
		}
		named := h.named
		t.latest.errOf = func() error { return named.errFor(name) }
		t.latest.atOf = named.lastContact
	}
	named := h.named
	h.mu.Unlock()
	if !ok {
		named.poke()
	}
	return t.latest, t.subscribe()
}

// wanted reports whether a consumer asked for service name (the named
// set's filter).
func (h *Hub) wanted(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.services[name]
	return ok
}

// publish hands the named set's content to the Service consumers.
func (h *Hub) publish(content map[string][]discovery.Instance) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, t := range h.services {
		ins, ok := content[name]
		if !ok {
			ins = []discovery.Instance{}
		}
		t.latest.set(ins)
	}
}

// catalogLocked returns the catalog query of filter, started on first use.
func (h *Hub) catalogLocked(filter string) *topic[Catalog] {
	return start(h, h.catalogs, filter, "services:"+filter, func(ctx context.Context, idx uint64) (Catalog, uint64, error) {
		m, i, err := h.consul.WatchServiceNames(ctx, filter, idx)
		return Catalog{Index: i, Names: m}, i, err
	})
}

// checksLocked returns the one query over every check, started on first use.
func (h *Hub) checksLocked() *topic[Checks] {
	if h.checks == nil {
		t := newTopic[Checks](h)
		h.checks = t
		h.spawn(func() {
			Watch(h.ctx, h.log, "checks", func(ctx context.Context, idx uint64) (Checks, uint64, error) {
				hc, i, err := h.consul.HealthState(ctx, idx)
				return ChecksFrom(hc, i), i, err
			}, t.latest, h.minWait)
		})
	}
	return h.checks
}

// start returns the topic of key in topics, starting its one watch on first
// use. h.mu must be held.
func start[T any](h *Hub, topics map[string]*topic[T], key, name string, fetch Fetch[T]) *topic[T] {
	t, ok := topics[key]
	if !ok {
		t = newTopic[T](h)
		topics[key] = t
		h.spawn(func() { Watch(h.ctx, h.log, name, fetch, t.latest, h.minWait) })
	}
	return t
}

// topic is one Latest and the kick channels of its consumers.
type topic[T any] struct {
	latest *Latest[T]
	mu     sync.Mutex
	subs   []chan struct{}
}

// newTopic returns a topic whose kicks fan out to its consumers until the
// hub's context ends.
func newTopic[T any](h *Hub) *topic[T] {
	t := &topic[T]{}
	fan := kick.New()
	t.latest = NewLatest[T](fan)
	h.spawn(func() {
		for {
			select {
			case <-h.ctx.Done():
				return
			case <-fan:
			}
			t.mu.Lock()
			for _, s := range t.subs {
				kick.Send(s)
			}
			t.mu.Unlock()
		}
	})
	return t
}

// subscribe adds a consumer; if the topic already has a value, the new
// consumer is kicked at once so that it reads it.
func (t *topic[T]) subscribe() <-chan struct{} {
	ch := kick.New()
	t.mu.Lock()
	t.subs = append(t.subs, ch)
	t.mu.Unlock()
	if _, ok, _ := t.latest.Get(); ok {
		kick.Send(ch)
	}
	return ch
}
