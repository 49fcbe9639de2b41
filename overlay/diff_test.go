package overlay

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func newPrivateKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatalf("GeneratePrivateKey: %v", err)
	}
	return k
}

func udp(s string) *net.UDPAddr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

func ipnet(s string) net.IPNet { return ipNet(pfx(s)) }

func dur(d time.Duration) *time.Duration { return &d }

func state(peers ...Peer) State {
	s := State{Peers: map[wgtypes.Key]Peer{}}
	for _, p := range peers {
		s.Peers[p.PublicKey] = p
	}
	return s
}

// inSync is the device that state s gives once applied.
func inSync(spec DeviceSpec, s State) *wgtypes.Device {
	d := &wgtypes.Device{Name: "drover0", PrivateKey: spec.PrivateKey, PublicKey: spec.PrivateKey.PublicKey(), ListenPort: spec.ListenPort}
	for _, k := range sortedPeerKeys(s) {
		p := s.Peers[k]
		wp := wgtypes.Peer{PublicKey: k, AllowedIPs: []net.IPNet{ipNet(p.Subnet)}, PersistentKeepaliveInterval: p.Keepalive}
		if p.Endpoint.IsValid() {
			wp.Endpoint = net.UDPAddrFromAddrPort(p.Endpoint)
		}
		d.Peers = append(d.Peers, wp)
	}
	return d
}

func routesOf(s State, src netip.Addr) []Route {
	var out []Route
	for _, dst := range s.Routes() {
		out = append(out, Route{Dst: dst, Src: src})
	}
	return out
}

func TestDiff(t *testing.T) {
	spec := DeviceSpec{PrivateKey: newPrivateKey(t), ListenPort: 51820}
	src := netip.MustParseAddr("10.42.0.1")
	ka, kb, kc, kx := newPublicKey(t), newPublicKey(t), newPublicKey(t), newPublicKey(t)
	a := Peer{Name: "a", PublicKey: ka, Endpoint: netip.MustParseAddrPort("192.0.2.1:51820"), Subnet: pfx("10.42.1.0/24"), Keepalive: Keepalive}
	b := Peer{Name: "b", PublicKey: kb, Endpoint: netip.MustParseAddrPort("[2001:db8::2]:51820"), Subnet: pfx("10.42.2.0/24"), Keepalive: Keepalive}
	c := Peer{Name: "c", PublicKey: kc, Subnet: pfx("10.42.3.0/24"), Keepalive: Keepalive} // publishes no endpoint
	abc := state(a, b, c)

	withDevice := func(mut func(d *wgtypes.Device)) *wgtypes.Device {
		d := inSync(spec, abc)
		mut(d)
		return d
	}
	peerOf := func(d *wgtypes.Device, k wgtypes.Key) *wgtypes.Peer {
		for i := range d.Peers {
			if d.Peers[i].PublicKey == k {
				return &d.Peers[i]
			}
		}
		panic("no such peer")
	}
	moved := func(p Peer, ep string) Peer {
		p.Endpoint = netip.MustParseAddrPort(ep)
		return p
	}

	tests := []struct {
		name       string
		actual     Actual
		spec       DeviceSpec // zero: spec
		prev       State
		desired    State
		src        netip.Addr
		want       wgtypes.Config
		wantAdd    []Route
		wantDel    []Route
		wantLines  []string // substrings of Plan.Lines, in order; nil: do not check
		wantEmpty  bool
		onlyPeers  bool // compare only want.Peers (device-level fields unspecified)
		skipRoutes bool
	}{
		{
			name:    "empty device: add every peer and route",
			actual:  Actual{Device: inSync(spec, State{})},
			desired: abc,
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: ka, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{ipnet("10.42.1.0/24")}, Endpoint: udp("192.0.2.1:51820"), PersistentKeepaliveInterval: dur(Keepalive)},
				{PublicKey: kb, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{ipnet("10.42.2.0/24")}, Endpoint: udp("[2001:db8::2]:51820"), PersistentKeepaliveInterval: dur(Keepalive)},
				{PublicKey: kc, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{ipnet("10.42.3.0/24")}, PersistentKeepaliveInterval: dur(Keepalive)},
			}},
			wantAdd: []Route{{pfx("10.42.1.0/24"), src}, {pfx("10.42.2.0/24"), src}, {pfx("10.42.3.0/24"), src}},
			wantLines: []string{
				"add peer a (", "allowed-ips 10.42.1.0/24, endpoint 192.0.2.1:51820, keepalive 25s",
				"add peer b (", "add peer c (",
				"route add 10.42.1.0/24 src 10.42.0.1", "route add 10.42.2.0/24 src 10.42.0.1", "route add 10.42.3.0/24 src 10.42.0.1",
			},
		},
		{
			name:    "empty device without a route source",
			actual:  Actual{Device: inSync(spec, State{})},
			desired: state(a),
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: ka, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{ipnet("10.42.1.0/24")}, Endpoint: udp("192.0.2.1:51820"), PersistentKeepaliveInterval: dur(Keepalive)},
			}},
			wantAdd:   []Route{{Dst: pfx("10.42.1.0/24")}},
			wantLines: []string{"add peer a", "route add 10.42.1.0/24"},
		},
		{
			name:    "no device yet: add every peer",
			actual:  Actual{},
			desired: state(a),
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: ka, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{ipnet("10.42.1.0/24")}, Endpoint: udp("192.0.2.1:51820"), PersistentKeepaliveInterval: dur(Keepalive)},
			}},
			wantAdd:   []Route{{pfx("10.42.1.0/24"), src}},
			onlyPeers: true,
		},
		{
			name:      "identical: empty plan",
			actual:    Actual{Device: inSync(spec, abc), Routes: routesOf(abc, src)},
			prev:      abc,
			desired:   abc,
			src:       src,
			wantEmpty: true,
		},
		{
			name:      "identical after a restart (no prev)",
			actual:    Actual{Device: inSync(spec, abc), Routes: routesOf(abc, src)},
			desired:   abc,
			src:       src,
			wantEmpty: true,
		},
		{
			name:      "identical, nothing desired",
			actual:    Actual{Device: inSync(spec, State{})},
			desired:   State{},
			wantEmpty: true,
		},
		{
			name: "ipv4 allowed IP and endpoint in 16-byte form are the same",
			actual: Actual{Device: withDevice(func(d *wgtypes.Device) {
				p := peerOf(d, ka)
				p.AllowedIPs[0].IP = p.AllowedIPs[0].IP.To16()
				p.Endpoint.IP = p.Endpoint.IP.To16()
			}), Routes: routesOf(abc, src)},
			prev:      abc,
			desired:   abc,
			src:       src,
			wantEmpty: true,
		},
		{
			name:    "peer gone: remove it and its route",
			actual:  Actual{Device: inSync(spec, abc), Routes: routesOf(abc, src)},
			prev:    abc,
			desired: state(a, c),
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: kb, Remove: true},
			}},
			wantDel:   []Route{{pfx("10.42.2.0/24"), src}},
			wantLines: []string{"remove peer " + kb.String()[:8], "route del 10.42.2.0/24 src 10.42.0.1"},
		},
		{
			name:    "every peer gone",
			actual:  Actual{Device: inSync(spec, state(a, b)), Routes: routesOf(state(a, b), src)},
			prev:    state(a, b),
			desired: State{},
			src:     src,
			want: wgtypes.Config{Peers: func() []wgtypes.PeerConfig {
				// removals are sorted by key
				if ka.String() < kb.String() {
					return []wgtypes.PeerConfig{{PublicKey: ka, Remove: true}, {PublicKey: kb, Remove: true}}
				}
				return []wgtypes.PeerConfig{{PublicKey: kb, Remove: true}, {PublicKey: ka, Remove: true}}
			}()},
			wantDel: []Route{{pfx("10.42.1.0/24"), src}, {pfx("10.42.2.0/24"), src}},
		},
		{
			name:    "unknown peer and foreign route on the device are removed",
			actual:  Actual{Device: withDevice(func(d *wgtypes.Device) { d.Peers = append(d.Peers, wgtypes.Peer{PublicKey: kx}) }), Routes: append(routesOf(abc, src), Route{Dst: pfx("10.42.99.0/24")})},
			prev:    abc,
			desired: abc,
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: kx, Remove: true},
			}},
			wantDel: []Route{{Dst: pfx("10.42.99.0/24")}},
		},
		{
			name:    "roaming: published endpoint unchanged, actual differs: endpoint left alone",
			actual:  Actual{Device: withDevice(func(d *wgtypes.Device) { peerOf(d, ka).Endpoint = udp("198.51.100.7:40000") }), Routes: routesOf(abc, src)},
			prev:    abc,
			desired: abc,
			src:     src,
			// nothing else changed, so the plan is empty
			wantEmpty: true,
		},
		{
			name:    "published endpoint changed: endpoint set",
			actual:  Actual{Device: inSync(spec, abc), Routes: routesOf(abc, src)},
			prev:    abc,
			desired: state(moved(a, "192.0.2.100:51821"), b, c),
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: ka, UpdateOnly: true, Endpoint: udp("192.0.2.100:51821")},
			}},
			wantLines: []string{"update peer a (", "endpoint 192.0.2.100:51821"},
		},
		{
			name:    "published endpoint changed while the peer roamed: endpoint set",
			actual:  Actual{Device: withDevice(func(d *wgtypes.Device) { peerOf(d, ka).Endpoint = udp("198.51.100.7:40000") }), Routes: routesOf(abc, src)},
			prev:    abc,
			desired: state(moved(a, "192.0.2.100:51821"), b, c),
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: ka, UpdateOnly: true, Endpoint: udp("192.0.2.100:51821")},
			}},
		},
		{
			name:      "published endpoint changed but the device already has it",
			actual:    Actual{Device: withDevice(func(d *wgtypes.Device) { peerOf(d, ka).Endpoint = udp("192.0.2.100:51821") }), Routes: routesOf(abc, src)},
			prev:      abc,
			desired:   state(moved(a, "192.0.2.100:51821"), b, c),
			src:       src,
			wantEmpty: true,
		},
		{
			// Issue 12, defect 14: a restarted agent used to write the
			// record's endpoint over the one WireGuard learned by roaming,
			// cutting traffic until the peer sent again. With no prev it
			// cannot tell a roam from a change, and the device's endpoint is
			// the one that works (a peer that really moved reaches us and
			// WireGuard follows it).
			name:      "no prev (restart) and the peer roamed: the device's endpoint is kept",
			actual:    Actual{Device: withDevice(func(d *wgtypes.Device) { peerOf(d, ka).Endpoint = udp("198.51.100.7:40000") }), Routes: routesOf(abc, src)},
			desired:   abc,
			src:       src,
			wantEmpty: true,
		},
		{
			name:    "existing peer without an endpoint gets the published one",
			actual:  Actual{Device: withDevice(func(d *wgtypes.Device) { peerOf(d, kb).Endpoint = nil }), Routes: routesOf(abc, src)},
			prev:    abc,
			desired: abc,
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: kb, UpdateOnly: true, Endpoint: udp("[2001:db8::2]:51820")},
			}},
		},
		{
			name:      "peer that publishes no endpoint keeps the one it roamed to",
			actual:    Actual{Device: withDevice(func(d *wgtypes.Device) { peerOf(d, kc).Endpoint = udp("198.51.100.9:1234") }), Routes: routesOf(abc, src)},
			prev:      abc,
			desired:   abc,
			src:       src,
			wantEmpty: true,
		},
		{
			name:    "allowed IPs differ: replaced",
			actual:  Actual{Device: withDevice(func(d *wgtypes.Device) { peerOf(d, ka).AllowedIPs = []net.IPNet{ipnet("10.42.1.0/25")} }), Routes: routesOf(abc, src)},
			prev:    abc,
			desired: abc,
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: ka, UpdateOnly: true, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{ipnet("10.42.1.0/24")}},
			}},
			wantLines: []string{"update peer a (", "allowed-ips 10.42.1.0/24"},
		},
		{
			name: "extra allowed IPs: replaced",
			actual: Actual{Device: withDevice(func(d *wgtypes.Device) {
				p := peerOf(d, kb)
				p.AllowedIPs = append(p.AllowedIPs, ipnet("10.42.200.0/24"))
			}), Routes: routesOf(abc, src)},
			prev:    abc,
			desired: abc,
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: kb, UpdateOnly: true, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{ipnet("10.42.2.0/24")}},
			}},
		},
		{
			name:    "no allowed IPs: set",
			actual:  Actual{Device: withDevice(func(d *wgtypes.Device) { peerOf(d, kc).AllowedIPs = nil }), Routes: routesOf(abc, src)},
			prev:    abc,
			desired: abc,
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: kc, UpdateOnly: true, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{ipnet("10.42.3.0/24")}},
			}},
		},
		{
			name:    "keepalive differs",
			actual:  Actual{Device: withDevice(func(d *wgtypes.Device) { peerOf(d, ka).PersistentKeepaliveInterval = 0 }), Routes: routesOf(abc, src)},
			prev:    abc,
			desired: abc,
			src:     src,
			want: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: ka, UpdateOnly: true, PersistentKeepaliveInterval: dur(Keepalive)},
			}},
			wantLines: []string{"update peer a (", "keepalive 25s"},
		},
		{
			name:    "route source changed: routes re-added, none deleted",
			actual:  Actual{Device: inSync(spec, abc), Routes: routesOf(abc, netip.MustParseAddr("10.42.0.254"))},
			prev:    abc,
			desired: abc,
			src:     src,
			wantAdd: routesOf(abc, src),
		},
		{
			name:    "route source dropped",
			actual:  Actual{Device: inSync(spec, abc), Routes: routesOf(abc, src)},
			prev:    abc,
			desired: abc,
			wantAdd: routesOf(abc, netip.Addr{}),
		},
		{
			name:    "one route missing",
			actual:  Actual{Device: inSync(spec, abc), Routes: routesOf(state(a, c), src)},
			prev:    abc,
			desired: abc,
			src:     src,
			wantAdd: []Route{{pfx("10.42.2.0/24"), src}},
		},
		{
			name:      "private key mismatch",
			actual:    Actual{Device: withDevice(func(d *wgtypes.Device) { d.PrivateKey = newPrivateKey(t) }), Routes: routesOf(abc, src)},
			prev:      abc,
			desired:   abc,
			src:       src,
			want:      wgtypes.Config{PrivateKey: &spec.PrivateKey},
			wantLines: []string{"set private key"},
		},
		{
			name:      "listen port mismatch",
			actual:    Actual{Device: withDevice(func(d *wgtypes.Device) { d.ListenPort = 41414 }), Routes: routesOf(abc, src)},
			prev:      abc,
			desired:   abc,
			src:       src,
			want:      wgtypes.Config{ListenPort: func() *int { p := 51820; return &p }()},
			wantLines: []string{"set listen port 51820"},
		},
		{
			name:      "listen port not owned (0): left alone",
			actual:    Actual{Device: withDevice(func(d *wgtypes.Device) { d.ListenPort = 41414 }), Routes: routesOf(abc, src)},
			spec:      DeviceSpec{PrivateKey: spec.PrivateKey},
			prev:      abc,
			desired:   abc,
			src:       src,
			wantEmpty: true,
		},
		{
			name: "everything at once",
			actual: Actual{Device: withDevice(func(d *wgtypes.Device) {
				d.PrivateKey = newPrivateKey(t)
				d.ListenPort = 1
				peerOf(d, ka).PersistentKeepaliveInterval = time.Second
			}), Routes: routesOf(state(a, b), src)},
			prev:    state(a, b),
			desired: state(a, moved(c, "192.0.2.3:5")),
			src:     src,
			want: wgtypes.Config{
				PrivateKey: &spec.PrivateKey,
				ListenPort: func() *int { p := 51820; return &p }(),
				Peers: []wgtypes.PeerConfig{
					{PublicKey: ka, UpdateOnly: true, PersistentKeepaliveInterval: dur(Keepalive)},
					{PublicKey: kc, UpdateOnly: true, Endpoint: udp("192.0.2.3:5")},
					{PublicKey: kb, Remove: true},
				},
			},
			wantAdd: []Route{{pfx("10.42.3.0/24"), src}},
			wantDel: []Route{{pfx("10.42.2.0/24"), src}},
			wantLines: []string{
				"set private key", "set listen port 51820",
				"update peer a", "update peer c", "remove peer",
				"route add 10.42.3.0/24", "route del 10.42.2.0/24",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp := tc.spec
			if sp == (DeviceSpec{}) {
				sp = spec
			}
			got := Diff(tc.actual, sp, tc.prev, tc.desired, tc.src)
			if got.Device.ReplacePeers {
				t.Errorf("plan sets ReplacePeers")
			}
			if got.Empty() != tc.wantEmpty {
				t.Errorf("Empty() = %v, want %v; plan: %s", got.Empty(), tc.wantEmpty, got)
			}
			if tc.wantEmpty && got.String() != "no change" {
				t.Errorf("String() = %q, want \"no change\"", got.String())
			}
			gotDev, wantDev := got.Device, tc.want
			if tc.onlyPeers {
				gotDev, wantDev = wgtypes.Config{Peers: gotDev.Peers}, wgtypes.Config{Peers: wantDev.Peers}
			}
			if diff := cmp.Diff(wantDev, gotDev); diff != "" {
				t.Errorf("device config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAdd, got.RouteAdd, netipEq); diff != "" {
				t.Errorf("RouteAdd (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantDel, got.RouteDel, netipEq); diff != "" {
				t.Errorf("RouteDel (-want +got):\n%s", diff)
			}
			if tc.wantLines != nil {
				all := strings.Join(got.Lines, "\n")
				rest := all
				for _, w := range tc.wantLines {
					i := strings.Index(rest, w)
					if i < 0 {
						t.Errorf("plan lines do not contain %q (in order):\n%s", w, all)
						break
					}
					rest = rest[i+len(w):]
				}
			}
			// Applying what the plan says gives the desired device: diffing
			// again against it, with the plan's prev being desired, is empty.
			if !tc.onlyPeers {
				again := Diff(Actual{Device: inSync(sp, tc.desired), Routes: routesOf(tc.desired, tc.src)}, sp, tc.desired, tc.desired, tc.src)
				if !again.Empty() {
					t.Errorf("diff of the desired state against itself: %s", again)
				}
			}
		})
	}
}

func TestRouteString(t *testing.T) {
	tests := []struct {
		name string
		r    Route
		want string
	}{
		{"with source", Route{Dst: pfx("10.42.1.0/24"), Src: netip.MustParseAddr("10.42.0.1")}, "10.42.1.0/24 src 10.42.0.1"},
		{"without source", Route{Dst: pfx("10.42.1.0/24")}, "10.42.1.0/24"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}
