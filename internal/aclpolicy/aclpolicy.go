// Package aclpolicy writes the least-privilege Consul ACL policy of one
// drover agent. It is the one source of that policy: `drover acl-policy`
// prints it, docs/security.md explains it, and the sandbox makes every
// host's drover token from it.
package aclpolicy

import (
	"fmt"
	"sort"
	"strings"
)

// LeasePrefix is the KV prefix of subnet leases (overlay.LeasePrefix; kept
// here as a constant so that this package imports nothing of drover's).
const LeasePrefix = "drover/v1/leases/"

// MeshPrefix and LBPrefix hold the rows of the cluster view each agent
// publishes (webui.MeshPrefix, webui.LBPrefix): one key per node.
const (
	MeshPrefix = "drover/v1/mesh/"
	LBPrefix   = "drover/v1/lb/"
)

// CertPrefix holds the lb's certificate bundles (private keys included).
const CertPrefix = "drover/v1/certs/"

// Options selects what the policy grants.
type Options struct {
	// Node is the Consul node name of the agent's host; empty grants the
	// node rules by prefix "" (any node), for a policy shared by all hosts.
	Node string
	// LB is a load-balancer host: it may read the certificate bundles
	// under CertPrefix, which every other host is denied.
	LB bool
	// ConfgenPrefixes are the KV prefixes confgen reads (its resources'
	// keys joined to --prefix); each gets key_prefix read.
	ConfgenPrefixes []string
}

// Rule is one rule of a policy with the reason for it.
type Rule struct {
	Kind   string // node, node_prefix, service_prefix, key, key_prefix, agent
	Name   string
	Access string // read, write or deny
	Why    string
}

// Rules returns the rules of opt, in the order they are printed.
func Rules(opt Options) []Rule {
	var rs []Rule
	if opt.Node != "" {
		rs = append(rs,
			Rule{"agent", opt.Node, "read", "GET /v1/agent/self at start: the local agent's node name and address"},
			Rule{"node", opt.Node, "write", "the host's own node: services and their checks registered through the local agent live on it"})
	} else {
		rs = append(rs,
			Rule{"agent_prefix", "", "read", "GET /v1/agent/self at start (any node: a policy shared by every host)"},
			Rule{"node_prefix", "", "write", "the host's own node (any node: a policy shared by every host)"})
	}
	rs = append(rs,
		Rule{"node_prefix", "", "read", "health and catalog reads return node records of every host (peers, backends)"},
		Rule{"service_prefix", "", "write", "registering drover-node and every labelled container (their names are chosen by whoever starts containers, so no narrower prefix exists), updating their TTL checks, reading and deregistering them through the local agent"},
		Rule{"key_prefix", LeasePrefix, "write", "leasing, renewing and releasing this host's subnet with check-and-set"},
		Rule{"key_prefix", "drover/v1/", "read", "watching every lease (the overlay and `drover leases`) and the cluster view's rows (the web UI)"},
	)
	if opt.Node != "" {
		rs = append(rs, Rule{"key", MeshPrefix + opt.Node, "write", "publishing this host's row of the mesh matrix, its refused containers and recent events (the web UI of every host reads them)"})
		if opt.LB {
			rs = append(rs, Rule{"key", LBPrefix + opt.Node, "write", "publishing this lb host's HAProxy summary (frontends, backends, servers, reloads; no certificates)"})
		}
	} else {
		rs = append(rs, Rule{"key_prefix", MeshPrefix, "write", "publishing this host's row of the mesh matrix (any node: a policy shared by every host)"})
		if opt.LB {
			rs = append(rs, Rule{"key_prefix", LBPrefix, "write", "publishing this lb host's HAProxy summary (any node: a policy shared by every host)"})
		}
	}
	if opt.LB {
		rs = append(rs, Rule{"key_prefix", CertPrefix, "read", "the HTTPS frontends' certificate bundles (this is a load-balancer host)"})
	} else {
		rs = append(rs, Rule{"key_prefix", CertPrefix, "deny", "certificate bundles hold private keys: only load-balancer hosts read them"})
	}
	ps := append([]string(nil), opt.ConfgenPrefixes...)
	sort.Strings(ps)
	for _, p := range ps {
		p = strings.TrimPrefix(p, "/")
		if p == "" || strings.HasPrefix(p, "drover/v1/") {
			continue
		}
		rs = append(rs, Rule{"key_prefix", p, "read", "confgen renders templates from this prefix"})
	}
	return rs
}

// HCL returns the policy of opt as Consul ACL HCL, each rule preceded by a
// comment saying why it is there.
func HCL(opt Options) string {
	var b strings.Builder
	who := "every host"
	if opt.Node != "" {
		who = "node " + opt.Node
	}
	fmt.Fprintf(&b, "# Consul ACL policy of the drover agent on %s (drover acl-policy).\n", who)
	for _, r := range Rules(opt) {
		fmt.Fprintf(&b, "\n# %s\n", r.Why)
		fmt.Fprintf(&b, "%s %q {\n  policy = %q\n}\n", r.Kind, r.Name, r.Access)
	}
	return b.String()
}
