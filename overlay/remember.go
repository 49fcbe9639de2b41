package overlay

import (
	"net"
	"net/netip"
	"sort"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/drover-net/drover/discovery"
)

// HealthAbsent is the Health of a peer kept although its drover-node record
// is absent from Consul (a Consul agent restarted with an empty data dir
// drops it): it is treated like a failing node, kept until --peer-timeout,
// and removed at once only when its lease goes (the explicit withdrawal).
const HealthAbsent = "record absent"

// Remembered returns the peers this host already had: those of prev (the
// state last applied) and, for keys prev lacks (after this agent restarted,
// prev is empty), the device's peers whose key and single AllowedIP match a
// lease. Only peers that were once accepted by Desired or that the lease
// store binds to exactly that key and subnet can be remembered, so a forged
// record never becomes one. It is pure.
func Remembered(prev State, dev *wgtypes.Device, leases Leases, keepalive time.Duration) []Peer {
	var out []Peer
	for _, p := range prev.Peers {
		out = append(out, p)
	}
	if dev != nil {
		for _, dp := range dev.Peers {
			if _, ok := prev.Peers[dp.PublicKey]; ok || len(dp.AllowedIPs) != 1 {
				continue
			}
			subnet, ok := prefixOf(dp.AllowedIPs[0])
			if !ok {
				continue
			}
			l, ok := leases[subnet]
			if !ok || l.PublicKey != dp.PublicKey.String() {
				continue
			}
			p := Peer{Name: l.Node, PublicKey: dp.PublicKey, Subnet: subnet, Keepalive: keepalive, Health: HealthAbsent}
			if dp.Endpoint != nil {
				ap := dp.Endpoint.AddrPort()
				p.Endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			}
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func prefixOf(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	p := netip.PrefixFrom(a.Unmap(), bits)
	return p, p.IsValid() && p == p.Masked()
}

// keepRemembered adds to st the remembered peers whose record is absent
// (no record with their node name or key at all) while their lease still
// names the same node and key. Every check Desired makes of a record is
// made again; expired (absent longer than the peer timeout) ones go.
func keepRemembered(st State, in Input, keyCount map[string]int) {
	names := map[string]bool{}
	for _, n := range in.Nodes {
		names[n.Name] = true
	}
	for _, r := range in.Remembered {
		key := r.PublicKey.String()
		switch {
		case r.Name == in.Self.Name, names[r.Name], keyCount[key] > 0, in.Expired[r.Name]:
			continue
		case r.PublicKey == in.Self.PublicKey:
			continue
		case !in.ClusterCIDR.Contains(r.Subnet.Addr()) || r.Subnet.Bits() < in.ClusterCIDR.Bits():
			continue
		}
		if l, ok := in.Leases[r.Subnet]; !ok || l.Node != r.Name || l.PublicKey != key {
			continue // lease released or taken: the explicit withdrawal
		}
		if in.Self.Subnet.IsValid() && r.Subnet.Overlaps(in.Self.Subnet) {
			continue
		}
		if _, clash := overlapping(st, r.Subnet); clash {
			continue
		}
		if _, dup := st.Peers[r.PublicKey]; dup {
			continue
		}
		r.Health, r.Keepalive = HealthAbsent, in.Keepalive
		st.Peers[r.PublicKey] = r
	}
}

// absentNames are the remembered peers that have no record at all.
func absentNames(remembered []Peer, nodes []discovery.Node) map[string]bool {
	names := map[string]bool{}
	for _, n := range nodes {
		names[n.Name] = true
	}
	out := map[string]bool{}
	for _, r := range remembered {
		if !names[r.Name] {
			out[r.Name] = true
		}
	}
	return out
}
