package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"

	"github.com/drover-net/drover/confgen"
	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/consul"
	"github.com/drover-net/drover/discovery/docker"
	"github.com/drover-net/drover/discovery/watch"
	"github.com/drover-net/drover/healthcheck"
	"github.com/drover-net/drover/internal/atomicfile"
	"github.com/drover-net/drover/internal/backoff"
	"github.com/drover-net/drover/internal/buildinfo"
	"github.com/drover-net/drover/internal/execcmd"
	"github.com/drover-net/drover/internal/kick"
	"github.com/drover-net/drover/lb"
	"github.com/drover-net/drover/lb/haproxy"
	"github.com/drover-net/drover/overlay"
	"github.com/drover-net/drover/overlay/firewall"
	"github.com/drover-net/drover/overlay/netlink"
	"github.com/drover-net/drover/overlay/wg"
)

const agentSynopsis = `drover agent [flags]

Runs the drover agent on this host: joins the encrypted WireGuard mesh
(leasing this host's container subnet in Consul), creates or adopts the
Docker network for that subnet, and keeps peers and routes in step with
every other drover-node in Consul; registers labelled containers in Consul
with their health checks; with --lb, runs HAProxy for the services that ask
for a load balancer; with --confdir, renders files from Consul. Every flag
can also be set with its
DROVER_* environment variable (--cluster-cidr → DROVER_CLUSTER_CIDR) and as a
key of a TOML file given by --config (cluster-cidr = "10.42.0.0/16"); flags
win over the environment, which wins over the file. Stopping the agent
leaves the mesh and HAProxy running; ` + "`drover leave`" + ` removes this host
from the mesh.`

func (c *cli) agent(args []string) int {
	cfg := DefaultConfig()
	fs := c.flagSet("agent", agentSynopsis)
	file := agentFlags(fs, &cfg)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if err := load(fs, c.getenv, file); err != nil {
		return c.fail("%v", err)
	}
	if err := cfg.Validate(); err != nil {
		return c.fail("%v", err)
	}
	c.takeConsulSecrets(&cfg.Consul)
	log := newLogger(c.stderr, cfg.LogFormat, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := runAgent(ctx, cfg, log); err != nil {
		log.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}

func newLogger(w interface{ Write([]byte) (int, error) }, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// agent is the running agent's wiring.
type agent struct {
	cfg     Config
	log     *slog.Logger
	consul  *consul.Client
	docker  *docker.Client
	link    *wg.Link
	overlay *overlay.Controller
	sync    *discovery.Sync
	mesh    *healthcheck.Mesh
	confgen *confgen.Watcher // nil unless --confdir
	lb      *lb.Controller   // nil unless --lb
	haproxy *haproxy.HAProxy // nil unless --lb
	certs   *lb.CertSync     // nil unless --lb
	access  *accessLog       // nil unless --lb with --lb-access-log
	ctx     context.Context
	watches *watch.Hub
	lbSet   *watch.Set // nil unless --lb
	nodes   *watch.Latest[[]discovery.Instance]
	leases  *watch.Latest[map[string]discovery.KVPair]
	leave   chan chan error // leave requests from the status API
	started time.Time
	self    overlay.Self // this host in the mesh, once joined
	joined  atomic.Bool  // the overlay started and every controller exists
	joinErr atomic.Value // string: the last join failure, "" once joined
	// underlay is the interface holding the derived endpoint ("" when the
	// endpoint's address is on no interface here, e.g. behind NAT), and
	// mtuPinned/endpointPinned whether --mtu/--endpoint were set.
	underlay       string
	mtuPinned      bool
	endpointPinned bool
}

func runAgent(ctx context.Context, cfg Config, log *slog.Logger) error {
	a := &agent{cfg: cfg, log: log, leave: make(chan chan error), started: time.Now()}
	if err := a.setup(ctx); err != nil {
		return err
	}
	defer a.link.Close()
	defer a.docker.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.ctx = ctx
	g, gctx := errgroup.WithContext(ctx)
	// Every Consul read loop runs under the errgroup: Run returns once they
	// all ended with gctx.
	a.watches = watch.New(gctx, a.consul, log.With("component", "watch"))
	g.Go(a.watches.Run)
	var nodesKick, leasesKick <-chan struct{}
	a.nodes, nodesKick = a.watches.Service(discovery.NodeService)
	a.leases, leasesKick = a.watches.KV(overlay.LeasePrefix)
	kicked := kick.Merge(gctx, nodesKick, leasesKick)
	// The status socket answers from the start, so that a host whose join
	// is refused (say, a token lacking key:write) shows why.
	g.Go(func() error { return a.serveStatus(gctx) })
	if err := a.startOverlay(ctx, kicked); err != nil {
		cancel()
		_ = g.Wait()
		return err
	}
	a.sync = discovery.NewSync(discovery.SyncOptions{
		Node: a.cfg.NodeName, Network: a.cfg.Network, Resync: a.cfg.Resync,
		Checks: healthcheck.ConsulChecks, FirstJudgment: healthcheck.FirstJudgment,
		DockerCheckID: healthcheck.DockerCheckID, DockerStatus: healthcheck.DockerStatus, DockerRefresh: healthcheck.DockerRefresh,
		Log: log.With("component", "discovery"),
	}, a.docker, a.consul)
	g.Go(func() error { return a.sync.Run(gctx) })
	a.mesh = healthcheck.NewMesh(healthcheck.MeshOptions{
		Self:    a.cfg.NodeName,
		Listen:  func() netip.AddrPort { return a.meshAddr(a.overlay.Status().Subnet) },
		Targets: a.meshTargets,
		Report:  a.reportMesh(),
		Log:     log.With("component", "mesh"),
	})
	// Started after sync and mesh exist: its record guard calls both.
	g.Go(func() error { return a.overlay.Run(gctx) })
	g.Go(func() error { return a.mesh.Run(gctx) })
	a.joined.Store(true)
	if a.cfg.Confdir != "" {
		rs, err := confgen.LoadResources(a.cfg.Confdir, a.cfg.Prefix)
		if err != nil {
			cancel()
			_ = g.Wait()
			return err
		}
		opt := confgen.Options{Runner: execcmd.Shell{}, Log: log.With("component", "confgen")}
		opt.Services = confgen.NewWatchedServices(gctx, a.watches, a.catalogNames, func() { a.confgen.KickAll() })
		a.confgen = confgen.NewWatcher(confgen.NewProcessor(opt), rs, a.watches)
		g.Go(func() error { return a.confgen.Run(gctx) })
	}
	if a.cfg.LB {
		c, err := a.startLB()
		if err != nil {
			cancel()
			_ = g.Wait()
			return err
		}
		a.lb = c
		g.Go(func() error { return a.lb.Run(gctx) })
		certs := newCertSource(a.watches, a.cfg.LBCertDir)
		a.certs = lb.NewCertSync(certs, a.haproxy, log.With("component", "certs"), 0)
		g.Go(func() error { return certs.run(gctx) })
		g.Go(func() error { return a.certs.Run(gctx) })
		if a.cfg.LBAccessLog != "" {
			a.access = newAccessLog(log.With("component", "access"), a.cfg.LBLogRate)
			g.Go(func() error {
				if err := haproxy.ListenAccessLog(gctx, a.cfg.LBAccessLog, a.access.write); err != nil {
					log.Error("access log stopped; requests are still served", "err", err)
				}
				return nil
			})
		}
	}
	g.Go(func() error { a.reregisterOnNewToken(gctx); return nil })
	g.Go(func() error { return a.serveMetrics(gctx, a.cfg.MetricsAddr) })
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case reply := <-a.leave:
			err := a.doLeave(gctx)
			reply <- err
			cancel()
			return err
		}
	})
	err := g.Wait()
	log.Info("agent stopped; the mesh keeps running", "interface", cfg.Interface)
	return err
}

// setup opens the clients and finds the node name, key, endpoint and MTU.
func (a *agent) setup(ctx context.Context) error {
	var err error
	if a.consul, err = consul.New(a.cfg.Consul.options()); err != nil {
		return err
	}
	if a.docker, err = docker.New(a.cfg.DockerHost); err != nil {
		return err
	}
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	consulNode, consulAddr, err := a.waitConsul(ctx)
	if err != nil {
		return err
	}
	if a.cfg.NodeName, err = persistNodeName(a.cfg.DataDir, a.cfg.NodeName, consulNode); err != nil {
		return err
	}
	a.endpointPinned, a.mtuPinned = a.cfg.Endpoint != "", a.cfg.MTU != 0
	if a.cfg.Endpoint == "" {
		a.cfg.Endpoint = consulAddr
	}
	ep, _ := parseEndpoint(a.cfg.Endpoint, a.cfg.ListenPort)
	a.cfg.Endpoint = ep.String()
	name, mtu, err := netlink.LinkOf(ep.Addr())
	if err == nil {
		a.underlay = name
	}
	if a.cfg.MTU == 0 {
		if err != nil {
			a.log.Warn("cannot find the underlay MTU; assuming 1500", "endpoint", ep, "err", err)
			mtu = 1500
		}
		a.cfg.MTU = overlay.WantMTU(mtu)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the drover binary: %w", err)
	}
	a.link, err = wg.New(wg.Options{Name: a.cfg.Interface, Mode: a.cfg.WGMode, MTU: a.cfg.MTU, Exe: exe, DataDir: a.cfg.DataDir, Log: a.log})
	return err
}

// waitConsul asks the local Consul agent who it is, retrying until it
// answers: the agent may start before Consul does.
func (a *agent) waitConsul(ctx context.Context) (node, addr string, err error) {
	err = backoff.Retry(ctx, backoff.New(250*time.Millisecond, 10*time.Second), func(ctx context.Context) error {
		var err error
		node, addr, err = a.consul.Self(ctx)
		return err
	}, func(err error, wait time.Duration) time.Duration {
		a.log.Warn("waiting for the local Consul agent", "err", err)
		return aclWait(err, wait)
	}, a.consul.TokenChanged)
	return node, addr, err
}

// aclWait caps a retry delay at 1 s for an ACL refusal: a new token file
// ends the wait at once, and the cap covers a right granted to the same
// token.
func aclWait(err error, wait time.Duration) time.Duration {
	if consul.IsACLDenied(err) {
		return min(wait, time.Second)
	}
	return wait
}

// persistNodeName returns the node name kept in the data dir; the first start
// stores flag (or, if empty, def). A later, different --node-name is refused:
// a node's identity never changes under it.
func persistNodeName(dir, flag, def string) (string, error) {
	path := filepath.Join(dir, "node-name")
	if b, err := os.ReadFile(path); err == nil {
		kept := strings.TrimSpace(string(b))
		if flag != "" && flag != kept {
			return "", fmt.Errorf("--node-name %q differs from %q kept in %s; a node's name does not change (remove the file after `drover leave` to rename)", flag, kept, path)
		}
		return kept, nil
	}
	name := flag
	if name == "" {
		name = def
	}
	if err := atomicfile.Write(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("storing node name: %w", err)
	}
	return name, nil
}

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
	errs = append(errs, a.overlay.Leave(ctx))
	errs = append(errs, a.link.Remove())
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
		ts = append(ts, healthcheck.Target{Node: p.Node, Addr: a.meshAddr(p.Subnet)})
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
