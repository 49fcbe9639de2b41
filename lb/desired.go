package lb

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/contract"
)

// Options tune Desired. Zero fields take their defaults.
type Options struct {
	HTTPPort       int    // port of HTTP services without lb_port (default 80)
	HTTPSPort      int    // port of the HTTPS frontend of lb_tls services (default 443)
	SlotsMin       int    // smallest server-slot pool per backend (default 8)
	DefaultBalance string // balance of services without lb_balance (default "roundrobin")
	// Own are the lb host's own addresses: never proxied.
	Own []netip.Addr
	// Allow are the networks whose instances are proxied although no
	// drover agent registered them (--lb-allow).
	Allow []netip.Prefix
	// TunnelTimeout is the idle timeout of upgraded (WebSocket) and tcp
	// connections of services that set none (default 1h).
	TunnelTimeout time.Duration
	// Edge are the frontend-wide settings, copied into State.Edge.
	Edge Edge
	// Unbindable are ports HAProxy cannot bind on this host (taken by
	// another program), with why: services claiming them are left out, so
	// that every other change still reloads.
	Unbindable map[int]string
}

// Edge are the settings every frontend shares.
type Edge struct {
	// TrustedProxies are the previous hops whose X-Forwarded-* headers
	// are kept (appended to); from anyone else they are replaced.
	TrustedProxies []netip.Prefix
	// AcceptProxy makes every frontend expect the PROXY protocol (an lb
	// host behind an L4 balancer).
	AcceptProxy bool
	// HardStopAfter bounds how long an old HAProxy worker keeps its
	// connections after a reload (default 15m).
	HardStopAfter time.Duration
	// MaxReloads is HAProxy's mworker-max-reloads: a worker that has lived
	// through more reloads is stopped, its connections cut. 0 is
	// MaxReloadsFor(HardStopAfter, 2s).
	MaxReloads int
}

// Bounds of Edge.MaxReloads.
const (
	minMaxReloads = 50
	maxMaxReloads = 1000
)

// MaxReloadsFor is the mworker-max-reloads that lets a connection live
// until hard-stop-after however often drover reloads: one reload per
// reload interval at most, so hardStop/interval reloads (plus one), within
// 50..1000. Old workers exist only while they hold connections, so a higher
// bound costs memory only when long connections meet frequent reloads.
func MaxReloadsFor(hardStop, interval time.Duration) int {
	if hardStop <= 0 {
		hardStop = DefaultHardStopAfter
	}
	if interval <= 0 {
		interval = 2 * time.Second
	}
	n := int((hardStop+interval-1)/interval) + 1
	return max(minMaxReloads, min(maxMaxReloads, n))
}

func (o Options) withDefaults() Options {
	if o.HTTPPort <= 0 {
		o.HTTPPort = 80
	}
	if o.HTTPSPort <= 0 {
		o.HTTPSPort = 443
	}
	if o.SlotsMin <= 0 {
		o.SlotsMin = 8
	}
	if o.DefaultBalance == "" {
		o.DefaultBalance = "roundrobin"
	}
	if o.TunnelTimeout <= 0 {
		o.TunnelTimeout = DefaultTunnelTimeout
	}
	if o.Edge.HardStopAfter <= 0 {
		o.Edge.HardStopAfter = DefaultHardStopAfter
	}
	if o.Edge.MaxReloads <= 0 {
		o.Edge.MaxReloads = MaxReloadsFor(o.Edge.HardStopAfter, 0)
	}
	return o
}

// Defaults of Options.
const (
	DefaultTunnelTimeout = time.Hour
	DefaultHardStopAfter = 15 * time.Minute
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

// DefaultCheck is the check of a server whose instance carries no check_*
// Meta.
var DefaultCheck = discovery.Check{Kind: "tcp", Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}

const maxWeight = 256

// svcSettings are the settings all instances of a service must agree on.
type svcSettings struct {
	Mode, Host, Path, Balance string
	Port                      int
	CheckKind, CheckPath      string
	Sticky                    bool
	ProxyProtocol             string
	TunnelTimeout             time.Duration
	TLS                       bool
	Redirect                  int
	HSTS                      time.Duration
}

// Desired computes the HAProxy state for the given services (service name →
// its instances, in any order). It is pure and deterministic.
//
// Only passing instances with Meta lb_mode take part. A conflict hurts only
// the newcomer, "first" meaning the lowest Consul CreateIndex (then the
// lower ID or name):
//   - a service's settings (mode, port, host, path, balance, check kind and
//     path) are those of its first instance with valid settings; a later
//     instance that disagrees, or carries an invalid setting, is left out
//     alone with a Problem;
//   - a port, a route (host and path) or a backend name belongs to the
//     service that claimed it first (the age of a service is that of its
//     first instance); later claimants are left out whole with a Problem.
//     An http port and a tcp port are one port: whichever mode came first
//     keeps it.
//
// Only drover's instances are proxied, and never the lb host itself: when
// services holds the drover-node records (key discovery.NodeService, as the
// agent's source always gives them), an instance must name a drover node
// with a record from the same Consul node and an address in that node's
// subnet (or the host's own address, for a published port), unless its
// address is in Options.Allow. Loopback, link-local, multicast and
// Options.Own addresses are refused whatever else holds.
//
// An invalid weight or check value takes its default with a Problem.
func Desired(opt Options, services map[string][]discovery.Instance) (State, []Problem) {
	opt = opt.withDefaults()
	var probs []Problem
	type svc struct {
		name    string
		set     svcSettings
		servers []Server
		first   discovery.Instance // the instance that set the settings
	}
	var svcs []*svc

	names := make([]string, 0, len(services))
	for n := range services {
		if n != discovery.NodeService {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	own := map[netip.Addr]bool{}
	for _, a := range opt.Own {
		own[a.Unmap()] = true
	}
	records, checkOrigin := services[discovery.NodeService]
	origins := originsOf(records)

	for _, name := range names {
		insts := append([]discovery.Instance(nil), services[name]...)
		sort.Slice(insts, func(i, j int) bool { return earlier(insts[i], insts[j]) })
		var (
			s        *svc
			srvNames = map[string]bool{}
			addrs    = map[string]bool{}
		)
		// The settings are the first valid instance's, whatever its
		// health, so that one instance going critical does not hand the
		// service to a newcomer's settings. An instance the origin check
		// refuses never sets them (it could claim a route while critical).
		for _, in := range insts {
			if !contract.AsksForLB(in.Meta) {
				continue
			}
			if checkOrigin && origins.refuse(in, opt.Allow) != "" {
				continue
			}
			if set, reason := settingsOf(opt, in.Meta); reason == "" {
				s = &svc{name: name, set: set, first: in}
				break
			}
		}
		failing := false // an instance that would serve but for its health
		for _, in := range insts {
			if !contract.AsksForLB(in.Meta) {
				continue
			}
			if in.Health != "passing" {
				if set, reason := settingsOf(opt, in.Meta); reason == "" && s.set == set &&
					(!checkOrigin || origins.refuse(in, opt.Allow) == "") {
					failing = true
				}
				continue
			}
			set, reason := settingsOf(opt, in.Meta)
			if reason != "" {
				probs = append(probs, Problem{name, in.ID, reason + "; instance left out"})
				continue
			}
			if s.set != set {
				probs = append(probs, Problem{name, in.ID, fmt.Sprintf("lb settings %s disagree with the service's (%s, from instance %s, registered first); instance left out", set, s.set, s.first.ID)})
				continue
			}
			srv, ps := serverOf(name, in, own)
			if srv.Addr != "" && checkOrigin {
				if why := origins.refuse(in, opt.Allow); why != "" {
					probs = append(probs, Problem{name, in.ID, why + "; instance left out"})
					continue
				}
			}
			probs = append(probs, ps...)
			if srv.Addr == "" {
				continue
			}
			if addrs[srv.Addr] {
				probs = append(probs, Problem{name, in.ID, "address " + srv.Addr + " is already used by another instance; instance left out"})
				continue
			}
			if srvNames[srv.Name] || isSlotName(srv.Name) {
				srv.Name = srv.Name + "_" + shortHash(in.ID)
				if srvNames[srv.Name] {
					probs = append(probs, Problem{name, in.ID, "server name " + srv.Name + " collides; instance left out"})
					continue
				}
			}
			srvNames[srv.Name] = true
			addrs[srv.Addr] = true
			s.servers = append(s.servers, srv)
		}
		// A service whose instances are registered but none passing keeps
		// its frontend and backend, with no server: its instances failing
		// (a lossy link, a host's Consul agent failing) is a runtime change
		// (slots drained), never a reload, and their return is one too.
		// A service whose instances are gone from Consul, or all refused,
		// leaves.
		if s == nil || len(s.servers) == 0 && !failing {
			continue
		}
		svcs = append(svcs, s)
	}

	// Backend names, ports and routes go to the first claimant: services
	// are taken oldest first, and each keeps what it finds free.
	sort.SliceStable(svcs, func(i, j int) bool { return earlier(svcs[i].first, svcs[j].first) })
	usedBackend := map[string]string{} // backend name → service
	ports := map[int]*portUse{}
	var kept []*svc
	for _, s := range svcs {
		be := sanitize(s.name)
		if other, ok := usedBackend[be]; ok {
			probs = append(probs, Problem{s.name, "", fmt.Sprintf("backend name %s is taken by service %s (registered first); service left out", be, other)})
			continue
		}
		// A TLS service claims its route on the HTTPS port as well.
		claims := []claim{{s.set.Port, s.set.Mode}}
		if s.set.TLS {
			claims = append(claims, claim{opt.HTTPSPort, "https"})
		}
		why := ""
		for _, c := range claims {
			if e, ok := opt.Unbindable[c.port]; ok {
				why = fmt.Sprintf("port %d cannot be bound on this host (%s); service left out", c.port, e)
				break
			}
		}
		if why == "" {
			why = claimable(ports, claims, [2]string{s.set.Host, s.set.Path})
		}
		if why != "" {
			probs = append(probs, Problem{s.name, "", why})
			continue
		}
		for _, c := range claims {
			pu := ports[c.port]
			if pu == nil {
				pu = &portUse{mode: c.mode, owner: s.name, route: map[[2]string]string{}}
				ports[c.port] = pu
			}
			pu.route[[2]string{s.set.Host, s.set.Path}] = s.name
		}
		usedBackend[be] = s.name
		kept = append(kept, s)
	}
	svcs = kept

	st := State{Edge: opt.Edge}
	st.Edge.TrustedProxies = append([]netip.Prefix(nil), opt.Edge.TrustedProxies...)
	fes := map[int]*Frontend{}
	for _, s := range svcs {
		be := sanitize(s.name)
		sort.Slice(s.servers, func(i, j int) bool { return s.servers[i].Name < s.servers[j].Name })
		st.Backends = append(st.Backends, Backend{
			Name: be, Mode: s.set.Mode, Balance: s.set.Balance,
			Sticky: s.set.Sticky, ProxyProtocol: s.set.ProxyProtocol, TunnelTimeout: s.set.TunnelTimeout, HSTS: s.set.HSTS,
			Servers: s.servers, Slots: slotsFor(opt.SlotsMin, len(s.servers)),
		})
		if len(s.servers) == 0 {
			st.Backends[len(st.Backends)-1].Check, _ = contract.DecodeCheck(s.first.Meta, DefaultCheck)
		}
		fe := fes[s.set.Port]
		if fe == nil {
			fe = &Frontend{Name: fmt.Sprintf("%s_%d", s.set.Mode, s.set.Port), Mode: s.set.Mode, Port: s.set.Port}
			fes[s.set.Port] = fe
		}
		if s.set.Mode == "tcp" {
			fe.DefaultBackend = be
		} else {
			fe.Routes = append(fe.Routes, Route{Host: s.set.Host, PathPrefix: s.set.Path, Backend: be, Redirect: s.set.Redirect})
		}
		if s.set.TLS {
			fe := fes[opt.HTTPSPort]
			if fe == nil {
				fe = &Frontend{Name: fmt.Sprintf("https_%d", opt.HTTPSPort), Mode: "http", TLS: true, Port: opt.HTTPSPort}
				fes[opt.HTTPSPort] = fe
			}
			fe.Routes = append(fe.Routes, Route{Host: s.set.Host, PathPrefix: s.set.Path, Backend: be})
		}
	}
	for _, fe := range fes {
		sortRoutes(fe.Routes)
		st.Frontends = append(st.Frontends, *fe)
	}
	sort.Slice(st.Frontends, func(i, j int) bool { return st.Frontends[i].Port < st.Frontends[j].Port })
	sort.Slice(st.Backends, func(i, j int) bool { return st.Backends[i].Name < st.Backends[j].Name })
	sort.SliceStable(probs, func(i, j int) bool {
		a, b := probs[i], probs[j]
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.Instance != b.Instance {
			return a.Instance < b.Instance
		}
		return a.Reason < b.Reason
	})
	return st, probs
}

// portUse is who holds a port: its mode ("http", "https" or "tcp"), the
// service that claimed it first, and for http(s) the routes by service.
type portUse struct {
	mode  string
	owner string
	route map[[2]string]string
}

// claim is one port a service wants, in a mode.
type claim struct {
	port int
	mode string
}

// claimable says why s cannot have every one of claims, "" when it can:
// a port belongs to the mode that took it first, a tcp port to one
// service, an http(s) route to one service.
func claimable(ports map[int]*portUse, claims []claim, k [2]string) string {
	for _, c := range claims {
		pu := ports[c.port]
		switch {
		case pu == nil:
		case pu.mode == "tcp" && c.mode == "tcp":
			return fmt.Sprintf("tcp port %d is taken by service %s (registered first); service left out", c.port, pu.owner)
		case pu.mode != c.mode:
			return fmt.Sprintf("port %d is the %s frontend of service %s (registered first); %s service left out", c.port, pu.mode, pu.owner, c.mode)
		default:
			if other, ok := pu.route[k]; ok {
				return fmt.Sprintf("route host %q path %q on port %d is taken by service %s (registered first); service left out", k[0], k[1], c.port, other)
			}
		}
	}
	return ""
}

// origins are the live drover-node records by drover node name.
type origins map[string][]discovery.Node

func originsOf(records []discovery.Instance) origins {
	o := origins{}
	for _, n := range discovery.NodesFromInstances(records) {
		if n.Name != "" {
			o[n.Name] = append(o[n.Name], n)
		}
	}
	return o
}

// refuse says why in may not be proxied, "" when it may: it is inside an
// allowed network, or the drover agent it names (Meta drover_node) has a
// drover-node record registered by the same Consul node, and its address
// is in that agent's container subnet or is that host's own address (a
// published port). A record's health does not matter: containers keep
// serving while their host's drover is down.
func (o origins) refuse(in discovery.Instance, allow []netip.Prefix) string {
	ip, err := netip.ParseAddr(in.Address)
	if err != nil {
		return "" // serverOf says why
	}
	ip = ip.Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return ""
		}
	}
	name := in.Meta[discovery.MetaNode]
	if name == "" {
		return "not registered by a drover agent (no " + discovery.MetaNode + " meta) and not in --lb-allow"
	}
	recs := o[name]
	if len(recs) == 0 {
		return fmt.Sprintf("drover node %q has no %s record, and the address is not in --lb-allow", name, discovery.NodeService)
	}
	for _, r := range recs {
		if r.ConsulNode != in.Node {
			continue
		}
		if r.Subnet.IsValid() && r.Subnet.Contains(ip) || r.Endpoint.IsValid() && r.Endpoint.Addr().Unmap() == ip {
			return ""
		}
		return fmt.Sprintf("address %s is outside drover node %q's subnet %s, and not in --lb-allow", ip, name, r.Subnet)
	}
	return fmt.Sprintf("registered on Consul node %q, but drover node %q runs on %q; not in --lb-allow", in.Node, name, recs[0].ConsulNode)
}

// earlier reports whether a was registered before b: lower CreateIndex,
// then lower ID (for registrations Consul did not number, as in tests).
func earlier(a, b discovery.Instance) bool {
	if a.CreateIndex != b.CreateIndex {
		return a.CreateIndex < b.CreateIndex
	}
	if a.ID != b.ID {
		return a.ID < b.ID
	}
	return a.Service < b.Service
}

func (s svcSettings) String() string {
	out := fmt.Sprintf("mode=%s port=%d host=%q path=%q balance=%s check=%s %q", s.Mode, s.Port, s.Host, s.Path, s.Balance, s.CheckKind, s.CheckPath)
	if s.Sticky {
		out += " sticky"
	}
	if s.ProxyProtocol != "" {
		out += " proxy-protocol=" + s.ProxyProtocol
	}
	return out + " tunnel=" + fmtDur(s.TunnelTimeout)
}

// sortRoutes orders routes most specific first: longer host, then longer
// path, then host and path in byte order.
func sortRoutes(rs []Route) {
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if len(a.Host) != len(b.Host) {
			return len(a.Host) > len(b.Host)
		}
		if len(a.PathPrefix) != len(b.PathPrefix) {
			return len(a.PathPrefix) > len(b.PathPrefix)
		}
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		return a.PathPrefix < b.PathPrefix
	})
}

// slotsFor is the smallest power of two ≥ max(min, n).
func slotsFor(min, n int) int {
	want := max(min, n, 1)
	s := 1
	for s < want {
		s <<= 1
	}
	return s
}

// settingsOf parses the service-level settings of one instance.
func settingsOf(opt Options, m map[string]string) (svcSettings, string) {
	var s svcSettings
	l, err := contract.DecodeLB(m)
	if err != nil {
		return s, err.Error()
	}
	s.Mode, s.Host, s.Path, s.Port, s.Balance = l.Mode, l.Host, l.Path, l.Port, l.Balance
	s.Sticky, s.ProxyProtocol, s.TunnelTimeout = l.Sticky, l.ProxyProtocol, l.TunnelTimeout
	s.TLS, s.Redirect, s.HSTS = l.TLS, l.Redirect, l.HSTS
	if s.TunnelTimeout == 0 {
		s.TunnelTimeout = opt.TunnelTimeout
	}
	if s.Port == 0 {
		s.Port = opt.HTTPPort
	}
	if s.Balance == "" {
		s.Balance = opt.DefaultBalance
	}
	switch s.Balance {
	case "roundrobin", "leastconn", "source":
	default:
		return s, fmt.Sprintf("balance %q: want roundrobin, leastconn or source", s.Balance)
	}
	// Check kind and path are per backend in HAProxy (option httpchk).
	if s.CheckKind, s.CheckPath, err = contract.DecodeCheckKind(m, DefaultCheck); err != nil {
		return s, err.Error()
	}
	return s, ""
}

// serverOf builds the server of one instance. Its Addr is empty when the
// instance has no usable address (with a Problem).
func serverOf(service string, in discovery.Instance, own map[netip.Addr]bool) (Server, []Problem) {
	var probs []Problem
	bad := func(f string, a ...any) {
		probs = append(probs, Problem{service, in.ID, fmt.Sprintf(f, a...)})
	}
	srv := Server{Name: sanitize(in.ID), Weight: 100, Enabled: true}
	ip, err := netip.ParseAddr(in.Address)
	if err != nil || ip.Zone() != "" || in.Port < 1 || in.Port > 65535 {
		bad("address %q port %d: want an IP address and a port 1-65535; instance left out", in.Address, in.Port)
		return Server{}, probs
	}
	// HAProxy reads a server at 0.0.0.0 or :: as "connect to the client
	// connection's destination": the load balancer itself.
	if ip.Unmap().IsUnspecified() {
		bad("address %q: an unspecified address would make HAProxy connect back to itself; instance left out", in.Address)
		return Server{}, probs
	}
	// Loopback and link-local addresses are the lb host's own services
	// (its Consul API, a cloud's metadata endpoint at 169.254.169.254):
	// publishing them would hand them to anyone who can reach the lb.
	switch u := ip.Unmap(); {
	case u.IsLoopback():
		bad("address %q is a loopback address: the lb host's own services are never proxied; instance left out", in.Address)
		return Server{}, probs
	case u.IsLinkLocalUnicast() || u.IsLinkLocalMulticast():
		bad("address %q is link-local (metadata services live there): never proxied; instance left out", in.Address)
		return Server{}, probs
	case u.IsMulticast():
		bad("address %q is a multicast address; instance left out", in.Address)
		return Server{}, probs
	case own[u]:
		bad("address %q is one of the lb host's own addresses: its own services are never proxied; instance left out", in.Address)
		return Server{}, probs
	}
	srv.Addr = netip.AddrPortFrom(ip.Unmap(), uint16(in.Port)).String()
	if srv.Weight, err = contract.DecodeWeight(in.Meta, srv.Weight); err != nil {
		bad("%s", err)
	}
	c, errs := contract.DecodeCheck(in.Meta, DefaultCheck)
	for _, err := range errs {
		bad("%s", err)
	}
	srv.Check = c
	return srv, probs
}

// maxName bounds backend and server names: HAProxy's server-state-file
// lines and runtime-API commands are read into bounded buffers.
const maxName = 100

// sanitize replaces every character outside [A-Za-z0-9_.-] by "_"; a name
// longer than maxName keeps its first part and ends with a hash of the
// whole, so distinct long names stay distinct.
func sanitize(s string) string {
	if s == "" {
		return "_"
	}
	if len(s) > maxName {
		s = s[:maxName-9] + "_" + shortHash(s)
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// isSlotName reports whether n has the form of an empty slot's name
// ("slot<i>"), which a server must not take.
func isSlotName(n string) bool {
	d, ok := strings.CutPrefix(n, "slot")
	if !ok || d == "" {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
	}
	return true
}

func shortHash(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}

// fmtDur writes a duration the way haproxy.cfg takes it.
func fmtDur(d time.Duration) string { return contract.FormatDuration(d) }
