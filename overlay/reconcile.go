package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/watch"
	"github.com/drover-net/drover/internal/atomicfile"
)

// WG drives the WireGuard device (kernel or userspace alike). *wg.Link fits.
// ConfigureDevice applies a delta and must leave untouched peers alone.
type WG interface {
	Ensure(ctx context.Context) error // interface exists, up, MTU set; idempotent
	SetMTU(mtu int)                   // the MTU the next Ensure sets
	Device(name string) (*wgtypes.Device, error)
	ConfigureDevice(name string, cfg wgtypes.Config) error
}

// Kernel manages drover's routes on the interface and answers address
// questions. Replace and Delete are idempotent.
type Kernel interface {
	Routes() ([]Route, error)
	Replace(Route) error
	Delete(Route) error
	HasAddr(netip.Addr) bool
}

// Bridge makes the host's container network exist for subnet.
type Bridge interface {
	EnsureNetwork(ctx context.Context, subnet netip.Prefix, gateway netip.Addr, mtu int) (string, error)
}

// Firewall keeps drover's host rules: masquerade for container traffic that
// leaves the cluster (never traffic to other hosts' subnets), cluster
// traffic through the tunnel accepted on a host whose FORWARD policy is
// DROP, container addresses reachable only through the tunnel, and TCP MSS
// clamped to fit a tunnel of MTU mtu between the bridge and it. Ensure
// compares before it writes and returns what it wrote (nil when nothing
// drifted); it is called every few seconds.
type Firewall interface {
	Ensure(ctx context.Context, subnet, cluster netip.Prefix, mtu int) ([]string, error)
	Remove(ctx context.Context) error
}

// Announcer publishes this host's drover-node record (and removes it).
// Announce writes only when the agent's record differs and reports whether
// it wrote.
type Announcer interface {
	Announce(ctx context.Context, self Self, endpoint netip.AddrPort) (bool, error)
	Withdraw(ctx context.Context) error
}

// Options configures the overlay controller.
type Options struct {
	Interface   string
	ClusterCIDR netip.Prefix
	SubnetBits  int
	ListenPort  int
	Endpoint    netip.AddrPort // published underlay endpoint (at start)
	MTU         int            // drover0's MTU (at start)
	// MTUPinned and EndpointPinned say the operator set them (--mtu,
	// --endpoint): they never follow the underlay link.
	MTUPinned      bool
	EndpointPinned bool
	Keepalive      time.Duration
	PeerTimeout    time.Duration // a node failing this long stops being a peer
	Resync         time.Duration
	DataDir        string
	NodeName       string
	PrivateKey     wgtypes.Key
	Log            *slog.Logger
}

// Controller runs the overlay: lease, interface, network, announcement, and
// the reconcile loop of peers and routes.
type Controller struct {
	opt    Options
	wg     WG
	kern   Kernel
	bridge Bridge
	ann    Announcer
	fw     Firewall
	kv     KV
	nodes  *watch.Latest[[]discovery.Instance]
	leases *watch.Latest[map[string]KVEntry]
	kick   <-chan struct{}
	// recs, watchRec and onRepair: see Deps.
	recs     Records
	watchRec RecordWatcher
	onRepair func()
	under    Underlay // nil: MTU and endpoint stay as started

	annMu sync.Mutex // orders the record guard's Announce against Leave's Withdraw

	mu            sync.Mutex // guards the fields below
	self          Self
	prev          State
	rejections    []Rejection
	lastErr       error
	lastApplied   time.Time
	lastSuccess   time.Time     // end of the last reconcile pass without error
	lastDuration  time.Duration // of the last reconcile pass
	reconciles    int           // passes since start
	lastPlan      string
	applies       int
	failingSince  map[string]time.Time
	leaving       bool           // set by Leave: reconcile must not recreate anything
	recordRepairs int            // drover-node records the guard wrote back
	host          HostState      // container network and firewall checks
	mtu           int            // drover0's MTU now (follows the underlay)
	endpoint      netip.AddrPort // published endpoint now (follows the underlay)
	underErr      string         // last underlay probe error
}

// Deps are the controller's collaborators.
type Deps struct {
	WG       WG
	Kernel   Kernel
	Bridge   Bridge
	Ann      Announcer
	Firewall Firewall // may be nil: no host rules
	KV       KV
	Nodes    *watch.Latest[[]discovery.Instance] // drover-node instances
	Leases   *watch.Latest[map[string]KVEntry]
	Kick     <-chan struct{} // kicked when either changes
	// Records (may be nil) lists drover-node records for the lease choice:
	// a subnet a record announces is never taken.
	Records Records
	// Record (may be nil) watches this host's own record; when it vanishes
	// or changes, it is announced again and OnRepair (may be nil) called.
	Record   RecordWatcher
	OnRepair func()
	// Underlay (may be nil) reads the underlay link on the 2 s check, so
	// that drover0's MTU and the published endpoint follow it.
	Underlay Underlay
}

// New returns a controller; it changes nothing yet.
func New(opt Options, d Deps) *Controller {
	if opt.Keepalive == 0 {
		opt.Keepalive = Keepalive
	}
	if opt.Resync == 0 {
		opt.Resync = 30 * time.Second
	}
	return &Controller{opt: opt, wg: d.WG, kern: d.Kernel, bridge: d.Bridge, ann: d.Ann, fw: d.Firewall, kv: d.KV,
		nodes: d.Nodes, leases: d.Leases, kick: d.Kick, recs: d.Records, watchRec: d.Record, onRepair: d.OnRepair,
		under: d.Underlay, failingSince: map[string]time.Time{}, mtu: opt.MTU, endpoint: opt.Endpoint}
}

func (c *Controller) leaseFile() string { return filepath.Join(c.opt.DataDir, "lease") }

// Start brings the host into the mesh: interface up, subnet leased (the
// cached one preferred), container network ensured, record announced.
func (c *Controller) Start(ctx context.Context) (Self, error) {
	if err := c.wg.Ensure(ctx); err != nil {
		return Self{}, err
	}
	pub := c.opt.PrivateKey.PublicKey()
	var cached netip.Prefix
	if b, err := os.ReadFile(c.leaseFile()); err == nil {
		cached, _ = netip.ParsePrefix(strings.TrimSpace(string(b)))
	}
	subnet, err := Acquire(ctx, c.kv, c.recs, c.opt.ClusterCIDR, c.opt.SubnetBits, Lease{Node: c.opt.NodeName, PublicKey: pub.String()}, cached)
	switch {
	case err != nil && errors.Is(err, ErrUnread) && cached.IsValid():
		// Consul's servers cannot be read: come up on the cached lease (and
		// the peers the device still has) rather than not at all. The
		// reconcile loop confirms the lease once Consul answers, taking it
		// back if it vanished and stopping if someone else holds it.
		c.opt.Log.Warn("consul unreadable; starting on the cached lease, to be confirmed", "subnet", cached, "err", err)
		subnet = cached
	case err != nil:
		return Self{}, fmt.Errorf("leasing a subnet: %w", err)
	}
	if subnet != cached {
		if err := atomicfile.Write(c.leaseFile(), []byte(subnet.String()+"\n"), 0o600); err != nil {
			return Self{}, fmt.Errorf("caching lease: %w", err)
		}
	}
	self := Self{Name: c.opt.NodeName, PublicKey: pub, Subnet: subnet}
	c.mu.Lock()
	c.self = self
	c.mu.Unlock()
	if c.bridge != nil {
		what, err := c.bridge.EnsureNetwork(ctx, subnet, Gateway(subnet), c.MTU())
		if err != nil {
			return Self{}, err
		}
		c.opt.Log.Info("container network ready", "subnet", subnet, "gateway", Gateway(subnet), "action", what)
	}
	if c.fw != nil {
		if _, err := c.fw.Ensure(ctx, subnet, c.opt.ClusterCIDR, c.MTU()); err != nil {
			return Self{}, err
		}
	}
	if _, err := c.ann.Announce(ctx, self, c.Endpoint()); err != nil {
		return Self{}, err
	}
	c.opt.Log.Info("joined the mesh", "node", self.Name, "subnet", subnet, "endpoint", c.Endpoint(), "mtu", c.MTU(), "public_key", pub.String())
	return self, nil
}

// Gateway is the first address of a subnet, the container bridge's gateway.
func Gateway(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// Run reconciles on every kick and on the resync timer until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(c.opt.Resync)
	defer t.Stop()
	// A cheap local check every 2 s (netlink and UAPI reads, no Consul):
	// a dead wireguard-go, a link set down or routes flushed are repaired
	// within seconds, not at the next resync. It writes nothing when
	// nothing drifted.
	probe := time.NewTicker(2 * time.Second)
	defer probe.Stop()
	guarded := make(chan struct{})
	defer func() { <-guarded }()
	go func() {
		defer close(guarded)
		c.guardRecord(ctx)
	}()
	c.repairHost(ctx)
	c.reconcile(ctx)
	for {
		local := false
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		case <-t.C:
			local = true
		case <-probe.C:
			local = true
		}
		if ctx.Err() != nil {
			return nil
		}
		// The host check (Docker network, firewall: a Docker call and a
		// few nft/iptables runs) belongs to the timers, not to every
		// Consul change.
		if local {
			c.checkUnderlay(ctx)
			c.repairHost(ctx)
		}
		c.reconcile(ctx)
	}
}

func (c *Controller) reconcile(ctx context.Context) {
	begin := time.Now()
	err := c.reconcileOnce(ctx)
	c.mu.Lock()
	c.reconciles++
	c.lastDuration = time.Since(begin)
	if err == nil {
		c.lastSuccess = time.Now()
	}
	same := (err == nil) == (c.lastErr == nil) && (err == nil || err.Error() == c.lastErr.Error())
	c.lastErr = err
	c.mu.Unlock()
	// Logged when it changes, not on every 2 s check.
	if err != nil && !same {
		c.opt.Log.Warn("overlay reconcile failed", "err", err)
	}
	if err == nil && !same {
		c.opt.Log.Info("overlay reconcile recovered")
	}
}

func (c *Controller) reconcileOnce(ctx context.Context) error {
	c.mu.Lock()
	leaving := c.leaving
	c.mu.Unlock()
	if leaving {
		return nil
	}
	insts, okN, _ := c.nodes.Get()
	nodes := discovery.NodesFromInstances(insts)
	kv, okL, _ := c.leases.Get()
	if !okN || !okL {
		return nil // never act before a first complete read of both
	}
	leases, problems := ParseLeases(kv)
	c.mu.Lock()
	self, prev := c.self, c.prev
	c.mu.Unlock()
	if !holds(leases, self) {
		// The snapshot may predate our own lease write: ask Consul again
		// before concluding anything.
		fresh, err := c.kv.List(ctx, LeasePrefix)
		if err != nil {
			return fmt.Errorf("re-reading leases: %w", err)
		}
		if leases, problems = ParseLeases(fresh); !holds(leases, self) {
			return c.relost(ctx, self, leases)
		}
	}
	// Interface present, up, right MTU: adopted untouched when it is, so
	// this is a read; recreated (its wireguard-go died, or someone deleted
	// it) or set up again when it is not.
	if err := c.wg.Ensure(ctx); err != nil {
		return err
	}
	dev, err := c.wg.Device(c.opt.Interface)
	if err != nil {
		return fmt.Errorf("reading %s: %w", c.opt.Interface, err)
	}
	in := c.desiredInput(self, prev, dev, nodes, leases)
	desired, rej := Desired(in)
	for _, p := range problems {
		rej = append(rej, Rejection{Reason: p})
	}
	routes, err := c.kern.Routes()
	if err != nil {
		return err
	}
	var src netip.Addr
	if gw := Gateway(self.Subnet); c.kern.HasAddr(gw) {
		src = gw
	}
	plan := Diff(Actual{Device: dev, Routes: routes}, DeviceSpec{PrivateKey: c.opt.PrivateKey, ListenPort: c.opt.ListenPort}, prev, desired, src)
	if err := c.apply(plan); err != nil {
		return err
	}
	c.mu.Lock()
	known := map[string]bool{}
	for _, r := range c.rejections {
		known[r.String()] = true
	}
	c.prev, c.rejections = desired, rej
	if !plan.Empty() {
		c.lastApplied, c.lastPlan = time.Now(), plan.String()
		c.applies++
	}
	c.mu.Unlock()
	if !plan.Empty() {
		c.opt.Log.Info("overlay applied", "plan", plan.String(), "peers", len(desired.Peers))
	}
	for _, r := range rej {
		if !known[r.String()] {
			c.opt.Log.Warn("drover-node record refused", "node", r.Node, "consul_node", r.ConsulNode, "subnet", r.Subnet, "reason", r.Reason)
		}
	}
	return nil
}

// apply carries out a plan: device delta first, then routes.
func (c *Controller) apply(plan Plan) error {
	if len(plan.Device.Peers) > 0 || plan.Device.PrivateKey != nil || plan.Device.ListenPort != nil {
		if err := c.wg.ConfigureDevice(c.opt.Interface, plan.Device); err != nil {
			return fmt.Errorf("configuring %s: %w", c.opt.Interface, err)
		}
	}
	var errs []error
	for _, r := range plan.RouteAdd {
		errs = append(errs, c.kern.Replace(r))
	}
	for _, r := range plan.RouteDel {
		errs = append(errs, c.kern.Delete(r))
	}
	return errors.Join(errs...)
}

func holds(leases Leases, self Self) bool {
	l, ok := leases[self.Subnet]
	return ok && l.Node == self.Name && l.PublicKey == self.PublicKey.String()
}

// relost handles a lease of ours that vanished or changed: if the subnet is
// free we take it back; if someone else holds it we stop (never share).
func (c *Controller) relost(ctx context.Context, self Self, leases Leases) error {
	if l, ok := leases[self.Subnet]; ok {
		return fmt.Errorf("our subnet %s is now leased to %q (key %s): refusing to share it; run `drover leave` here or release that lease", self.Subnet, l.Node, short(l.PublicKey))
	}
	c.opt.Log.Warn("our lease vanished from Consul; taking it back", "subnet", self.Subnet)
	_, err := Acquire(ctx, c.kv, nil, self.Subnet, self.Subnet.Bits(), Lease{Node: self.Name, PublicKey: self.PublicKey.String()}, self.Subnet)
	return err
}

// desiredInput gathers Desired's input: the remembered peers (prev and the
// device) and the nodes failing or absent for longer than the timeout.
func (c *Controller) desiredInput(self Self, prev State, dev *wgtypes.Device, nodes []discovery.Node, leases Leases) Input {
	remembered := Remembered(prev, dev, leases, c.opt.Keepalive)
	c.mu.Lock()
	expired := c.expiredLocked(nodes, absentNames(remembered, nodes), time.Now())
	c.mu.Unlock()
	return Input{Self: self, ClusterCIDR: c.opt.ClusterCIDR, SubnetBits: c.opt.SubnetBits, Nodes: nodes, Leases: leases,
		Expired: expired, Keepalive: c.opt.Keepalive, Remembered: remembered}
}

// expiredLocked tracks, on this host's monotonic clock, how long each node
// has been failing (or, for remembered peers, absent from Consul) and
// returns those failing for longer than the timeout.
func (c *Controller) expiredLocked(nodes []discovery.Node, absent map[string]bool, now time.Time) map[string]bool {
	out := map[string]bool{}
	seen := map[string]bool{}
	for name := range absent {
		seen[name] = true
		since, ok := c.failingSince[name]
		if !ok {
			c.failingSince[name] = now
			continue
		}
		if c.opt.PeerTimeout > 0 && now.Sub(since) > c.opt.PeerTimeout {
			out[name] = true
		}
	}
	for _, n := range nodes {
		seen[n.Name] = true
		if n.Health != "critical" {
			delete(c.failingSince, n.Name)
			continue
		}
		since, ok := c.failingSince[n.Name]
		if !ok {
			c.failingSince[n.Name] = now
			continue
		}
		if c.opt.PeerTimeout > 0 && now.Sub(since) > c.opt.PeerTimeout {
			out[n.Name] = true
		}
	}
	for name := range c.failingSince {
		if !seen[name] {
			delete(c.failingSince, name)
		}
	}
	return out
}
