package confgen

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/drover-net/drover/discovery"
)

// ServiceWatches is the part of discovery.Watches the service functions read.
type ServiceWatches interface {
	Service(name string) (*discovery.Latest[[]discovery.Instance], <-chan struct{})
}

// CatalogNames lists service names (for the `services` function).
type CatalogNames func(ctx context.Context) ([]string, error)

// WatchedServices answers the templates' service functions from discovery's
// watches. A service asked for the first time is watched from then on (a
// change re-renders every resource through OnChange); the first answer
// waits up to 5 s for Consul, so a template never sees a service as empty
// merely because it was not read yet.
type WatchedServices struct {
	ctx      context.Context
	w        ServiceWatches
	names    CatalogNames
	OnChange func()

	mu   sync.Mutex
	seen map[string]bool
}

// NewWatchedServices returns the service data source for templates.
func NewWatchedServices(ctx context.Context, w ServiceWatches, names CatalogNames, onChange func()) *WatchedServices {
	return &WatchedServices{ctx: ctx, w: w, names: names, OnChange: onChange, seen: map[string]bool{}}
}

func (s *WatchedServices) instances(name string) []discovery.Instance {
	latest, kick := s.w.Service(name)
	s.mu.Lock()
	first := !s.seen[name]
	s.seen[name] = true
	s.mu.Unlock()
	if first {
		go func() {
			<-kick // the first value, consumed below by Get
			for {
				select {
				case <-s.ctx.Done():
					return
				case <-kick:
					if s.OnChange != nil {
						s.OnChange()
					}
				}
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, ok, _ := latest.Get()
		if ok || time.Now().After(deadline) || s.ctx.Err() != nil {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Service returns the passing instances of name, sorted by ID.
func (s *WatchedServices) Service(name string) []Instance {
	var out []Instance
	for _, in := range s.instances(name) {
		if in.Health != "passing" {
			continue
		}
		out = append(out, Instance{ID: in.ID, Service: in.Service, Node: in.Node, Address: in.Address, Port: in.Port, Tags: in.Tags, Meta: in.Meta})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ServiceNames lists the catalog's services.
func (s *WatchedServices) ServiceNames() []string {
	if s.names == nil {
		return nil
	}
	n, _ := s.names(s.ctx)
	sort.Strings(n)
	return n
}

// Nodes lists the drover nodes.
func (s *WatchedServices) Nodes() []string {
	var out []string
	for _, n := range discovery.NodesFromInstances(s.instances(discovery.NodeService)) {
		out = append(out, n.Name)
	}
	return out
}

// MeshPeers lists the drover nodes with their subnet, endpoint and whether
// their mesh check passes.
func (s *WatchedServices) MeshPeers() []Peer {
	var out []Peer
	for _, n := range discovery.NodesFromInstances(s.instances(discovery.NodeService)) {
		out = append(out, Peer{Node: n.Name, Subnet: n.Subnet.String(), Endpoint: n.Endpoint.String(), Reachable: n.Health == "passing"})
	}
	return out
}
