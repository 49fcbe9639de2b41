package overlay

import (
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/drover-net/drover/discovery"
)

// TestDesiredVanishedRecord covers a drover-node record that disappears
// from Consul (its host's Consul agent restarted): the peer is kept while
// its lease names it, removed at once when the lease goes.
func TestDesiredVanishedRecord(t *testing.T) {
	f := newDesiredFixture(t, "a", "b", "forger")
	cidr := pfx("10.42.0.0/16")
	ka := 25 * time.Second
	a := f.node("a", "10.42.1.0/24", "192.0.2.10:51820")
	b := f.node("b", "10.42.2.0/24", "192.0.2.11:51820")
	kept := func(n discovery.Node) Peer {
		p := f.peer(n, ka)
		p.Health = HealthAbsent
		return p
	}
	// rebuilt is a peer rebuilt from the device: no Consul node known.
	rebuilt := func(n discovery.Node) Peer {
		p := kept(n)
		p.ConsulNode = ""
		return p
	}
	prevAB := State{Peers: map[wgtypes.Key]Peer{f.keys["a"]: f.peer(a, ka), f.keys["b"]: f.peer(b, ka)}}
	// dev is a WireGuard device holding a and b as this host configured
	// them before its agent restarted (prev empty).
	dev := &wgtypes.Device{Peers: []wgtypes.Peer{
		{PublicKey: f.keys["a"], Endpoint: net.UDPAddrFromAddrPort(a.Endpoint), AllowedIPs: []net.IPNet{ipNet(a.Subnet)}},
		{PublicKey: f.keys["b"], Endpoint: net.UDPAddrFromAddrPort(b.Endpoint), AllowedIPs: []net.IPNet{ipNet(b.Subnet)}},
	}}
	// forged claims a's subnet with the forger's key; its lease names a.
	forged := f.node("forger", "10.42.1.0/24", "198.51.100.66:51820")
	forgedDev := &wgtypes.Device{Peers: []wgtypes.Peer{
		{PublicKey: f.keys["forger"], AllowedIPs: []net.IPNet{ipNet(a.Subnet)}},
		{PublicKey: f.keys["forger"], AllowedIPs: []net.IPNet{ipNet(pfx("10.42.9.0/24"))}},
	}}
	tests := []struct {
		name    string
		nodes   []discovery.Node
		leases  Leases
		prev    State
		dev     *wgtypes.Device
		expired map[string]bool
		want    []Peer
	}{
		{
			name:  "record vanished, lease present: kept with its last endpoint",
			nodes: []discovery.Node{a}, leases: leasesOf(a, b), prev: prevAB,
			want: []Peer{f.peer(a, ka), kept(b)},
		},
		{
			name:  "record vanished, lease deleted: removed at once",
			nodes: []discovery.Node{a}, leases: leasesOf(a), prev: prevAB,
			want: []Peer{f.peer(a, ka)},
		},
		{
			name:  "record vanished, lease now names another key: removed",
			nodes: []discovery.Node{a}, prev: prevAB,
			leases: Leases{a.Subnet: {Node: "a", PublicKey: a.PublicKey}, b.Subnet: {Node: "b", PublicKey: f.keys["forger"].String()}},
			want:   []Peer{f.peer(a, ka)},
		},
		{
			name:  "record vanished longer than the peer timeout: removed",
			nodes: []discovery.Node{a}, leases: leasesOf(a, b), prev: prevAB, expired: map[string]bool{"b": true},
			want: []Peer{f.peer(a, ka)},
		},
		{
			name:   "restart: every record vanished, rebuilt from the device",
			leases: leasesOf(a, b), dev: dev,
			want: []Peer{rebuilt(a), rebuilt(b)},
		},
		{
			name:  "restart: records back, device peers taken from the records",
			nodes: []discovery.Node{a, b}, leases: leasesOf(a, b), dev: dev,
			want: []Peer{f.peer(a, ka), f.peer(b, ka)},
		},
		{
			name:   "restart: a device peer without a matching lease is not rebuilt",
			leases: leasesOf(a), dev: dev,
			want: []Peer{rebuilt(a)},
		},
		{
			name:  "a forged record is refused and never remembered",
			nodes: []discovery.Node{forged}, leases: leasesOf(a), dev: forgedDev,
			want: nil,
		},
		{
			name:   "a vanished forged record leaves nothing behind",
			leases: leasesOf(a), dev: forgedDev,
			want: nil,
		},
		{
			name:   "a record with the remembered key under another name wins the check, not memory",
			nodes:  []discovery.Node{func() discovery.Node { n := f.node("b", "10.42.2.0/24", ""); n.Name = "other"; return n }()},
			leases: leasesOf(b), prev: prevAB,
			want: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Self: f.self, ClusterCIDR: cidr, Nodes: tc.nodes, Leases: tc.leases, Expired: tc.expired,
				Keepalive: ka, Remembered: Remembered(tc.prev, tc.dev, tc.leases, ka)}
			st, _ := Desired(in)
			got := map[wgtypes.Key]Peer{}
			for _, p := range tc.want {
				got[p.PublicKey] = p
			}
			if diff := cmp.Diff(got, st.Peers, netipEq); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAbsenceExpires tracks a vanished record on the monotonic clock: kept
// until the peer timeout, then expired; a record coming back resets it.
func TestAbsenceExpires(t *testing.T) {
	c := &Controller{opt: Options{PeerTimeout: time.Minute}, failingSince: map[string]time.Time{}}
	t0 := time.Now()
	absent := map[string]bool{"b": true}
	if got := c.expiredLocked(nil, absent, t0); got["b"] {
		t.Fatalf("expired at first absence")
	}
	if got := c.expiredLocked(nil, absent, t0.Add(59*time.Second)); got["b"] {
		t.Fatalf("expired before the timeout")
	}
	if got := c.expiredLocked(nil, absent, t0.Add(61*time.Second)); !got["b"] {
		t.Fatalf("not expired after the timeout")
	}
	back := []discovery.Node{{Name: "b", Health: "passing"}}
	c.expiredLocked(back, nil, t0.Add(62*time.Second))
	if got := c.expiredLocked(nil, absent, t0.Add(63*time.Second)); got["b"] {
		t.Fatalf("a record that came back did not reset the absence")
	}
}

// TestForgedRecordNeverRemembered chains two passes: a forged record
// refused in the first is not kept in the second, when it has vanished.
func TestForgedRecordNeverRemembered(t *testing.T) {
	f := newDesiredFixture(t, "a", "forger")
	ka := 25 * time.Second
	a := f.node("a", "10.42.1.0/24", "192.0.2.10:51820")
	forged := f.node("forger", "10.42.1.0/24", "198.51.100.66:51820")
	forged.Name = "a" // claims a's name and subnet with another key
	leases := leasesOf(a)
	in := Input{Self: f.self, ClusterCIDR: pfx("10.42.0.0/16"), Nodes: []discovery.Node{forged}, Leases: leases, Keepalive: ka}
	first, rej := Desired(in)
	if len(first.Peers) != 0 || len(rej) != 1 {
		t.Fatalf("forged record: peers %v, rejections %v", first, rej)
	}
	in.Nodes, in.Remembered = nil, Remembered(first, nil, leases, ka)
	if second, _ := Desired(in); len(second.Peers) != 0 {
		t.Fatalf("forged record remembered: %v", second)
	}
}
