package lb

import (
	"fmt"
	"net/netip"

	"github.com/drover-net/drover/discovery"
)

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
