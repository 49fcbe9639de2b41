package main

import (
	"context"
	"log/slog"
	"net/netip"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drover-net/drover/confgen"
	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/consul"
	"github.com/drover-net/drover/discovery/dns"
	"github.com/drover-net/drover/discovery/docker"
	"github.com/drover-net/drover/discovery/watch"
	"github.com/drover-net/drover/healthcheck"
	"github.com/drover-net/drover/internal/kick"
	"github.com/drover-net/drover/lb"
	"github.com/drover-net/drover/lb/haproxy"
	"github.com/drover-net/drover/overlay"
	"github.com/drover-net/drover/overlay/wg"
)

const agentSynopsis = `drover agent [flags]

Runs the drover agent on this host: joins the encrypted WireGuard mesh
(leasing this host's container subnet in Consul), creates or adopts the
Docker network for that subnet, and keeps peers and routes in step with
every other drover-node in Consul; registers labelled containers in Consul
with their health checks; with --lb, runs HAProxy for the services that ask
for a load balancer; with --confdir, renders files from Consul; answers
DNS for containers at --dns-addr (service names from Consul, every other
name forwarded to the host's resolvers). Every flag
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
	view    *clusterView     // the web UI's source and the cluster-view publisher
	ctx     context.Context
	watches *watch.Hub
	lbSet   *watch.Set  // nil unless --lb
	dns     *dns.Server // nil when --dns-addr is empty
	dnsSet  *watch.Set  // every service, for dns
	dnsStop context.CancelFunc
	dnsDone chan struct{} // closed when the DNS server stopped
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
	a.view = newClusterView(a)
	ui, err := a.uiHandler()
	if err != nil {
		return err
	}
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
	// DNS answers from the watches alone: up before the mesh is joined.
	a.startDNS(gctx, g)
	if err := a.startOverlay(ctx, kicked); err != nil {
		cancel()
		_ = g.Wait()
		return err
	}
	a.sync = discovery.NewSync(discovery.SyncOptions{
		Node: a.cfg.NodeName, Network: a.cfg.Network, Resync: a.cfg.Resync,
		AddressMode: discovery.AddressMode(a.cfg.AddrMode), HostAddr: a.hostAddr, RegisterAll: a.cfg.Register == "all",
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
	if err := a.startOptional(gctx, g); err != nil {
		cancel()
		_ = g.Wait()
		return err
	}
	g.Go(func() error { a.reregisterOnNewToken(gctx); return nil })
	g.Go(func() error { return a.view.run(gctx) })
	g.Go(func() error { return a.serveMetrics(gctx, a.cfg.MetricsAddr, ui) })
	g.Go(func() error { return a.serveUI(gctx, ui) })
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
	err = g.Wait()
	log.Info("agent stopped; the mesh keeps running", "interface", cfg.Interface)
	return err
}
