package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"

	"github.com/hashicorp/consul/api"
)

// NodeService is the Consul service every drover agent registers for itself.
const NodeService = "drover-node"

// Meta keys of the drover-node service.
const (
	MetaNode       = "drover_node"
	MetaPublicKey  = "wg_pubkey"
	MetaEndpoint   = "wg_endpoint"
	MetaSubnet     = "subnet"
	MetaVersion    = "version"
	MetaMeshStatus = "mesh"
)

// Node is one drover agent as published in Consul: a drover-node service
// instance. Fields that did not parse are zero and Problem says why; the
// overlay decides what to do with such a record.
type Node struct {
	Name       string         // drover node name (Meta drover_node)
	ConsulNode string         // the Consul node that registered it
	PublicKey  string         // base64 WireGuard public key
	Endpoint   netip.AddrPort // underlay ip:port of its WireGuard socket
	Subnet     netip.Prefix   // its container subnet
	Version    string
	Health     string // aggregated Consul health: passing, warning or critical
	Problem    string // why a field did not parse; "" when the record is well formed
}

// NodesFromEntries converts the answer of /v1/health/service/drover-node into
// Nodes sorted by name, then Consul node. It is pure.
func NodesFromEntries(entries []*api.ServiceEntry) []Node {
	return NodesFromInstances(InstancesFromEntries(entries))
}

// NodesFromInstances converts drover-node instances into Nodes sorted by
// name, then Consul node. It is pure.
func NodesFromInstances(insts []Instance) []Node {
	nodes := make([]Node, 0, len(insts))
	for _, in := range insts {
		meta := in.Meta
		n := Node{
			Name:       meta[MetaNode],
			ConsulNode: in.Node,
			PublicKey:  meta[MetaPublicKey],
			Version:    meta[MetaVersion],
			Health:     in.Health,
		}
		var problems []string
		if n.Name == "" {
			problems = append(problems, "no "+MetaNode+" meta")
		}
		if ep, err := netip.ParseAddrPort(meta[MetaEndpoint]); err == nil {
			n.Endpoint = ep
		} else {
			problems = append(problems, fmt.Sprintf("%s %q: %v", MetaEndpoint, meta[MetaEndpoint], err))
		}
		if p, err := netip.ParsePrefix(meta[MetaSubnet]); err == nil {
			n.Subnet = p
		} else {
			problems = append(problems, fmt.Sprintf("%s %q: %v", MetaSubnet, meta[MetaSubnet], err))
		}
		if len(problems) > 0 {
			n.Problem = joinProblems(problems)
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool {
		if nodes[i].Name != nodes[j].Name {
			return nodes[i].Name < nodes[j].Name
		}
		return nodes[i].ConsulNode < nodes[j].ConsulNode
	})
	return nodes
}

func joinProblems(p []string) string {
	out := p[0]
	for _, s := range p[1:] {
		out += "; " + s
	}
	return out
}

// NodeRegistration is the drover-node service this host registers on its
// local Consul agent. It is pure.
func NodeRegistration(name, publicKey string, endpoint netip.AddrPort, subnet netip.Prefix, version string) *api.AgentServiceRegistration {
	r := &api.AgentServiceRegistration{
		ID:      NodeService,
		Name:    NodeService,
		Address: endpoint.Addr().String(),
		Port:    int(endpoint.Port()),
		Meta: map[string]string{
			MetaNode:      name,
			MetaPublicKey: publicKey,
			MetaEndpoint:  endpoint.String(),
			MetaSubnet:    subnet.String(),
			MetaVersion:   version,
		},
		Checks: api.AgentServiceChecks{{
			CheckID: MeshCheckID,
			Name:    "drover mesh self-check",
			Notes:   "every peer probed end to end through the WireGuard tunnel by this host's agent",
			TTL:     "15m",
			Status:  api.HealthPassing,
		}},
	}
	// The digest covers the checks too, which the agent's service listing
	// does not show: SameRegistration compares Meta only.
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	r.Meta[MetaHash] = hex.EncodeToString(sum[:])[:16]
	return r
}

// MeshCheckID is the TTL check on drover-node that carries the mesh
// self-check's result. Its status is warning, never critical, when peers do
// not answer, so that a bad link never makes the node itself look dead; only
// an agent silent for the whole TTL turns it critical.
const MeshCheckID = "drover-node:mesh"

// SameRegistration reports whether the agent's current service cur already
// matches r, so that a restart with nothing changed writes nothing.
func SameRegistration(cur *api.AgentService, r *api.AgentServiceRegistration) bool {
	if cur == nil || cur.Service != r.Name || cur.Address != r.Address || cur.Port != r.Port || len(cur.Meta) != len(r.Meta) {
		return false
	}
	for k, v := range r.Meta {
		if cur.Meta[k] != v {
			return false
		}
	}
	return true
}
