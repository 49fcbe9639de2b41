package discovery

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/consul/api"
)

var netipEq = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{})

const testKey = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="

func goodMeta(name, subnet, endpoint string) map[string]string {
	return map[string]string{
		MetaNode:       name,
		MetaPublicKey:  testKey,
		MetaEndpoint:   endpoint,
		MetaSubnet:     subnet,
		MetaVersion:    "1.2.3",
		MetaMeshStatus: "ok",
	}
}

func entry(consulNode string, meta map[string]string, checks ...*api.HealthCheck) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: consulNode, Address: "192.0.2.1"},
		Service: &api.AgentService{ID: "drover-node", Service: NodeService, Meta: meta},
		Checks:  checks,
	}
}

func check(id, status string) *api.HealthCheck {
	return &api.HealthCheck{CheckID: id, Status: status}
}

func TestNodesFromEntries(t *testing.T) {
	without := func(m map[string]string, keys ...string) map[string]string {
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	with := func(m map[string]string, k, v string) map[string]string {
		m[k] = v
		return m
	}
	good := Node{
		Name:       "alpha",
		ConsulNode: "host-1",
		PublicKey:  testKey,
		Endpoint:   netip.MustParseAddrPort("192.0.2.10:51820"),
		Subnet:     netip.MustParsePrefix("10.42.1.0/24"),
		Version:    "1.2.3",
		Health:     api.HealthPassing,
	}
	tests := []struct {
		name         string
		entries      []*api.ServiceEntry
		want         []Node // Problem compared by the substrings in wantProblems
		wantProblems [][]string
	}{
		{
			name:    "no entries",
			entries: nil,
			want:    []Node{},
		},
		{
			name:    "good record",
			entries: []*api.ServiceEntry{entry("host-1", goodMeta("alpha", "10.42.1.0/24", "192.0.2.10:51820"), check("serfHealth", api.HealthPassing))},
			want:    []Node{good},
		},
		{
			name:    "ipv6 endpoint",
			entries: []*api.ServiceEntry{entry("host-1", goodMeta("alpha", "10.42.1.0/24", "[2001:db8::1]:51820"))},
			want: []Node{func() Node {
				n := good
				n.Endpoint = netip.MustParseAddrPort("[2001:db8::1]:51820")
				return n
			}()},
		},
		{
			name:    "unmasked subnet is kept as published",
			entries: []*api.ServiceEntry{entry("host-1", goodMeta("alpha", "10.42.1.7/24", "192.0.2.10:51820"))},
			want: []Node{func() Node {
				n := good
				n.Subnet = netip.MustParsePrefix("10.42.1.7/24")
				return n
			}()},
		},
		{
			name:    "no version or key is not a problem here",
			entries: []*api.ServiceEntry{entry("host-1", without(goodMeta("alpha", "10.42.1.0/24", "192.0.2.10:51820"), MetaVersion, MetaPublicKey))},
			want: []Node{func() Node {
				n := good
				n.Version, n.PublicKey = "", ""
				return n
			}()},
		},
		{
			name:         "missing node name",
			entries:      []*api.ServiceEntry{entry("host-1", without(goodMeta("alpha", "10.42.1.0/24", "192.0.2.10:51820"), MetaNode))},
			want:         []Node{func() Node { n := good; n.Name = ""; return n }()},
			wantProblems: [][]string{{"no drover_node meta"}},
		},
		{
			name:         "missing endpoint",
			entries:      []*api.ServiceEntry{entry("host-1", without(goodMeta("alpha", "10.42.1.0/24", ""), MetaEndpoint))},
			want:         []Node{func() Node { n := good; n.Endpoint = netip.AddrPort{}; return n }()},
			wantProblems: [][]string{{`wg_endpoint ""`}},
		},
		{
			name:         "malformed endpoint",
			entries:      []*api.ServiceEntry{entry("host-1", goodMeta("alpha", "10.42.1.0/24", "192.0.2.10"))},
			want:         []Node{func() Node { n := good; n.Endpoint = netip.AddrPort{}; return n }()},
			wantProblems: [][]string{{`wg_endpoint "192.0.2.10"`}},
		},
		{
			name:         "missing subnet",
			entries:      []*api.ServiceEntry{entry("host-1", without(goodMeta("alpha", "", "192.0.2.10:51820"), MetaSubnet))},
			want:         []Node{func() Node { n := good; n.Subnet = netip.Prefix{}; return n }()},
			wantProblems: [][]string{{`subnet ""`}},
		},
		{
			name:         "malformed subnet",
			entries:      []*api.ServiceEntry{entry("host-1", with(goodMeta("alpha", "10.42.1.0/24", "192.0.2.10:51820"), MetaSubnet, "10.42.1.0/40"))},
			want:         []Node{func() Node { n := good; n.Subnet = netip.Prefix{}; return n }()},
			wantProblems: [][]string{{`subnet "10.42.1.0/40"`}},
		},
		{
			name:    "no meta at all: every problem, joined",
			entries: []*api.ServiceEntry{entry("host-1", nil)},
			want: []Node{{
				ConsulNode: "host-1",
				Health:     api.HealthPassing,
			}},
			wantProblems: [][]string{{"no drover_node meta; ", `; wg_endpoint ""`, `; subnet ""`}},
		},
		{
			name: "nil entries, nil service skipped; nil node tolerated",
			entries: []*api.ServiceEntry{
				nil,
				{Node: &api.Node{Node: "host-9"}},
				{Service: &api.AgentService{Meta: goodMeta("alpha", "10.42.1.0/24", "192.0.2.10:51820")}},
			},
			want: []Node{func() Node { n := good; n.ConsulNode = ""; return n }()},
		},
		{
			name: "sorted by name then Consul node",
			entries: []*api.ServiceEntry{
				entry("host-2", goodMeta("charlie", "10.42.3.0/24", "192.0.2.3:1")),
				entry("host-b", goodMeta("bravo", "10.42.2.0/24", "192.0.2.2:1")),
				entry("host-1", goodMeta("alpha", "10.42.1.0/24", "192.0.2.1:1")),
				entry("host-a", goodMeta("bravo", "10.42.4.0/24", "192.0.2.4:1")),
			},
			want: func() []Node {
				mk := func(name, cn, sub, ep string) Node {
					return Node{Name: name, ConsulNode: cn, PublicKey: testKey, Version: "1.2.3", Health: api.HealthPassing,
						Subnet: netip.MustParsePrefix(sub), Endpoint: netip.MustParseAddrPort(ep)}
				}
				return []Node{
					mk("alpha", "host-1", "10.42.1.0/24", "192.0.2.1:1"),
					mk("bravo", "host-a", "10.42.4.0/24", "192.0.2.4:1"),
					mk("bravo", "host-b", "10.42.2.0/24", "192.0.2.2:1"),
					mk("charlie", "host-2", "10.42.3.0/24", "192.0.2.3:1"),
				}
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NodesFromEntries(tc.entries)
			problems := make([]string, len(got))
			for i := range got {
				problems[i] = got[i].Problem
				got[i].Problem = ""
			}
			if diff := cmp.Diff(tc.want, got, netipEq); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
			for i, p := range problems {
				var want []string
				if i < len(tc.wantProblems) {
					want = tc.wantProblems[i]
				}
				if len(want) == 0 && p != "" {
					t.Errorf("node %d: Problem = %q, want none", i, p)
				}
				if len(want) > 0 && p == "" {
					t.Errorf("node %d: no Problem, want one containing %q", i, want)
				}
				for _, w := range want {
					if !strings.Contains(p, w) {
						t.Errorf("node %d: Problem %q does not contain %q", i, p, w)
					}
				}
			}
		})
	}
}

func TestNodesFromEntriesHealth(t *testing.T) {
	tests := []struct {
		name   string
		checks api.HealthChecks
		want   string
	}{
		{"no checks", nil, api.HealthPassing},
		{"all passing", api.HealthChecks{check("serfHealth", api.HealthPassing), check("service:drover-node", api.HealthPassing)}, api.HealthPassing},
		{"one warning", api.HealthChecks{check("serfHealth", api.HealthPassing), check("service:drover-node", api.HealthWarning)}, api.HealthWarning},
		{"critical beats warning", api.HealthChecks{check("serfHealth", api.HealthCritical), check("service:drover-node", api.HealthWarning)}, api.HealthCritical},
		{"node maintenance", api.HealthChecks{check(api.NodeMaint, api.HealthCritical), check("serfHealth", api.HealthPassing)}, api.HealthMaint},
		{"service maintenance", api.HealthChecks{check(api.ServiceMaintPrefix+"drover-node", api.HealthCritical)}, api.HealthMaint},
		{"unknown status", api.HealthChecks{check("serfHealth", "bogus")}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := entry("host-1", goodMeta("alpha", "10.42.1.0/24", "192.0.2.10:51820"), tc.checks...)
			got := NodesFromEntries([]*api.ServiceEntry{e})
			if len(got) != 1 {
				t.Fatalf("got %d nodes, want 1", len(got))
			}
			if got[0].Health != tc.want {
				t.Errorf("Health = %q, want %q", got[0].Health, tc.want)
			}
			if got[0].Problem != "" {
				t.Errorf("Problem = %q, want none: health is not a record problem", got[0].Problem)
			}
		})
	}
}
