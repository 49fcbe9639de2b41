package main

// The cluster view's answers to the web UI (webui.Source): every host's
// rows as read through the watch hub, this host's own live ones instead of
// its published ones.

import (
	"context"
	"fmt"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/internal/webui"
)

// watches starts, on the first UI request, the two KV prefix queries and
// the set of every service: a host whose UI nobody opens asks Consul
// nothing for it.
func (v *clusterView) watches() {
	v.watchOnce.Do(func() {
		v.meshKV, _ = v.a.watches.KV(webui.MeshPrefix)
		v.lbKV, _ = v.a.watches.KV(webui.LBPrefix)
		v.all = v.a.watches.Services("")
	})
}

// Node is this host's name.
func (v *clusterView) Node() string { return v.a.cfg.NodeName }

// rows returns every host's row as read from KV, this host's own replaced
// by its live one, with their ages, and problems reading them.
func (v *clusterView) rows(now time.Time) (map[string]webui.SeenRow, []string) {
	v.watches()
	kv, ok, _ := v.meshKV.Get()
	var problems []string
	if err := v.meshKV.Err(); err != nil {
		problems = append(problems, fmt.Sprintf("reading %s: %v", webui.MeshPrefix, err))
	} else if !ok {
		problems = append(problems, fmt.Sprintf("reading %s: not read yet", webui.MeshPrefix))
	}
	vals, idx := map[string][]byte{}, map[string]uint64{}
	for k, p := range kv {
		vals[k], idx[k] = p.Value, p.Index
	}
	rows, bad := webui.DecodeRows(webui.MeshPrefix, vals)
	problems = append(problems, bad...)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tracker.Observe(idx, now)
	out := make(map[string]webui.SeenRow, len(rows)+1)
	for n, r := range rows {
		age, _ := v.tracker.Age(webui.MeshPrefix+n, now)
		out[n] = webui.SeenRow{Row: r, Age: age}
	}
	if v.row.Node != "" {
		out[v.row.Node] = webui.SeenRow{Row: v.row}
	}
	return out, problems
}

// Mesh answers /api/v1/mesh.
func (v *clusterView) Mesh(context.Context) webui.Mesh {
	rows, _ := v.rows(time.Now())
	health := map[string]string{}
	if ins, ok, _ := v.a.nodes.Get(); ok {
		for _, n := range discovery.NodesFromInstances(ins) {
			if n.Name != "" {
				health[n.Name] = worse(health[n.Name], n.Health)
			}
		}
	}
	return webui.BuildMesh(v.a.cfg.NodeName, rows, health)
}

// worse is the worse of two Consul health states ("" is none).
func worse(a, b string) string {
	rank := map[string]int{"": 0, "passing": 1, "warning": 2, "critical": 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// Services answers /api/v1/services.
func (v *clusterView) Services(context.Context) webui.Services {
	seen, problems := v.rows(time.Now())
	rows := make(map[string]webui.Row, len(seen))
	for n, r := range seen {
		rows[n] = r.Row
	}
	snap, err := v.all.Snapshot()
	if err != nil {
		problems = append(problems, "reading the services: "+err.Error())
	}
	var svcs []webui.Service
	for name, ins := range snap {
		s := webui.Service{Name: name, Instances: []webui.Instance{}}
		for _, in := range ins {
			wi := webui.Instance{ID: in.ID, Node: in.Node, Address: in.Address, Port: in.Port, Tags: in.Tags, Meta: in.Meta, Health: in.Health, Checks: []webui.Check{}}
			if wi.Tags == nil {
				wi.Tags = []string{}
			}
			for _, c := range in.Checks {
				wi.Checks = append(wi.Checks, webui.Check{ID: c.ID, Name: c.Name, Status: c.Status})
			}
			s.Instances = append(s.Instances, wi)
		}
		svcs = append(svcs, s)
	}
	return webui.BuildServices(svcs, rows, problems)
}

// LBs answers /api/v1/lb.
func (v *clusterView) LBs(ctx context.Context) webui.LBs {
	v.watches()
	kv, _, _ := v.lbKV.Get()
	var problems []string
	if err := v.lbKV.Err(); err != nil {
		problems = append(problems, fmt.Sprintf("reading %s: %v", webui.LBPrefix, err))
	}
	vals := map[string][]byte{}
	for k, p := range kv {
		vals[k] = p.Value
	}
	lbs, bad := webui.DecodeLBs(webui.LBPrefix, vals)
	problems = append(problems, bad...)
	if live := v.liveLB(ctx); live != nil {
		lbs[live.Node] = *live
	}
	return webui.BuildLBs(lbs, problems)
}

// Events answers /api/v1/events.
func (v *clusterView) Events(context.Context) webui.Events {
	seen, _ := v.rows(time.Now())
	rows := make(map[string]webui.Row, len(seen))
	for n, r := range seen {
		rows[n] = r.Row
	}
	v.mu.Lock()
	if n := v.a.cfg.NodeName; v.row.Node != "" {
		own := rows[n]
		own.Events = v.ring.Newest(webui.MaxEvents)
		rows[n] = own
	}
	v.mu.Unlock()
	return webui.BuildEvents(rows)
}
