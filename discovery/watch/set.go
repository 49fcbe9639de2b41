package watch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/internal/backoff"
	"github.com/drover-net/drover/internal/kick"
)

// ErrNotRead is wrapped by Snapshot while a wanted service has no first
// read yet (at the start, or a service that just appeared).
var ErrNotRead = errors.New("not read yet")

// checkLag is how long a set waits, after the catalog moved, for the check
// query to reach the catalog's index before it plans: a registration
// writes the service and its checks in one transaction, so waiting lets
// the check diff explain the move instead of refetching everything.
const checkLag = 250 * time.Millisecond

// Set is the instances of every service chosen by a filter, kept current by
// the hub's shared queries: the filter's /v1/catalog/services query and the
// one /v1/health/state/any query. When they move, it fetches (without
// blocking, FetchConcurrency at a time across the hub) only the services
// whose names, tags or checks changed (PlanSet); a service that leaves the
// catalog is dropped and nothing keeps watching it.
//
//	kick (catalog or checks moved) ─▶ wait ≤ checkLag for the checks to catch up
//	    ─▶ PlanSet(old view, new view, content) ─▶ drop / fetch ─▶ compare ─▶ kick consumers if changed
//	fetch failed ─▶ service stays pending, error reported by Snapshot, retried with backoff
type Set struct {
	h      *Hub
	filter string
	cat    *topic[Catalog]
	chk    *topic[Checks]
	want   func(string) bool // nil: every name the catalog query lists
	named  bool              // the hub's Service(name) set: publish to per-service latests
	wake   chan struct{}

	mu      sync.Mutex
	content map[string][]discovery.Instance
	pending map[string]error // wanted services without a good read: nil (never read) or the fetch error
	view    View             // the view last planned from
	planned bool             // a first plan ran
	stats   SetStats
	subs    []chan struct{}
	fetches atomic.Int64
}

// SetStats counts what a set asked of Consul.
type SetStats struct {
	Services   int   `json:"services"`    // services in the set
	Fetches    int64 `json:"fetches"`     // /v1/health/service/<name> requests
	FullPasses int64 `json:"full_passes"` // unexplained catalog moves that refetched every service
	Pending    int   `json:"pending"`     // services waiting for a good read
	// LastChange is when the set's content last changed (a fetch that
	// found new content, or a drop).
	LastChange time.Time `json:"last_change,omitzero"`
}

// newSetLocked makes a set and starts its loop. h.mu must be held.
func (h *Hub) newSetLocked(filter string, want func(string) bool) *Set {
	s := &Set{h: h, filter: filter, cat: h.catalogLocked(filter), chk: h.checksLocked(), want: want, named: want != nil,
		wake: kick.New(), content: map[string][]discovery.Instance{}, pending: map[string]error{}}
	catKick, chkKick := s.cat.subscribe(), s.chk.subscribe()
	h.spawn(func() { s.run(h.ctx, catKick, chkKick) })
	return s
}

// Changed returns a new consumer's kick channel: kicked whenever the set's
// content or health changes, and at once if the set was already read.
func (s *Set) Changed() <-chan struct{} {
	ch := kick.New()
	s.mu.Lock()
	s.subs = append(s.subs, ch)
	if s.planned {
		kick.Send(ch)
	}
	s.mu.Unlock()
	return ch
}

// Snapshot returns every service of the set with its instances. It fails
// while the view is not complete and fresh: the catalog or check query's
// last read failed, or a wanted service has no good read yet (wrapping
// ErrNotRead when it was merely not read yet).
func (s *Set) Snapshot() (map[string][]discovery.Instance, error) {
	if err := s.cat.latest.Err(); err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}
	if err := s.chk.latest.Err(); err != nil {
		return nil, fmt.Errorf("reading health checks: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.planned {
		return nil, fmt.Errorf("services %q: %w", s.filter, ErrNotRead)
	}
	if err := s.pendingErrLocked(); err != nil {
		return nil, err
	}
	return maps.Clone(s.content), nil
}

// Stats returns what the set asked of Consul so far.
func (s *Set) Stats() SetStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Services, st.Pending, st.Fetches = len(s.content), len(s.pending), s.fetches.Load()
	return st
}

// pendingErrLocked returns the error of the first pending service: a
// failed fetch wins over one not read yet.
func (s *Set) pendingErrLocked() error {
	names := make([]string, 0, len(s.pending))
	for n := range s.pending {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := s.pending[n]; err != nil {
			return fmt.Errorf("reading service %s: %w", n, err)
		}
	}
	if len(names) > 0 {
		return fmt.Errorf("service %s: %w", names[0], ErrNotRead)
	}
	return nil
}

// errFor is the error of one service of the named set (nil when fresh).
func (s *Set) errFor(name string) error {
	if err := errors.Join(s.cat.latest.Err(), s.chk.latest.Err()); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[name]
}

// lastContact is the last successful contact of both queries the set is
// built from (each answers at least every WaitTime, so it stays recent
// while Consul answers, changes or not).
func (s *Set) lastContact() time.Time {
	_, _, c := s.cat.latest.Get()
	_, _, k := s.chk.latest.Get()
	if k.Before(c) {
		return k
	}
	return c
}

func (s *Set) poke() { kick.Send(s.wake) }

// run is the set's loop; it ends with ctx.
func (s *Set) run(ctx context.Context, catKick, chkKick <-chan struct{}) {
	bo := backoff.New(250*time.Millisecond, 4*time.Second)
	var retry, lag <-chan time.Time
	var movedAt time.Time // when a catalog move not yet matched by the checks was first seen
	for {
		select {
		case <-ctx.Done():
			return
		case <-catKick:
		case <-chkKick:
		case <-s.wake:
		case <-retry:
			retry = nil
		case <-lag:
			lag = nil
		}
		cat, okC, _ := s.cat.latest.Get()
		chk, okK, _ := s.chk.latest.Get()
		if !okC || !okK {
			continue
		}
		s.mu.Lock()
		prev, planned := s.view, s.planned
		s.mu.Unlock()
		if planned && cat.Index != prev.Index && chk.Index < cat.Index {
			if movedAt.IsZero() {
				movedAt = time.Now()
			}
			if wait := checkLag - time.Since(movedAt); wait > 0 {
				lag = time.After(wait)
				continue
			}
		}
		movedAt = time.Time{}
		cur := View{Index: cat.Index, Names: s.wantedOf(cat.Names), Checks: chk.Checks}
		if err := s.pass(ctx, prev, cur); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.h.log.Warn("consul service fetch failed; retrying", "set", s.filter, "err", err)
			retry = time.After(bo.Next())
			continue
		}
		bo.Reset()
	}
}

// wantedOf keeps the names the set wants.
func (s *Set) wantedOf(names map[string][]string) map[string][]string {
	out := make(map[string][]string, len(names))
	for n, tags := range names {
		if s.want == nil || s.want(n) {
			out[n] = tags
		}
	}
	return out
}

// pass plans from prev to cur, fetches what the plan and the pending
// services need, and publishes the result. It returns the first fetch
// error (those services stay pending).
func (s *Set) pass(ctx context.Context, prev, cur View) error {
	s.mu.Lock()
	p := PlanSet(prev, cur, s.content) // prev is the zero View before the first pass: fetch all
	todo := map[string]bool{}
	for _, n := range p.Fetch {
		todo[n] = true
	}
	for n := range s.pending {
		if _, ok := cur.Names[n]; ok {
			todo[n] = true
		} else {
			delete(s.pending, n)
		}
	}
	for _, n := range p.Fetch {
		if _, ok := s.content[n]; !ok {
			if _, ok := s.pending[n]; !ok {
				s.pending[n] = nil
			}
		}
	}
	changed := !s.planned
	failing := s.pendingErrLocked() != nil // a recovery must wake the consumers too
	for _, n := range p.Drop {
		if _, ok := s.content[n]; ok {
			delete(s.content, n)
			changed = true
		}
		delete(s.pending, n)
	}
	s.view, s.planned = cur, true
	if p.All {
		s.stats.FullPasses++
	}
	s.mu.Unlock()
	if p.All {
		s.h.log.Debug("catalog moved without a check change; fetching every service of the set", "set", s.filter, "services", len(cur.Names))
	}
	got, errs := s.fetch(ctx, slices.Sorted(maps.Keys(todo)))
	s.mu.Lock()
	var first error
	for n, ins := range got {
		if _, still := s.view.Names[n]; !still {
			continue // dropped while it was fetched
		}
		delete(s.pending, n)
		if old, ok := s.content[n]; !ok || !reflect.DeepEqual(old, ins) {
			s.content[n] = ins
			changed = true
		}
	}
	for n, err := range errs {
		if _, still := s.view.Names[n]; still {
			s.pending[n] = err
			if first == nil {
				first = err
			}
		}
	}
	if changed {
		s.stats.LastChange = time.Now()
	}
	var content map[string][]discovery.Instance
	if s.named {
		content = maps.Clone(s.content)
	}
	subs := s.subs
	s.mu.Unlock()
	if s.named {
		s.h.publish(content)
	}
	if changed || first != nil || failing {
		for _, ch := range subs {
			kick.Send(ch)
		}
	}
	return first
}

// fetch reads names' instances, FetchConcurrency at a time across the hub.
func (s *Set) fetch(ctx context.Context, names []string) (map[string][]discovery.Instance, map[string]error) {
	got := map[string][]discovery.Instance{}
	errs := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range names {
		select {
		case s.h.slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			errs[n] = ctx.Err()
			return got, errs
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.h.slots }()
			es, _, err := s.h.consul.HealthService(ctx, n, 0)
			s.fetches.Add(1)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[n] = err
				return
			}
			got[n] = discovery.InstancesFromEntries(es)
		}()
	}
	wg.Wait()
	return got, errs
}
