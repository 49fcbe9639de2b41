package main

// The agent's overlay wiring: the mesh join, token rotation, leave, and
// the shims that give overlay its adapters.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/consul"
	"github.com/drover-net/drover/discovery/docker"
	"github.com/drover-net/drover/internal/backoff"
	"github.com/drover-net/drover/internal/buildinfo"
	"github.com/drover-net/drover/overlay"
	"github.com/drover-net/drover/overlay/firewall"
	"github.com/drover-net/drover/overlay/netlink"
	"github.com/drover-net/drover/overlay/wg"
)

func (a *agent) startOverlay(ctx context.Context, kick <-chan struct{}) error {
	key, err := wg.LoadOrCreateKey(a.cfg.DataDir)
	if err != nil {
		return err
	}
	if err := netlink.EnableForwarding(); err != nil {
		a.log.Warn("cannot enable IPv4 forwarding; container traffic may not cross hosts", "err", err)
	}
	ep, _ := parseEndpoint(a.cfg.Endpoint, a.cfg.ListenPort)
	cidr, _ := netip.ParsePrefix(a.cfg.ClusterCIDR)
	a.overlay = overlay.New(overlay.Options{
		Interface: a.cfg.Interface, ClusterCIDR: cidr.Masked(), SubnetBits: a.cfg.SubnetSize,
		ListenPort: a.cfg.ListenPort, Endpoint: ep, MTU: a.cfg.MTU, Keepalive: a.cfg.Keepalive,
		MTUPinned: a.mtuPinned, EndpointPinned: a.endpointPinned,
		PeerTimeout: a.cfg.PeerTimeout, Resync: a.cfg.Resync, DataDir: a.cfg.DataDir,
		NodeName: a.cfg.NodeName, PrivateKey: key, Log: a.log.With("component", "overlay"),
	}, overlay.Deps{
		WG: a.link, Kernel: kernelShim{netlink.Routes{Interface: a.cfg.Interface}},
		Bridge: bridgeShim{a.docker, a.cfg}, Ann: announcer{a.consul, a.log}, KV: kvShim{a.consul},
		Firewall: firewall.Host{Interface: a.cfg.Interface, Bridge: a.cfg.Bridge},
		Nodes:    a.nodes, Leases: a.leases, Kick: kick,
		Records: recordsShim{a.consul}, Record: recordWatcher{a.consul}, OnRepair: a.recordRepaired,
		Underlay: a.underlayShim(),
	})
	return backoff.Retry(ctx, backoff.New(250*time.Millisecond, 10*time.Second), func(ctx context.Context) error {
		self, err := a.overlay.Start(ctx)
		if err != nil {
			return err
		}
		a.self = self
		a.joinErr.Store("")
		return nil
	}, func(err error, wait time.Duration) time.Duration {
		wait = aclWait(err, wait)
		a.joinErr.Store(err.Error())
		a.log.Error("joining the mesh failed; retrying", "err", err, "retry_in", wait)
		return wait
	}, a.consul.TokenChanged)
}

// reregisterOnNewToken registers drover-node and every container service
// again whenever the ACL token changes: the local Consul agent syncs each
// registration to the catalog with the token it was made with, so after a
// rotation (or a revoked token replaced) the old one must not stay in use.
func (a *agent) reregisterOnNewToken(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.consul.TokenChanged():
		}
		a.log.Info("consul token changed; registering this node's services with it")
		r := discovery.NodeRegistration(a.self.Name, a.self.PublicKey.String(), a.overlay.Endpoint(), a.self.Subnet, buildinfo.String())
		if err := a.consul.Register(ctx, r); err != nil {
			a.log.Warn("registering drover-node with the new token failed; the next token change or restart retries", "err", err)
		}
		a.sync.Reregister()
	}
}

// underlayShim returns the overlay's view of the underlay interface, or nil
// when the endpoint's address is on no local interface (drover0's MTU and
// the endpoint then stay as started).
func (a *agent) underlayShim() overlay.Underlay {
	if a.underlay == "" {
		a.log.Info("the endpoint's address is on no local interface; MTU and endpoint will not follow the underlay", "endpoint", a.cfg.Endpoint)
		return nil
	}
	return underlayShim{netlink.Underlay{Name: a.underlay}}
}

// underlayShim adapts the netlink adapter to overlay.Underlay.
type underlayShim struct{ u netlink.Underlay }

func (u underlayShim) Probe() (overlay.UnderlayLink, error) {
	name, mtu, addrs, err := u.u.Probe()
	return overlay.UnderlayLink{Name: name, MTU: mtu, Addrs: addrs}, err
}

// doLeave takes the host out of the mesh and removes the interface.
func (a *agent) doLeave(ctx context.Context) error {
	var errs []error
	if a.view != nil {
		errs = append(errs, a.view.withdraw(ctx))
	}
	errs = append(errs, a.overlay.Leave(ctx))
	errs = append(errs, a.link.Remove())
	errs = append(errs, a.leaveDNS())
	if a.haproxy != nil {
		// Its backends are behind the mesh this host is leaving.
		a.haproxy.Stop()
	}
	if err := a.docker.RemoveNetwork(ctx, a.cfg.Network); err != nil {
		a.log.Warn("docker network kept", "network", a.cfg.Network, "err", err)
	}
	return errors.Join(errs...)
}

// kernelShim adapts the netlink adapter to overlay.Kernel.
type kernelShim struct{ r netlink.Routes }

func (k kernelShim) Routes() ([]overlay.Route, error) {
	rs, err := k.r.List()
	out := make([]overlay.Route, len(rs))
	for i, r := range rs {
		out[i] = overlay.Route(r)
	}
	return out, err
}
func (k kernelShim) Replace(r overlay.Route) error { return k.r.Replace(netlink.Route(r)) }
func (k kernelShim) Delete(r overlay.Route) error  { return k.r.Delete(netlink.Route(r)) }
func (k kernelShim) HasAddr(a netip.Addr) bool     { return netlink.HasAddr(a) }

// bridgeShim adapts the Docker adapter to overlay.Bridge.
type bridgeShim struct {
	d   *docker.Client
	cfg Config
}

func (b bridgeShim) EnsureNetwork(ctx context.Context, subnet netip.Prefix, gw netip.Addr, mtu int) (string, error) {
	return b.d.EnsureNetwork(ctx, docker.NetworkSpec{Name: b.cfg.Network, Subnet: subnet, Gateway: gw, MTU: mtu,
		Bridge: b.cfg.Bridge, Masq: false, Labels: map[string]string{"drover.owned": "true"}})
}

// kvShim adapts the Consul adapter to overlay.KV.
type kvShim struct{ c *consul.Client }

func (k kvShim) List(ctx context.Context, prefix string) (map[string]overlay.KVEntry, error) {
	ps, _, err := k.c.KVList(ctx, prefix, 0)
	out := map[string]overlay.KVEntry{}
	for _, p := range ps {
		out[p.Key] = overlay.KVEntry{Value: p.Value, Index: p.ModifyIndex}
	}
	return out, err
}
func (k kvShim) CAS(ctx context.Context, key string, v []byte, idx uint64) (bool, error) {
	return k.c.KVCAS(ctx, kvPair(key, v, idx))
}
func (k kvShim) DeleteCAS(ctx context.Context, key string, idx uint64) (bool, error) {
	return k.c.KVDeleteCAS(ctx, kvPair(key, nil, idx))
}

// announcer registers drover-node on the local Consul agent, writing only
// when the registration differs from what the agent has.
type announcer struct {
	c   *consul.Client
	log *slog.Logger
}

func (an announcer) Announce(ctx context.Context, self overlay.Self, ep netip.AddrPort) (bool, error) {
	r := discovery.NodeRegistration(self.Name, self.PublicKey.String(), ep, self.Subnet, buildinfo.String())
	cur, err := an.c.Service(ctx, r.ID)
	if err != nil {
		return false, err
	}
	if discovery.SameRegistration(cur, r) {
		an.log.Debug("drover-node registration unchanged; nothing written")
		return false, nil
	}
	return true, an.c.Register(ctx, r)
}

// recordWatcher adapts the Consul adapter to overlay.RecordWatcher: a
// hash-blocking query on the local agent's drover-node service.
type recordWatcher struct{ c *consul.Client }

func (w recordWatcher) WaitRecord(ctx context.Context, hash string) (string, error) {
	return w.c.WaitService(ctx, discovery.NodeService, hash)
}

// recordsShim adapts the Consul adapter to overlay.Records.
type recordsShim struct{ c *consul.Client }

func (r recordsShim) NodeRecords(ctx context.Context) ([]discovery.Node, error) {
	es, _, err := r.c.HealthService(ctx, discovery.NodeService, 0)
	return discovery.NodesFromEntries(es), err
}

// recordRepaired runs when the overlay wrote this host's drover-node record
// back (the local Consul agent forgot it): the agent forgot the container
// services and the mesh check's status too, so both are re-sent now.
func (a *agent) recordRepaired() {
	if a.sync != nil {
		a.sync.Kick()
	}
	if a.mesh != nil {
		a.mesh.Resend()
	}
}

func (an announcer) Withdraw(ctx context.Context) error {
	return an.c.Deregister(ctx, discovery.NodeService)
}

func kvPair(key string, v []byte, idx uint64) *api.KVPair {
	return &api.KVPair{Key: key, Value: v, ModifyIndex: idx}
}

// hostAddr is the address registered for published ports: --advertise-addr,
// else the address other hosts reach this one's WireGuard at (it follows
// the underlay).
func (a *agent) hostAddr() netip.Addr {
	if ip, err := netip.ParseAddr(a.cfg.AdvertiseIP); err == nil {
		return ip
	}
	if a.overlay == nil {
		return netip.Addr{}
	}
	return a.overlay.Endpoint().Addr()
}
