package main

// The agent's mesh self-check and confgen glue.

import (
	"context"
	"net/netip"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/healthcheck"
	"github.com/drover-net/drover/overlay"
)

// meshAddr is the mesh responder's address for a subnet: its gateway.
func (a *agent) meshAddr(subnet string) netip.AddrPort {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(overlay.Gateway(p), healthcheck.MeshPort)
}

// meshTargets are the overlay's current peers' responders.
func (a *agent) meshTargets() []healthcheck.Target {
	var ts []healthcheck.Target
	for _, p := range a.overlay.Status().Peers {
		ts = append(ts, healthcheck.Target{Node: p.Node, Addr: a.meshAddr(p.Subnet), Bytes: p.RxBytes + p.TxBytes})
	}
	return ts
}

// reportMesh returns the mesh check reporter: it writes the TTL check, but
// its first call after a start writes nothing when Consul already holds the
// same status and output (a restart with nothing changed writes nothing).
func (a *agent) reportMesh() func(ctx context.Context, status, output string) error {
	first := true
	return func(ctx context.Context, status, output string) error {
		if first {
			first = false
			if checks, err := a.consul.Checks(ctx); err == nil {
				if c := checks[discovery.MeshCheckID]; c != nil && c.Status == status && c.Output == output {
					return nil
				}
			}
		}
		return a.consul.UpdateTTL(ctx, discovery.MeshCheckID, output, status)
	}
}

// catalogNames lists the catalog's service names (the `services` template
// function).
func (a *agent) catalogNames(ctx context.Context) ([]string, error) {
	m, err := a.consul.CatalogServices(ctx)
	var out []string
	for n := range m {
		out = append(out, n)
	}
	return out, err
}
