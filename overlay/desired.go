package overlay

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/drover-net/drover/discovery"
)

// Self is this host as the overlay sees it.
type Self struct {
	Name      string
	PublicKey wgtypes.Key
	Subnet    netip.Prefix
}

// Input is everything Desired needs. It is plain data.
type Input struct {
	Self        Self
	ClusterCIDR netip.Prefix
	// SubnetBits is the size of every lease (--subnet-size): a record for
	// any other size is refused, so that a wide forged subnet cannot cover
	// real hosts' ones. 0 checks nothing (tests of other rules).
	SubnetBits int
	Nodes      []discovery.Node // every drover-node instance, failing ones included
	Leases     Leases
	Expired    map[string]bool // nodes failing (or absent) for longer than the peer timeout
	Keepalive  time.Duration
	// Remembered are the peers this host already had (see Remembered): one
	// whose record is absent stays while its lease still names it.
	Remembered []Peer
}

// Peer is one desired WireGuard peer.
type Peer struct {
	Name       string
	PublicKey  wgtypes.Key
	Endpoint   netip.AddrPort // zero when the node published none
	Subnet     netip.Prefix   // AllowedIPs are exactly this
	Keepalive  time.Duration
	Health     string
	ConsulNode string
}

// State is the desired mesh: peers by key and the routes to their subnets.
type State struct {
	Peers map[wgtypes.Key]Peer
}

// Routes returns the peer subnets, sorted.
func (s State) Routes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.Peers))
	for _, p := range s.Peers {
		out = append(out, p.Subnet)
	}
	sortPrefixes(out)
	return out
}

// Equal reports whether two states are the same.
func (s State) Equal(o State) bool {
	if len(s.Peers) != len(o.Peers) {
		return false
	}
	for k, p := range s.Peers {
		if q, ok := o.Peers[k]; !ok || p != q {
			return false
		}
	}
	return true
}

// Rejection is a drover-node record the overlay refused, and why.
type Rejection struct {
	Node       string `json:"node"`
	ConsulNode string `json:"consul_node"`
	Subnet     string `json:"subnet"`
	Reason     string `json:"reason"`
}

func (r Rejection) String() string {
	return fmt.Sprintf("%s (consul node %s, subnet %s): %s", r.Node, r.ConsulNode, r.Subnet, r.Reason)
}

// Desired computes the peers this host should have. A record becomes a peer
// only if it is well formed, its subnet lies in the cluster CIDR, the lease
// of that subnet names the same node and key (bound both ways), its key is
// not ours nor another peer's, and its subnet overlaps neither ours nor an
// accepted peer's. Everything else is rejected with a reason. Nodes that
// are merely failing stay peers; only expired ones go. A remembered peer
// whose record is absent stays (Health HealthAbsent) while its lease still
// names the same node and key; its lease going removes it at once. It is
// pure.
func Desired(in Input) (State, []Rejection) {
	st := State{Peers: map[wgtypes.Key]Peer{}}
	var rej []Rejection
	keyCount := map[string]int{}
	for _, n := range in.Nodes {
		keyCount[n.PublicKey]++
	}
	owner := keyOwners(in)
	nodes := append([]discovery.Node(nil), in.Nodes...)
	sort.SliceStable(nodes, func(i, j int) bool {
		a, b := nodes[i], nodes[j]
		switch {
		case a.Subnet.Addr() != b.Subnet.Addr():
			return a.Subnet.Addr().Less(b.Subnet.Addr())
		case a.Subnet.Bits() != b.Subnet.Bits():
			return a.Subnet.Bits() < b.Subnet.Bits()
		case a.Name != b.Name:
			return a.Name < b.Name
		default:
			return a.ConsulNode < b.ConsulNode
		}
	})
	for _, n := range nodes {
		if n.Name == in.Self.Name {
			continue
		}
		reject := func(format string, a ...any) {
			rej = append(rej, Rejection{Node: n.Name, ConsulNode: n.ConsulNode, Subnet: n.Subnet.String(), Reason: fmt.Sprintf(format, a...)})
		}
		if n.Problem != "" {
			reject("malformed record: %s", n.Problem)
			continue
		}
		key, err := wgtypes.ParseKey(n.PublicKey)
		switch {
		case err != nil:
			reject("public key %q: %v", n.PublicKey, err)
			continue
		case key == in.Self.PublicKey:
			reject("uses this host's public key")
			continue
		case keyCount[n.PublicKey] > 1 && owner[n.PublicKey] == "":
			reject("public key %s is published by %d records", shortKey(key), keyCount[n.PublicKey])
			continue
		case keyCount[n.PublicKey] > 1 && owner[n.PublicKey] != n.Name:
			// The incumbent (the oldest lease bound to this key) keeps working.
			reject("public key %s belongs to node %q, whose lease is older", shortKey(key), owner[n.PublicKey])
			continue
		}
		if in.SubnetBits != 0 && n.Subnet.Bits() != in.SubnetBits {
			reject("subnet %s is not one lease of the cluster's size /%d", n.Subnet, in.SubnetBits)
			continue
		}
		if !in.ClusterCIDR.Contains(n.Subnet.Addr()) || n.Subnet.Bits() < in.ClusterCIDR.Bits() {
			reject("subnet %s is outside the cluster CIDR %s", n.Subnet, in.ClusterCIDR)
			continue
		}
		if n.Subnet != n.Subnet.Masked() {
			reject("subnet %s is not a network address", n.Subnet)
			continue
		}
		l, ok := in.Leases[n.Subnet]
		switch {
		case !ok:
			reject("no lease for subnet %s", n.Subnet)
			continue
		case l.Node != n.Name || l.PublicKey != n.PublicKey:
			reject("lease of %s belongs to node %q with key %s", n.Subnet, l.Node, short(l.PublicKey))
			continue
		}
		if in.Self.Subnet.IsValid() && n.Subnet.Overlaps(in.Self.Subnet) {
			reject("subnet %s overlaps this host's %s", n.Subnet, in.Self.Subnet)
			continue
		}
		if other, clash := overlapping(st, n.Subnet); clash {
			reject("subnet %s overlaps peer %s's %s", n.Subnet, other.Name, other.Subnet)
			continue
		}
		if in.Expired[n.Name] {
			continue
		}
		st.Peers[key] = Peer{Name: n.Name, PublicKey: key, Endpoint: n.Endpoint, Subnet: n.Subnet,
			Keepalive: in.Keepalive, Health: n.Health, ConsulNode: n.ConsulNode}
	}
	keepRemembered(st, in, keyCount)
	sort.Slice(rej, func(i, j int) bool { return rej[i].String() < rej[j].String() })
	return st, rej
}

// keyOwners maps each public key published by more than one record to the
// node that owns it: the record whose own lease (same subnet, node and key)
// is the oldest (lowest Consul index). A key none of whose records has a
// bound lease maps to "".
func keyOwners(in Input) map[string]string {
	best := map[string]uint64{}
	out := map[string]string{}
	for _, n := range in.Nodes {
		l, ok := in.Leases[n.Subnet]
		if !ok || l.Node != n.Name || l.PublicKey != n.PublicKey || n.Name == in.Self.Name {
			continue
		}
		if b, seen := best[n.PublicKey]; !seen || l.Index < b || (l.Index == b && n.Name < out[n.PublicKey]) {
			best[n.PublicKey], out[n.PublicKey] = l.Index, n.Name
		}
	}
	return out
}

func overlapping(st State, p netip.Prefix) (Peer, bool) {
	for _, q := range st.Peers {
		if q.Subnet.Overlaps(p) {
			return q, true
		}
	}
	return Peer{}, false
}

func shortKey(k wgtypes.Key) string { return short(k.String()) }

func short(s string) string {
	if len(s) > 8 {
		return s[:8] + "…"
	}
	return s
}

func sortPrefixes(ps []netip.Prefix) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Addr() != ps[j].Addr() {
			return ps[i].Addr().Less(ps[j].Addr())
		}
		return ps[i].Bits() < ps[j].Bits()
	})
}

// String prints the state one peer per line, sorted by subnet.
func (s State) String() string {
	var lines []string
	for _, p := range s.Peers {
		lines = append(lines, fmt.Sprintf("peer %s %s endpoint=%s subnet=%s", p.Name, shortKey(p.PublicKey), p.Endpoint, p.Subnet))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
