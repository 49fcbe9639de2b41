package confgen

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/watch"
)

// ServiceWatches is the part of watch.Hub the service functions read.
type ServiceWatches interface {
	Service(name string) (*watch.Latest[[]discovery.Instance], <-chan struct{})
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

func (s *WatchedServices) instances(name string) ([]discovery.Instance, error) {
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
	deadline := time.Now().Add(firstReadWait)
	for {
		v, ok, _ := latest.Get()
		switch {
		case ok:
			return v, nil
		case s.ctx.Err() != nil:
			return nil, s.ctx.Err()
		case time.Now().After(deadline):
			err := latest.Err()
			if err == nil {
				err = fmt.Errorf("no answer from Consul within %s", firstReadWait)
			}
			return nil, fmt.Errorf("reading service %s: %w", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// firstReadWait is how long a service's first read may take before the
// render fails (and the old file is kept).
const firstReadWait = 5 * time.Second

// Service returns the passing instances of name, sorted by ID.
func (s *WatchedServices) Service(name string) ([]Instance, error) {
	ins, err := s.instances(name)
	if err != nil {
		return nil, err
	}
	var out []Instance
	for _, in := range ins {
		if in.Health != "passing" {
			continue
		}
		out = append(out, Instance{ID: in.ID, Service: in.Service, Node: in.Node, Address: in.Address, Port: in.Port, Tags: in.Tags, Meta: in.Meta})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ServiceNames lists the catalog's services.
func (s *WatchedServices) ServiceNames() ([]string, error) {
	if s.names == nil {
		return nil, nil
	}
	n, err := s.names(s.ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the catalog's services: %w", err)
	}
	sort.Strings(n)
	return n, nil
}

// Nodes lists the drover nodes.
func (s *WatchedServices) Nodes() ([]string, error) {
	ins, err := s.instances(discovery.NodeService)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range discovery.NodesFromInstances(ins) {
		out = append(out, n.Name)
	}
	return out, nil
}

// MeshPeers lists the drover nodes with their subnet, endpoint and whether
// their mesh check passes.
func (s *WatchedServices) MeshPeers() ([]Peer, error) {
	ins, err := s.instances(discovery.NodeService)
	if err != nil {
		return nil, err
	}
	var out []Peer
	for _, n := range discovery.NodesFromInstances(ins) {
		out = append(out, Peer{Node: n.Name, Subnet: n.Subnet.String(), Endpoint: n.Endpoint.String(), Reachable: n.Health == "passing"})
	}
	return out, nil
}
