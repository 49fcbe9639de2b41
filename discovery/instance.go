package discovery

import (
	"sort"

	"github.com/hashicorp/consul/api"
)

// Instance is one service instance with its aggregated health.
type Instance struct {
	ID      string
	Service string
	Node    string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	Health  string // passing, warning or critical
	// Checks are the instance's checks, its node's (serfHealth) included,
	// sorted by ID; their output is left out (it changes on every run).
	Checks []CheckState
	// CreateIndex is the Raft index at which Consul first registered the
	// instance: who came first, when two claim the same thing.
	CreateIndex uint64
}

// CheckState is one check of an instance.
type CheckState struct {
	ID, Name, Status string
}

// KVPair is one key's value and modify index.
type KVPair struct {
	Value []byte
	Index uint64
}

// InstancesFromEntries converts a health answer into Instances sorted by ID.
// It is pure.
func InstancesFromEntries(es []*api.ServiceEntry) []Instance {
	out := make([]Instance, 0, len(es))
	for _, e := range es {
		if e == nil || e.Service == nil {
			continue
		}
		in := Instance{ID: e.Service.ID, Service: e.Service.Service, Address: e.Service.Address, Port: e.Service.Port,
			Tags: e.Service.Tags, Meta: e.Service.Meta, Health: e.Checks.AggregatedStatus(), CreateIndex: e.Service.CreateIndex}
		for _, c := range e.Checks {
			if c != nil {
				in.Checks = append(in.Checks, CheckState{ID: c.CheckID, Name: c.Name, Status: c.Status})
			}
		}
		sort.Slice(in.Checks, func(i, j int) bool { return in.Checks[i].ID < in.Checks[j].ID })
		if e.Node != nil {
			in.Node = e.Node.Node
			if in.Address == "" {
				in.Address = e.Node.Address
			}
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
