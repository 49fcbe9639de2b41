package lb

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/contract"
)

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
				if set, reason := settingsOf(opt, in.Meta); s != nil && reason == "" && s.set == set &&
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
			if s == nil {
				// Valid settings that set none: the origin check refuses
				// every instance of this service that has them. Say why
				// as for any instance: an unsafe address first, then the
				// origin.
				if srv, ps := serverOf(name, in, own); srv.Addr == "" {
					probs = append(probs, ps...)
				} else if why := origins.refuse(in, opt.Allow); why != "" {
					probs = append(probs, Problem{name, in.ID, why + "; instance left out"})
				}
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
