package discovery

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Catalog is the blocking-query side of Consul that watches read.
// *consul.Client fits.
type Catalog interface {
	HealthService(ctx context.Context, service string, index uint64) ([]*api.ServiceEntry, uint64, error)
	KVList(ctx context.Context, prefix string, index uint64) (api.KVPairs, uint64, error)
	WatchServiceNames(ctx context.Context, filter string, index uint64) (map[string][]string, uint64, error)
}

// Instance is one service instance with its aggregated health.
type Instance struct {
	ID      string
	Service string
	Node    string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	Health  string // passing, warning or critical
	// CreateIndex is the Raft index at which Consul first registered the
	// instance: who came first, when two claim the same thing.
	CreateIndex uint64
}

// InstancesFromEntries converts a health answer into Instances sorted by ID.
// It is pure.
func InstancesFromEntries(es []*api.ServiceEntry) []Instance {
	out := make([]Instance, 0, len(es))
	for _, e := range es {
		if e == nil || e.Service == nil {
			continue
		}
		in := Instance{ID: e.Service.ID, Service: e.Service.Service, Address: e.Service.Address, Port: e.Service.Port,
			Tags: e.Service.Tags, Meta: e.Service.Meta, Health: e.Checks.AggregatedStatus(), CreateIndex: e.Service.CreateIndex}
		if e.Node != nil {
			in.Node = e.Node.Node
			if in.Address == "" {
				in.Address = e.Node.Address
			}
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Watches is the one place that runs Consul blocking queries. Each topic
// (a service's instances, a KV prefix) has exactly one watch however many
// consumers ask for it, so the number of connections to Consul grows with
// the number of distinct topics, not with consumers or instances. Each
// consumer gets its own kick channel and reads the latest snapshot.
type Watches struct {
	ctx     context.Context
	catalog Catalog
	log     *slog.Logger
	minWait time.Duration

	mu       sync.Mutex // guards the maps
	services map[string]*topic[[]Instance]
	kvs      map[string]*topic[map[string]KVPair]
	catalogs map[string]*topic[[]string]
}

// KVPair is one key's value and modify index.
type KVPair struct {
	Value []byte
	Index uint64
}

// topic is one running watch and the kick channels of its consumers.
type topic[T any] struct {
	latest *Latest[T]
	mu     sync.Mutex
	subs   []chan struct{}
}

// NewWatches returns a registry whose watches run until ctx ends.
func NewWatches(ctx context.Context, c Catalog, log *slog.Logger) *Watches {
	return &Watches{ctx: ctx, catalog: c, log: log, minWait: 100 * time.Millisecond,
		services: map[string]*topic[[]Instance]{}, kvs: map[string]*topic[map[string]KVPair]{},
		catalogs: map[string]*topic[[]string]{}}
}

// Topics returns how many watches run (one Consul connection each).
func (w *Watches) Topics() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.services) + len(w.kvs) + len(w.catalogs)
}

// Service returns the latest instances of service name (all health states)
// and a channel kicked on every change.
func (w *Watches) Service(name string) (*Latest[[]Instance], <-chan struct{}) {
	return watchTopic(w, w.services, name, "service:"+name, func(ctx context.Context, idx uint64) ([]Instance, uint64, error) {
		es, i, err := w.catalog.HealthService(ctx, name, idx)
		return InstancesFromEntries(es), i, err
	})
}

// KV returns the latest content of a KV prefix and a channel kicked on every
// change.
func (w *Watches) KV(prefix string) (*Latest[map[string]KVPair], <-chan struct{}) {
	return watchTopic(w, w.kvs, prefix, "kv:"+prefix, func(ctx context.Context, idx uint64) (map[string]KVPair, uint64, error) {
		ps, i, err := w.catalog.KVList(ctx, prefix, idx)
		out := make(map[string]KVPair, len(ps))
		for _, p := range ps {
			out[p.Key] = KVPair{Value: p.Value, Index: p.ModifyIndex}
		}
		return out, i, err
	})
}

// ServiceNames returns the sorted names of the catalog's services that have
// an instance matching filter (Consul's filter language over a service
// instance, e.g. contract.LBFilter) and a channel kicked on every
// change.
func (w *Watches) ServiceNames(filter string) (*Latest[[]string], <-chan struct{}) {
	return watchTopic(w, w.catalogs, filter, "services:"+filter, func(ctx context.Context, idx uint64) ([]string, uint64, error) {
		m, i, err := w.catalog.WatchServiceNames(ctx, filter, idx)
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		return names, i, err
	})
}

// watchTopic returns the topic of key in topics, starting its one watch on
// first use, and subscribes a new consumer to it.
func watchTopic[T any](w *Watches, topics map[string]*topic[T], key, name string, fetch Fetch[T]) (*Latest[T], <-chan struct{}) {
	w.mu.Lock()
	t, ok := topics[key]
	if !ok {
		t = newTopic[T](w.ctx)
		topics[key] = t
		go Watch(w.ctx, w.log, name, fetch, t.latest, w.minWait)
	}
	w.mu.Unlock()
	return t.latest, t.subscribe()
}

func newTopic[T any](ctx context.Context) *topic[T] {
	t := &topic[T]{}
	fan := make(chan struct{}, 1)
	t.latest = NewLatest[T](fan)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-fan:
			}
			t.mu.Lock()
			for _, s := range t.subs {
				select {
				case s <- struct{}{}:
				default:
				}
			}
			t.mu.Unlock()
		}
	}()
	return t
}

// subscribe adds a consumer; if the topic already has a value, the new
// consumer is kicked at once so that it reads it.
func (t *topic[T]) subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	t.mu.Lock()
	t.subs = append(t.subs, ch)
	t.mu.Unlock()
	if _, ok, _ := t.latest.Get(); ok {
		ch <- struct{}{}
	}
	return ch
}
