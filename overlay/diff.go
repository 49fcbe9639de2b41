package overlay

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Route is a route to a peer subnet through the WireGuard interface, with
// the preferred source address (this host's gateway address on its
// container bridge, when that exists) so that replies come back through the
// tunnel.
type Route struct {
	Dst netip.Prefix
	Src netip.Addr
}

func (r Route) String() string {
	if r.Src.IsValid() {
		return r.Dst.String() + " src " + r.Src.String()
	}
	return r.Dst.String()
}

// Actual is what the kernel (or wireguard-go) has now.
type Actual struct {
	Device *wgtypes.Device
	Routes []Route // routes on the interface with drover's protocol
}

// DeviceSpec is the device-level configuration drover owns.
type DeviceSpec struct {
	PrivateKey wgtypes.Key
	ListenPort int
}

// Plan is the smallest change from actual to desired.
type Plan struct {
	Device   wgtypes.Config // peers to add, update or remove; never ReplacePeers
	RouteAdd []Route        // routes to add or replace
	RouteDel []Route
	Lines    []string // what the plan does, one line per change
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Lines) == 0 }

func (p Plan) String() string {
	if p.Empty() {
		return "no change"
	}
	return strings.Join(p.Lines, "; ")
}

// Diff compares actual with desired and returns the per-peer delta. prev is
// the state last applied: an endpoint is set when a peer is new to the
// device, has none, or its published endpoint changed since prev — never
// merely because the peer roamed, and not after a restart (no prev) over
// the endpoint the device has. src is the route source address (may be invalid). It is pure.
func Diff(actual Actual, spec DeviceSpec, prev, desired State, src netip.Addr) Plan {
	var p Plan
	have := map[wgtypes.Key]wgtypes.Peer{}
	if d := actual.Device; d != nil {
		if d.PrivateKey != spec.PrivateKey {
			k := spec.PrivateKey
			p.Device.PrivateKey = &k
			p.Lines = append(p.Lines, "set private key")
		}
		if spec.ListenPort != 0 && d.ListenPort != spec.ListenPort {
			lp := spec.ListenPort
			p.Device.ListenPort = &lp
			p.Lines = append(p.Lines, fmt.Sprintf("set listen port %d", lp))
		}
		for _, peer := range d.Peers {
			have[peer.PublicKey] = peer
		}
	}
	for _, key := range sortedPeerKeys(desired) {
		want := desired.Peers[key]
		cur, exists := have[key]
		pc := wgtypes.PeerConfig{PublicKey: key, UpdateOnly: exists}
		var what []string
		if !exists || !sameAllowed(cur.AllowedIPs, want.Subnet) {
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = []net.IPNet{ipNet(want.Subnet)}
			what = append(what, "allowed-ips "+want.Subnet.String())
		}
		if want.Endpoint.IsValid() {
			// Only a change of the published endpoint since the last pass
			// overrides the device's: without a last pass (a restart) the
			// device's endpoint may be one WireGuard roamed to, and it works.
			before, known := prev.Peers[key]
			published := known && before.Endpoint != want.Endpoint
			if !exists || cur.Endpoint == nil || published && !sameEndpoint(cur.Endpoint, want.Endpoint) {
				pc.Endpoint = net.UDPAddrFromAddrPort(want.Endpoint)
				what = append(what, "endpoint "+want.Endpoint.String())
			}
		}
		if !exists || cur.PersistentKeepaliveInterval != want.Keepalive {
			ka := want.Keepalive
			pc.PersistentKeepaliveInterval = &ka
			what = append(what, "keepalive "+want.Keepalive.String())
		}
		if len(what) == 0 {
			continue
		}
		verb := "update"
		if !exists {
			verb = "add"
		}
		p.Device.Peers = append(p.Device.Peers, pc)
		p.Lines = append(p.Lines, fmt.Sprintf("%s peer %s (%s): %s", verb, want.Name, shortKey(key), strings.Join(what, ", ")))
	}
	var gone []wgtypes.Key
	for key := range have {
		if _, ok := desired.Peers[key]; !ok {
			gone = append(gone, key)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].String() < gone[j].String() })
	for _, key := range gone {
		p.Device.Peers = append(p.Device.Peers, wgtypes.PeerConfig{PublicKey: key, Remove: true})
		p.Lines = append(p.Lines, fmt.Sprintf("remove peer %s", shortKey(key)))
	}
	p.RouteAdd, p.RouteDel = diffRoutes(actual.Routes, desired, src)
	for _, r := range p.RouteAdd {
		p.Lines = append(p.Lines, "route add "+r.String())
	}
	for _, r := range p.RouteDel {
		p.Lines = append(p.Lines, "route del "+r.String())
	}
	return p
}

func diffRoutes(have []Route, desired State, src netip.Addr) (add, del []Route) {
	cur := map[netip.Prefix]Route{}
	for _, r := range have {
		cur[r.Dst] = r
	}
	want := map[netip.Prefix]bool{}
	for _, dst := range desired.Routes() {
		want[dst] = true
		r := Route{Dst: dst, Src: src}
		if c, ok := cur[dst]; !ok || c.Src != src {
			add = append(add, r)
		}
	}
	for _, r := range have {
		if !want[r.Dst] {
			del = append(del, r)
		}
	}
	sort.Slice(del, func(i, j int) bool { return del[i].Dst.Addr().Less(del[j].Dst.Addr()) })
	return add, del
}

func sortedPeerKeys(s State) []wgtypes.Key {
	keys := make([]wgtypes.Key, 0, len(s.Peers))
	for k := range s.Peers {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return s.Peers[keys[i]].Subnet.Addr().Less(s.Peers[keys[j]].Subnet.Addr()) })
	return keys
}

func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func sameAllowed(have []net.IPNet, want netip.Prefix) bool {
	if len(have) != 1 {
		return false
	}
	ones, _ := have[0].Mask.Size()
	a, ok := netip.AddrFromSlice(have[0].IP)
	return ok && netip.PrefixFrom(a.Unmap(), ones) == want
}

func sameEndpoint(have *net.UDPAddr, want netip.AddrPort) bool {
	return have != nil && have.AddrPort().Addr().Unmap() == want.Addr() && have.AddrPort().Port() == want.Port()
}

// Keepalive is the default persistent keepalive: it keeps NAT mappings and
// stateful firewalls open and makes a dead peer visible within seconds.
const Keepalive = 25 * time.Second
