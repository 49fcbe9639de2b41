package overlay

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"

	"github.com/drover-net/drover/discovery"
)

// LeaseInfo is one lease as an operator sees it (`drover leases`).
type LeaseInfo struct {
	Subnet     string `json:"subnet"`
	Node       string `json:"node"`
	PublicKey  string `json:"public_key"`
	Index      uint64 `json:"modify_index"`
	Record     bool   `json:"record"`                // a drover-node record of that node and key exists
	ConsulNode string `json:"consul_node,omitempty"` // the Consul node the record is on
	Serf       string `json:"serf_health"`           // that Consul node's serfHealth, or "record absent"
	FailingFor string `json:"failing_for,omitempty"` // seen by this host's agent, when it knows
	Problem    string `json:"problem,omitempty"`     // the lease value does not parse
}

// Alive reports whether the lease's node is alive in Consul: its record
// exists and its Consul node's serfHealth is passing.
func (l LeaseInfo) Alive() bool { return l.Record && l.Serf == "passing" }

// SerfAbsent is LeaseInfo.Serf when the lease's node has no record.
const SerfAbsent = "record absent"

// DescribeLeases joins the lease folder with the drover-node records and
// the serfHealth status of each Consul node (by name). It is pure.
func DescribeLeases(kv map[string]KVEntry, nodes []discovery.Node, serf map[string]string) []LeaseInfo {
	var out []LeaseInfo
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		info := LeaseInfo{Index: kv[k].Index, Serf: SerfAbsent}
		p, err := ParseLeaseKey(k)
		if err != nil {
			info.Subnet, info.Problem = k, fmt.Sprintf("key: %v", err)
			out = append(out, info)
			continue
		}
		info.Subnet = p.String()
		one, problems := ParseLeases(map[string]KVEntry{k: kv[k]})
		if len(problems) > 0 {
			info.Problem = problems[0]
			out = append(out, info)
			continue
		}
		l := one[p]
		info.Node, info.PublicKey = l.Node, l.PublicKey
		for _, n := range nodes {
			if n.Name == l.Node && n.PublicKey == l.PublicKey {
				info.Record, info.ConsulNode = true, n.ConsulNode
				info.Serf = serf[n.ConsulNode]
				if info.Serf == "" {
					info.Serf = "unknown"
				}
				break
			}
		}
		out = append(out, info)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, errA := netip.ParsePrefix(out[i].Subnet)
		b, errB := netip.ParsePrefix(out[j].Subnet)
		if errA != nil || errB != nil {
			return errA == nil
		}
		return a.Addr().Less(b.Addr())
	})
	return out
}

// CheckRelease decides whether an operator may release a lease: never
// while its node is alive in Consul, unless force. It is pure.
func CheckRelease(l LeaseInfo, force bool) error {
	if l.Alive() && !force {
		return fmt.Errorf("lease %s belongs to node %q, which is alive in Consul (record on %s, serfHealth passing): refused; run `drover leave` on that host, or use --force", l.Subnet, l.Node, l.ConsulNode)
	}
	return nil
}
