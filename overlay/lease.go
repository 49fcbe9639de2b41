package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/drover-net/drover/discovery"
)

// LeasePrefix is the Consul KV folder of subnet leases.
const LeasePrefix = "drover/v1/leases/"

// Lease is the value of a lease key: the node that holds the subnet and the
// public key it holds it with. The key binds the lease to one host: a second
// host that uses the same node name cannot take it over.
type Lease struct {
	Node      string `json:"node"`
	PublicKey string `json:"public_key"`
	// Index is the lease's Consul modify index (never written; leases are
	// created once with CAS 0 and never modified, so it orders them by age).
	Index uint64 `json:"-"`
}

// LeaseKey returns the KV key of subnet p ("/" becomes "_").
func LeaseKey(p netip.Prefix) string {
	return LeasePrefix + strings.Replace(p.Masked().String(), "/", "_", 1)
}

// ParseLeaseKey is the inverse of LeaseKey.
func ParseLeaseKey(key string) (netip.Prefix, error) {
	s := strings.TrimPrefix(key, LeasePrefix)
	return netip.ParsePrefix(strings.Replace(s, "_", "/", 1))
}

// KV is the small part of Consul's KV store leases need. Implementations
// must be safe for concurrent use.
type KV interface {
	// List returns every key under prefix with its value and ModifyIndex.
	List(ctx context.Context, prefix string) (map[string]KVEntry, error)
	// CAS writes value if the key's ModifyIndex is index (0: the key must not
	// exist) and reports whether it did.
	CAS(ctx context.Context, key string, value []byte, index uint64) (bool, error)
	// DeleteCAS deletes key if its ModifyIndex is index.
	DeleteCAS(ctx context.Context, key string, index uint64) (bool, error)
}

// KVEntry is one key's value and modify index.
type KVEntry = discovery.KVPair

// Leases is the parsed content of the lease folder.
type Leases map[netip.Prefix]Lease

// ParseLeases turns the lease folder into Leases; malformed entries are
// returned as problems and left out.
func ParseLeases(kv map[string]KVEntry) (Leases, []string) {
	out := Leases{}
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		p, err := ParseLeaseKey(k)
		if err != nil {
			problems = append(problems, fmt.Sprintf("lease key %q: %v", k, err))
			continue
		}
		var l Lease
		if err := json.Unmarshal(kv[k].Value, &l); err != nil || l.Node == "" {
			problems = append(problems, fmt.Sprintf("lease %s: value %q is not {\"node\":…,\"public_key\":…}", p, kv[k].Value))
			continue
		}
		l.Index = kv[k].Index
		out[p] = l
	}
	return out, problems
}

// ErrNoFreeSubnet means every subnet of the cluster CIDR is leased.
var ErrNoFreeSubnet = errors.New("no free subnet left in the cluster CIDR")

// ChooseSubnet is the pure lease decision. In order it picks: the subnet
// already leased to self (same node and key); the cached subnet if it is
// free; the first free subnet of size bits in cidr. A lease that names self's
// node with another key is a conflict and an error, never shared.
func ChooseSubnet(cidr netip.Prefix, bits int, leases Leases, self Lease, cached netip.Prefix) (netip.Prefix, bool, error) {
	if !cidr.Addr().Is4() {
		return netip.Prefix{}, false, fmt.Errorf("cluster CIDR %s: only IPv4 is supported", cidr)
	}
	if bits < cidr.Bits() || bits > 30 {
		return netip.Prefix{}, false, fmt.Errorf("subnet size /%d does not fit cluster CIDR %s", bits, cidr)
	}
	var mine []netip.Prefix
	for p, l := range leases {
		if l.Node != self.Node {
			continue
		}
		if l.PublicKey != self.PublicKey {
			return netip.Prefix{}, false, fmt.Errorf("subnet %s is leased to node %q with another WireGuard key: another host uses this node name, or this host lost its key file; choose another --node-name, or delete the lease key %s once that host is gone", p, self.Node, LeaseKey(p))
		}
		mine = append(mine, p)
	}
	if len(mine) > 0 {
		sort.Slice(mine, func(i, j int) bool { return mine[i].Addr().Less(mine[j].Addr()) })
		for _, p := range mine {
			if p == cached {
				return p, true, nil
			}
		}
		return mine[0], true, nil
	}
	if cached.IsValid() && cached == cached.Masked() && cidr.Contains(cached.Addr()) && cached.Bits() == bits && free(leases, cached) {
		return cached, false, nil
	}
	n := 1 << (bits - cidr.Bits())
	p := netip.PrefixFrom(cidr.Masked().Addr(), bits)
	for i := 0; i < n; i++ {
		if free(leases, p) {
			return p, false, nil
		}
		p = nextPrefix(p)
	}
	return netip.Prefix{}, false, fmt.Errorf("%w (%s in /%d subnets)", ErrNoFreeSubnet, cidr, bits)
}

func free(leases Leases, p netip.Prefix) bool {
	for q := range leases {
		if q.Overlaps(p) {
			return false
		}
	}
	return true
}

// nextPrefix returns the prefix of the same size that follows p.
func nextPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += 1 << (32 - p.Bits())
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), p.Bits())
}

// Records lists the drover-node records in the catalog (every instance,
// failing ones included).
type Records interface {
	NodeRecords(ctx context.Context) ([]discovery.Node, error)
}

// WithRecords returns leases plus a stand-in lease for every subnet that a
// drover-node record of another node announces while no lease covers it:
// a lease key that vanished from KV (deleted by hand, a restored snapshot)
// while its owner still runs. A host choosing a subnet must not take such
// one; its owner takes the lease back from its local copy. Records naming
// self's node are left out (self decides about its own). It is pure.
func WithRecords(leases Leases, nodes []discovery.Node, self Lease) Leases {
	out := Leases{}
	for p, l := range leases {
		out[p] = l
	}
	for _, n := range nodes {
		if n.Name == "" || n.Name == self.Node || !n.Subnet.IsValid() || n.Subnet != n.Subnet.Masked() {
			continue
		}
		if !free(out, n.Subnet) {
			continue
		}
		out[n.Subnet] = Lease{Node: n.Name, PublicKey: n.PublicKey}
	}
	return out
}

// Acquire holds a subnet for self in the KV store, with check-and-set so
// that two hosts never share one. It retries when another host wins a race.
// recs, when not nil, is read on every attempt: a subnet a drover-node
// record announces is never chosen, even when its lease key is missing.
// ErrUnread marks an Acquire that could not read Consul at all (servers
// unreachable, no leader, a refused read): it decided nothing, so a host
// that has a cached lease may start on it and confirm it later.
var ErrUnread = errors.New("consul not readable")

func Acquire(ctx context.Context, kv KV, recs Records, cidr netip.Prefix, bits int, self Lease, cached netip.Prefix) (netip.Prefix, error) {
	for attempt := 0; attempt < 20; attempt++ {
		entries, err := kv.List(ctx, LeasePrefix)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("listing leases: %w: %w", ErrUnread, err)
		}
		leases, _ := ParseLeases(entries)
		if recs != nil {
			nodes, err := recs.NodeRecords(ctx)
			if err != nil {
				return netip.Prefix{}, fmt.Errorf("listing drover-node records: %w: %w", ErrUnread, err)
			}
			leases = WithRecords(leases, nodes, self)
		}
		p, held, err := ChooseSubnet(cidr, bits, leases, self, cached)
		if err != nil {
			return netip.Prefix{}, err
		}
		if held {
			return p, nil
		}
		val, _ := json.Marshal(self)
		ok, err := kv.CAS(ctx, LeaseKey(p), val, 0)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("leasing %s: %w", p, err)
		}
		if ok {
			return p, nil
		}
		// Another host took it between our list and our write: look again.
	}
	return netip.Prefix{}, errors.New("leasing a subnet: lost 20 races in a row")
}

// Release deletes self's lease of p, only if it still names self.
func Release(ctx context.Context, kv KV, p netip.Prefix, self Lease) error {
	entries, err := kv.List(ctx, LeaseKey(p))
	if err != nil {
		return fmt.Errorf("reading lease %s: %w", p, err)
	}
	e, ok := entries[LeaseKey(p)]
	if !ok {
		return nil
	}
	var l Lease
	if err := json.Unmarshal(e.Value, &l); err != nil || l != self {
		return fmt.Errorf("lease %s names %q, not this host: left alone", p, e.Value)
	}
	if ok, err := kv.DeleteCAS(ctx, LeaseKey(p), e.Index); err != nil || !ok {
		return fmt.Errorf("releasing lease %s: changed meanwhile or %v", p, err)
	}
	return nil
}
