package overlay

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/drover-net/drover/discovery"
)

// netipEq lets cmp compare net/netip values, whose fields are unexported.
var netipEq = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{})

func newPublicKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatalf("GeneratePrivateKey: %v", err)
	}
	return k.PublicKey()
}

// desiredFixture is a small cluster: self plus named, keyed hosts.
type desiredFixture struct {
	self Self
	keys map[string]wgtypes.Key
}

func newDesiredFixture(t *testing.T, names ...string) desiredFixture {
	f := desiredFixture{
		self: Self{Name: "self", PublicKey: newPublicKey(t), Subnet: pfx("10.42.0.0/24")},
		keys: map[string]wgtypes.Key{},
	}
	for _, n := range names {
		f.keys[n] = newPublicKey(t)
	}
	return f
}

// node is a well-formed record of host name with its own key.
func (f desiredFixture) node(name, subnet, endpoint string) discovery.Node {
	n := discovery.Node{
		Name:       name,
		ConsulNode: "consul-" + name,
		PublicKey:  f.keys[name].String(),
		Subnet:     pfx(subnet),
		Health:     "passing",
		Version:    "test",
	}
	if endpoint != "" {
		n.Endpoint = netip.MustParseAddrPort(endpoint)
	}
	return n
}

// leasesOf leases every node's subnet to it (node and key).
func leasesOf(nodes ...discovery.Node) Leases {
	l := Leases{}
	for _, n := range nodes {
		l[n.Subnet] = Lease{Node: n.Name, PublicKey: n.PublicKey}
	}
	return l
}

func (f desiredFixture) peer(n discovery.Node, keepalive time.Duration) Peer {
	return Peer{
		Name:       n.Name,
		PublicKey:  f.keys[n.Name],
		Endpoint:   n.Endpoint,
		Subnet:     n.Subnet,
		Keepalive:  keepalive,
		Health:     n.Health,
		ConsulNode: n.ConsulNode,
	}
}

func TestDesired(t *testing.T) {
	f := newDesiredFixture(t, "a", "b", "c", "d", "e", "wide")
	cidr := pfx("10.42.0.0/16")
	selfNode := discovery.Node{Name: "self", ConsulNode: "consul-self", PublicKey: f.self.PublicKey.String(),
		Subnet: f.self.Subnet, Endpoint: netip.MustParseAddrPort("192.0.2.1:51820"), Health: "passing"}
	a := f.node("a", "10.42.1.0/24", "192.0.2.10:51820")
	b := f.node("b", "10.42.2.0/24", "[2001:db8::2]:51820")
	c := f.node("c", "10.42.3.0/24", "")

	// rejection is what a test expects of one rejected record.
	type rejection struct {
		node   string
		reason string // substring of Rejection.Reason
	}
	tests := []struct {
		name       string
		nodes      []discovery.Node
		leases     Leases // nil: leasesOf(nodes)
		expired    map[string]bool
		noSelfNet  bool // self has no subnet yet
		subnetBits int  // Input.SubnetBits (0: unchecked)
		want       []Peer
		wantRej    []rejection // in the order Desired returns them
	}{
		{
			name:  "no nodes",
			nodes: nil,
		},
		{
			name:  "well-formed leased peers",
			nodes: []discovery.Node{a, b, c},
			want:  []Peer{f.peer(a, 25*time.Second), f.peer(b, 25*time.Second), f.peer(c, 25*time.Second)},
		},
		{
			name:  "self is skipped",
			nodes: []discovery.Node{selfNode, a},
			want:  []Peer{f.peer(a, 25*time.Second)},
		},
		{
			name: "a record with self's name is skipped whatever it says",
			nodes: []discovery.Node{a, func() discovery.Node {
				n := f.node("b", "10.99.0.0/24", "")
				n.Name = "self"
				return n
			}()},
			want: []Peer{f.peer(a, 25*time.Second)},
		},
		{
			name: "failing node stays a peer",
			nodes: []discovery.Node{a, func() discovery.Node {
				n := b
				n.Health = "critical"
				return n
			}()},
			want: []Peer{f.peer(a, 25*time.Second), func() Peer {
				p := f.peer(b, 25*time.Second)
				p.Health = "critical"
				return p
			}()},
		},
		{
			name:    "expired node is dropped without a rejection",
			nodes:   []discovery.Node{a, b},
			expired: map[string]bool{"b": true, "nobody": true},
			want:    []Peer{f.peer(a, 25*time.Second)},
		},
		{
			name:    "expired node frees its subnet for an overlapping peer",
			nodes:   []discovery.Node{a, f.node("d", "10.42.1.128/25", "")},
			leases:  leasesOf(a, f.node("d", "10.42.1.128/25", "")),
			expired: map[string]bool{"a": true},
			want:    []Peer{f.peer(f.node("d", "10.42.1.128/25", ""), 25*time.Second)},
		},
		{
			name: "malformed record",
			nodes: []discovery.Node{a, func() discovery.Node {
				n := b
				n.Endpoint = netip.AddrPort{}
				n.Problem = `wg_endpoint "nope": bad`
				return n
			}()},
			want:    []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{{"b", `malformed record: wg_endpoint "nope": bad`}},
		},
		{
			name: "bad key",
			nodes: []discovery.Node{a, func() discovery.Node {
				n := b
				n.PublicKey = "not-a-key"
				return n
			}()},
			leases:  leasesOf(a, b),
			want:    []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{{"b", `public key "not-a-key"`}},
		},
		{
			name: "empty key",
			nodes: []discovery.Node{a, func() discovery.Node {
				n := b
				n.PublicKey = ""
				return n
			}()},
			leases:  leasesOf(a, b),
			want:    []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{{"b", `public key ""`}},
		},
		{
			name: "self's key",
			nodes: []discovery.Node{a, func() discovery.Node {
				n := b
				n.PublicKey = f.self.PublicKey.String()
				return n
			}()},
			want:    []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{{"b", "uses this host's public key"}},
		},
		{
			// Issue 12, defect 3: a record copying another node's key used
			// to get both refused; the incumbent keeps working.
			name: "duplicated key: the record with the older lease keeps it",
			nodes: []discovery.Node{a, b, func() discovery.Node {
				n := c
				n.PublicKey = b.PublicKey
				return n
			}()},
			leases: func() Leases {
				l := leasesOf(a, b)
				l[c.Subnet] = Lease{Node: "c", PublicKey: b.PublicKey, Index: 50}
				bl := l[b.Subnet]
				bl.Index = 10
				l[b.Subnet] = bl
				return l
			}(),
			want:    []Peer{f.peer(a, 25*time.Second), f.peer(b, 25*time.Second)},
			wantRej: []rejection{{"c", `belongs to node "b", whose lease is older`}},
		},
		{
			name: "duplicated key: the older lease wins whatever the names",
			nodes: []discovery.Node{a, b, func() discovery.Node {
				n := c
				n.PublicKey = b.PublicKey
				return n
			}()},
			leases: func() Leases {
				l := leasesOf(a, b)
				l[c.Subnet] = Lease{Node: "c", PublicKey: b.PublicKey, Index: 5}
				bl := l[b.Subnet]
				bl.Index = 10
				l[b.Subnet] = bl
				return l
			}(),
			want: []Peer{f.peer(a, 25*time.Second), func() Peer {
				p := f.peer(c, 25*time.Second)
				p.PublicKey = f.peer(b, 0).PublicKey
				return p
			}()},
			wantRej: []rejection{{"b", `belongs to node "c", whose lease is older`}},
		},
		{
			name: "duplicated key without a bound lease rejects every record that has it",
			nodes: []discovery.Node{a, b, func() discovery.Node {
				n := c
				n.PublicKey = b.PublicKey
				return n
			}()},
			leases: func() Leases {
				l := leasesOf(a)
				l[b.Subnet] = Lease{Node: "b", PublicKey: "other"}
				return l
			}(),
			want: []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{
				{"b", "is published by 2 records"},
				{"c", "is published by 2 records"},
			},
		},
		{
			// Issue 12, defect 1: a /23 record with a fresh lease used to
			// take over the /24 hosts inside it.
			name:       "a wide forged subnet is refused and the hosts inside it keep their routes",
			subnetBits: 24,
			nodes:      []discovery.Node{a, b, f.node("wide", "10.42.2.0/23", "")},
			leases: func() Leases {
				wide := f.node("wide", "10.42.2.0/23", "")
				return leasesOf(a, b, wide)
			}(),
			want:    []Peer{f.peer(a, 25*time.Second), f.peer(b, 25*time.Second)},
			wantRej: []rejection{{"wide", "is not one lease of the cluster's size /24"}},
		},
		{
			name:    "subnet outside the cluster CIDR",
			nodes:   []discovery.Node{a, f.node("d", "10.43.4.0/24", "")},
			want:    []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{{"d", "subnet 10.43.4.0/24 is outside the cluster CIDR 10.42.0.0/16"}},
		},
		{
			name:    "subnet larger than the cluster CIDR",
			nodes:   []discovery.Node{f.node("d", "10.42.0.0/15", "")},
			wantRej: []rejection{{"d", "is outside the cluster CIDR"}},
		},
		{
			name:    "subnet that is not a network address",
			nodes:   []discovery.Node{f.node("d", "10.42.4.1/24", "")},
			wantRej: []rejection{{"d", "is not a network address"}},
		},
		{
			name:    "no lease",
			nodes:   []discovery.Node{a, b},
			leases:  leasesOf(a),
			want:    []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{{"b", "no lease for subnet 10.42.2.0/24"}},
		},
		{
			name:  "lease naming another node",
			nodes: []discovery.Node{a, b},
			leases: Leases{
				a.Subnet: {Node: "a", PublicKey: a.PublicKey},
				b.Subnet: {Node: "e", PublicKey: b.PublicKey},
			},
			want:    []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{{"b", `lease of 10.42.2.0/24 belongs to node "e"`}},
		},
		{
			name:  "lease with another key",
			nodes: []discovery.Node{a, b},
			leases: Leases{
				a.Subnet: {Node: "a", PublicKey: a.PublicKey},
				b.Subnet: {Node: "b", PublicKey: f.keys["e"].String()},
			},
			want:    []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{{"b", `belongs to node "b" with key ` + f.keys["e"].String()[:8]}},
		},
		{
			name:    "overlap with self's subnet",
			nodes:   []discovery.Node{a, f.node("d", "10.42.0.128/25", "")},
			want:    []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{{"d", "subnet 10.42.0.128/25 overlaps this host's 10.42.0.0/24"}},
		},
		{
			name:      "no overlap check with self before self has a subnet",
			nodes:     []discovery.Node{f.node("d", "10.42.0.128/25", "")},
			noSelfNet: true,
			want:      []Peer{f.peer(f.node("d", "10.42.0.128/25", ""), 25*time.Second)},
		},
		{
			name:    "overlap with another peer: the lower subnet wins",
			nodes:   []discovery.Node{f.node("d", "10.42.1.128/25", ""), a},
			want:    []Peer{f.peer(a, 25*time.Second)},
			wantRej: []rejection{{"d", "subnet 10.42.1.128/25 overlaps peer a's 10.42.1.0/24"}},
		},
		{
			name: "every reason at once, rejections sorted",
			nodes: []discovery.Node{
				f.node("e", "10.42.9.0/24", ""), // no lease
				f.node("d", "10.43.0.0/24", ""), // outside
				c, a,
				func() discovery.Node { n := b; n.Problem = "x"; return n }(),
			},
			leases: leasesOf(a, c),
			want:   []Peer{f.peer(a, 25*time.Second), f.peer(c, 25*time.Second)},
			wantRej: []rejection{
				{"b", "malformed record"},
				{"d", "outside the cluster CIDR"},
				{"e", "no lease"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leases := tc.leases
			if leases == nil {
				leases = leasesOf(tc.nodes...)
			}
			in := Input{
				Self:        f.self,
				ClusterCIDR: cidr,
				Nodes:       tc.nodes,
				Leases:      leases,
				Expired:     tc.expired,
				Keepalive:   25 * time.Second,
				SubnetBits:  tc.subnetBits,
			}
			if tc.noSelfNet {
				in.Self.Subnet = netip.Prefix{}
			}
			nodesBefore := append([]discovery.Node(nil), tc.nodes...)
			got, rej := Desired(in)

			want := map[wgtypes.Key]Peer{}
			for _, p := range tc.want {
				want[p.PublicKey] = p
			}
			if diff := cmp.Diff(want, got.Peers, netipEq); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
			if !got.Equal(State{Peers: want}) {
				t.Errorf("State.Equal is false for the expected state")
			}
			if len(rej) != len(tc.wantRej) {
				t.Fatalf("rejections = %v, want %d: %v", rej, len(tc.wantRej), tc.wantRej)
			}
			for i, w := range tc.wantRej {
				if rej[i].Node != w.node || !strings.Contains(rej[i].Reason, w.reason) {
					t.Errorf("rejection %d = %v, want node %s with reason containing %q", i, rej[i], w.node, w.reason)
				}
			}
			for _, r := range rej {
				for _, n := range tc.nodes {
					if n.Name == r.Node && (r.ConsulNode != n.ConsulNode || r.Subnet != n.Subnet.String()) {
						t.Errorf("rejection %v does not describe record %+v", r, n)
					}
				}
			}
			if diff := cmp.Diff(nodesBefore, tc.nodes, netipEq); diff != "" {
				t.Errorf("Desired changed its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestDesiredIsDeterministic(t *testing.T) {
	f := newDesiredFixture(t, "a", "b", "c", "d", "e", "f", "g", "h")
	var nodes []discovery.Node
	for i, name := range []string{"a", "b", "c", "d", "e", "f"} {
		nodes = append(nodes, f.node(name, "10.42."+string(rune('1'+i))+".0/24", "192.0.2."+string(rune('1'+i))+":51820"))
	}
	leases := leasesOf(nodes...)
	// Rejected records of every kind, to check the order of rejections too.
	g := f.node("g", "10.42.3.128/25", "") // overlaps c
	leases[g.Subnet] = Lease{Node: "g", PublicKey: g.PublicKey}
	h := f.node("h", "10.42.9.0/24", "") // no lease
	bad := f.node("h", "10.42.10.0/24", "")
	bad.Name, bad.Problem = "bad", "broken"
	dup := nodes[5]
	dup.Name, dup.ConsulNode, dup.Subnet = "dup", "consul-dup", pfx("10.42.11.0/24")
	nodes = append(nodes, g, h, bad, dup)

	in := Input{
		Self:        f.self,
		ClusterCIDR: pfx("10.42.0.0/16"),
		Nodes:       nodes,
		Leases:      leases,
		Expired:     map[string]bool{"e": true},
		Keepalive:   10 * time.Second,
	}
	first, firstRej := Desired(in)
	if len(first.Peers) != 5 || len(firstRej) != 4 {
		t.Fatalf("fixture: got %d peers and %d rejections, want 5 and 4:\n%v\n%v", len(first.Peers), len(firstRej), first, firstRej)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		shuffled := append([]discovery.Node(nil), nodes...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		in.Nodes = shuffled
		got, rej := Desired(in)
		if !got.Equal(first) {
			t.Errorf("shuffle %d: state\n%v\nwant\n%v", i, got, first)
		}
		if got.String() != first.String() {
			t.Errorf("shuffle %d: String() differs", i)
		}
		if diff := cmp.Diff(first.Routes(), got.Routes(), netipEq); diff != "" {
			t.Errorf("shuffle %d: routes (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(firstRej, rej); diff != "" {
			t.Errorf("shuffle %d: rejections (-want +got):\n%s", i, diff)
		}
	}
}

func TestStateEqual(t *testing.T) {
	f := newDesiredFixture(t, "a", "b")
	pa := f.peer(f.node("a", "10.42.1.0/24", "192.0.2.1:1"), time.Second)
	pb := f.peer(f.node("b", "10.42.2.0/24", ""), time.Second)
	st := func(ps ...Peer) State {
		s := State{Peers: map[wgtypes.Key]Peer{}}
		for _, p := range ps {
			s.Peers[p.PublicKey] = p
		}
		return s
	}
	moved := pa
	moved.Endpoint = netip.MustParseAddrPort("192.0.2.1:2")
	tests := []struct {
		name string
		a, b State
		want bool
	}{
		{"both empty", State{}, st(), true},
		{"same", st(pa, pb), st(pb, pa), true},
		{"missing peer", st(pa, pb), st(pa), false},
		{"other peer", st(pa), st(pb), false},
		{"field differs", st(pa), st(moved), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Equal(tc.b); got != tc.want {
				t.Errorf("a.Equal(b) = %v, want %v", got, tc.want)
			}
			if got := tc.b.Equal(tc.a); got != tc.want {
				t.Errorf("b.Equal(a) = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStateRoutes(t *testing.T) {
	f := newDesiredFixture(t, "a", "b", "c")
	s := State{Peers: map[wgtypes.Key]Peer{}}
	for _, n := range []discovery.Node{
		f.node("a", "10.42.20.0/24", ""),
		f.node("b", "10.42.3.0/24", ""),
		f.node("c", "10.42.100.0/24", ""),
	} {
		s.Peers[f.keys[n.Name]] = f.peer(n, 0)
	}
	want := []netip.Prefix{pfx("10.42.3.0/24"), pfx("10.42.20.0/24"), pfx("10.42.100.0/24")}
	if diff := cmp.Diff(want, s.Routes(), netipEq); diff != "" {
		t.Errorf("Routes (-want +got):\n%s", diff)
	}
	if got := (State{}).Routes(); len(got) != 0 {
		t.Errorf("Routes of an empty state = %v", got)
	}
}
