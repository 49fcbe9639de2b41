package lb

import (
	"fmt"
	"net/netip"
	"reflect"
	"time"

	"github.com/drover-net/drover/discovery"
)

// Server is one server line of a backend.
//
// In a State returned by Desired, Servers[i] lives in slot i and every
// server is Enabled. In a State that describes what runs (the "old" side
// of Diff), Servers[i] is slot i as HAProxy knows it: Name is the server
// name written in the config (runtime operations cannot rename it), Addr
// its current address, and Enabled is false for a drained or empty slot.
type Server struct {
	Name    string // HAProxy server name: the instance ID with [^A-Za-z0-9_.-] replaced by "_"
	Addr    string // ip:port
	Weight  int    // 0..256
	Check   discovery.Check
	Enabled bool
}

// Backend is one HAProxy backend: one per service.
type Backend struct {
	Name    string // the service name
	Mode    string // "http" or "tcp"
	Balance string // roundrobin, leastconn or source
	Servers []Server
	// Slots is the number of server lines in the config: the smallest
	// power of two ≥ max(SlotsMin, len(Servers)). Slots beyond the
	// servers are rendered disabled, ready for runtime operations.
	Slots int
	// Sticky inserts a cookie naming the server (slot), so that a client
	// stays on one server until it drains or fails.
	Sticky bool
	// ProxyProtocol ("v1", "v2" or "") is sent to the servers.
	ProxyProtocol string
	// TunnelTimeout is the idle timeout of upgraded and tcp connections.
	TunnelTimeout time.Duration
	// HSTS, when > 0, is the max-age of the Strict-Transport-Security
	// header added to HTTPS answers.
	HSTS time.Duration `json:",omitempty"`
	// Check is the service's check, set only on a backend with no server
	// (its instances registered but none passing): its slot lines and
	// option httpchk keep the check its servers will come back with, so
	// their return is a runtime change, not a reload.
	Check discovery.Check
}

// Route sends HTTP requests whose Host is Host (any host when empty) and
// whose path starts with PathPrefix (any path when empty) to Backend.
type Route struct {
	Host, PathPrefix, Backend string
	// Redirect (301 or 308) answers the route with a redirect to HTTPS
	// instead of sending it to Backend (plain-HTTP frontends only).
	Redirect int `json:",omitempty"`
}

// Frontend is one listening port.
type Frontend struct {
	Name           string // "http_<port>", "https_<port>" or "tcp_<port>"
	Mode           string // "http" or "tcp"
	TLS            bool   `json:",omitempty"` // an HTTPS frontend: certificates chosen by SNI
	Port           int
	Routes         []Route // http only; longer host first, then longer path first
	DefaultBackend string  // tcp only
}

// State is the whole desired (or running) HAProxy configuration that lb
// owns. Frontends are sorted by Port, Backends by Name.
type State struct {
	Frontends []Frontend
	Backends  []Backend
	Edge      Edge
}

// Problem is one reason an instance or a whole service was left out or
// given a default. Instance is empty for service-level problems.
type Problem struct {
	Service, Instance, Reason string
}

func (p Problem) String() string {
	if p.Instance == "" {
		return fmt.Sprintf("service %s: %s", p.Service, p.Reason)
	}
	return fmt.Sprintf("service %s instance %s: %s", p.Service, p.Instance, p.Reason)
}

// Equal reports whether s and o describe the same configuration. A nil and
// an empty slice are equal.
func (s State) Equal(o State) bool {
	return reflect.DeepEqual(s.normal(), o.normal())
}

// Clone returns a deep copy of s.
func (s State) Clone() State {
	c := State{Edge: s.Edge}
	c.Edge.TrustedProxies = append([]netip.Prefix(nil), s.Edge.TrustedProxies...)
	for _, f := range s.Frontends {
		f.Routes = append([]Route(nil), f.Routes...)
		c.Frontends = append(c.Frontends, f)
	}
	for _, b := range s.Backends {
		b.Servers = append([]Server(nil), b.Servers...)
		c.Backends = append(c.Backends, b)
	}
	return c
}

// normal returns a copy with empty slices as nil.
func (s State) normal() State {
	c := s.Clone()
	if len(c.Frontends) == 0 {
		c.Frontends = nil
	}
	if len(c.Backends) == 0 {
		c.Backends = nil
	}
	if len(c.Edge.TrustedProxies) == 0 {
		c.Edge.TrustedProxies = nil
	}
	if c.Edge.HardStopAfter <= 0 {
		c.Edge.HardStopAfter = DefaultHardStopAfter // what Render writes
	}
	if c.Edge.MaxReloads <= 0 {
		c.Edge.MaxReloads = MaxReloadsFor(c.Edge.HardStopAfter, 0) // what Render writes
	}
	for i := range c.Backends {
		if c.Backends[i].TunnelTimeout <= 0 {
			c.Backends[i].TunnelTimeout = DefaultTunnelTimeout
		}
	}
	for i := range c.Frontends {
		if len(c.Frontends[i].Routes) == 0 {
			c.Frontends[i].Routes = nil
		}
	}
	for i := range c.Backends {
		if len(c.Backends[i].Servers) == 0 {
			c.Backends[i].Servers = nil
		}
	}
	return c
}
