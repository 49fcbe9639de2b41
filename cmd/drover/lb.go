package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/contract"
	"github.com/drover-net/drover/discovery/watch"
	"github.com/drover-net/drover/internal/kick"
	"github.com/drover-net/drover/lb"
	"github.com/drover-net/drover/lb/haproxy"
)

// lbFilter selects, in Consul's filter language, the service instances
// that ask for a load balancer (their drover.lb.mode label became meta).
const lbFilter = contract.LBFilter

// lbSource is lb.Source over the watch hub: its set of lb services plus
// the drover-node records (who may be proxied), both kept current by the
// hub's shared queries. It only joins the two and turns the set's "not
// read yet" into lb's.
type lbSource struct {
	set   *watch.Set
	nodes *watch.Latest[[]discovery.Instance]
	kick  <-chan struct{}
}

func (a *agent) newLBSource() lbSource {
	a.lbSet = a.watches.Services(lbFilter)
	_, nk := a.watches.Service(discovery.NodeService) // the same records as a.nodes: their kicks
	return lbSource{set: a.lbSet, nodes: a.nodes, kick: kick.Merge(a.ctx, a.lbSet.Changed(), nk)}
}

func (s lbSource) Changed() <-chan struct{} { return s.kick }

func (s lbSource) Snapshot() (map[string][]discovery.Instance, error) {
	out, err := s.set.Snapshot()
	if errors.Is(err, watch.ErrNotRead) {
		return nil, fmt.Errorf("%w (%v)", lb.ErrNotRead, err)
	}
	if err != nil {
		return nil, err
	}
	nodes, ok, _ := s.nodes.Get()
	if err := s.nodes.Err(); err != nil {
		return nil, fmt.Errorf("reading %s records: %w", discovery.NodeService, err)
	}
	if !ok {
		return nil, fmt.Errorf("%s records: %w", discovery.NodeService, lb.ErrNotRead)
	}
	// The records go in under their service name: lb.Desired proxies only
	// instances of the drover nodes they name.
	out[discovery.NodeService] = nodes
	return out, nil
}

// startLB builds the lb controller and its HAProxy.
func (a *agent) startLB() (*lb.Controller, error) {
	dir := a.cfg.LBDir
	if dir == "" {
		dir = filepath.Join(a.cfg.DataDir, "lb")
	}
	h, err := haproxy.New(haproxy.Options{
		Mode: a.cfg.HAProxyMode, Bin: a.cfg.HAProxyBin, Dir: dir,
		ConfigPath: a.cfg.HAProxyCfg, MasterSocket: a.cfg.HAProxySock, LogAddr: a.cfg.LBAccessLog,
		Log: a.log.With("component", "haproxy"),
	})
	if err != nil {
		return nil, err
	}
	a.haproxy = h
	allow, _ := parseCIDRs(a.cfg.LBAllow) // validated with the config
	trusted, _ := parseCIDRs(a.cfg.LBTrusted)
	return lb.NewController(lb.ControllerOptions{
		Desired: lb.Options{HTTPPort: a.cfg.LBHTTPPort, HTTPSPort: a.cfg.LBHTTPSPort, SlotsMin: a.cfg.LBSlots, Own: hostAddrs(a.log),
			Allow: allow, TunnelTimeout: a.cfg.LBTunnel,
			Edge: lb.Edge{TrustedProxies: trusted, AcceptProxy: a.cfg.LBAcceptPrx, HardStopAfter: a.cfg.LBHardStop,
				MaxReloads: lb.MaxReloadsFor(a.cfg.LBHardStop, a.cfg.LBReloadMin)}},
		PortFree:          portFree,
		MinReloadInterval: a.cfg.LBReloadMin,
		Confirm:           a.cfg.LBConfirm,
		Log:               a.log.With("component", "lb"),
	}, a.newLBSource(), proxyShim{h, a.log.With("component", "haproxy")}), nil
}

// portFree tells whether HAProxy could bind TCP port on every address of
// this host: it binds and closes it with SO_REUSEPORT, as HAProxy binds,
// so that a port HAProxy itself holds counts as free and one another
// program holds does not.
func portFree(port int) error {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		var se *os.SyscallError
		if errors.As(err, &se) {
			return se.Err
		}
		return err
	}
	return ln.Close()
}

// hostAddrs are this host's own addresses, which the lb never proxies.
func hostAddrs(log *slog.Logger) []netip.Addr {
	as, err := net.InterfaceAddrs()
	if err != nil {
		log.Warn("cannot list this host's addresses; the lb refuses only loopback and link-local ones", "err", err)
		return nil
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// LBStatus is the lb part of `drover status`.
type LBStatus struct {
	Mode            string         `json:"mode"`
	Config          string         `json:"config"`
	Frontends       []lb.Frontend  `json:"frontends"`
	Backends        []LBBackend    `json:"backends"`
	Problems        []string       `json:"problems,omitempty"`
	Stale           bool           `json:"stale"`
	StaleSince      time.Time      `json:"stale_since,omitzero"`
	StaleReason     string         `json:"stale_reason,omitempty"`
	Holding         []string       `json:"holding,omitempty"`
	PendingReload   bool           `json:"pending_reload"`
	RuntimeOps      int64          `json:"runtime_ops"`
	Reloads         int64          `json:"reloads"`
	FailedReloads   int64          `json:"failed_reloads"`
	ValidationFails int64          `json:"validation_failures"`
	ApplyErrors     int64          `json:"apply_errors"`
	LastApply       time.Time      `json:"last_apply,omitzero"`
	LastApplyDur    time.Duration  `json:"last_apply_duration_ns"`
	LastError       string         `json:"last_error,omitempty"`
	Procs           *haproxy.Procs `json:"processes,omitempty"`
	TLS             lb.CertStatus  `json:"tls"`
	PendingFile     bool           `json:"pending_file"`
	FileWrites      int64          `json:"file_writes"`
	FileWriteDur    time.Duration  `json:"last_file_write_ns"`
	Restarts        int64          `json:"haproxy_restarts"`
	ProcsError      string         `json:"processes_error,omitempty"`
}

// LBBackend is one backend with its servers as HAProxy reports them.
type LBBackend struct {
	Name    string     `json:"name"`
	Mode    string     `json:"mode"`
	Balance string     `json:"balance"`
	Slots   int        `json:"slots"`
	Servers []LBServer `json:"servers"`
}

// LBServer is one server slot in use.
type LBServer struct {
	Slot     string `json:"slot"`
	Addr     string `json:"addr"`
	Weight   int    `json:"weight"`
	Enabled  bool   `json:"enabled"`
	Status   string `json:"status"` // HAProxy's: UP, DOWN, MAINT, DRAIN, ...
	Sessions int    `json:"sessions"`
	Total    int    `json:"total_sessions"`
}

func (a *agent) lbStatus(ctx context.Context) *LBStatus {
	if a.lb == nil {
		return nil
	}
	st := a.lbStatusOf(a.lb.Status())
	if a.certs != nil {
		st.TLS = a.certs.Status()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	live := map[[2]string]haproxy.ServerStatus{}
	if ss, err := a.haproxy.Servers(ctx); err == nil {
		for _, s := range ss {
			live[[2]string{s.Backend, s.Server}] = s
		}
	}
	if p, err := a.haproxy.Procs(ctx); err == nil {
		st.Procs = &p
	} else {
		st.ProcsError = err.Error()
	}
	for i, b := range st.Backends {
		for j, s := range b.Servers {
			l := live[[2]string{b.Name, s.Slot}]
			st.Backends[i].Servers[j].Status, st.Backends[i].Servers[j].Sessions, st.Backends[i].Servers[j].Total = l.Status, l.Sessions, l.Total
		}
	}
	return st
}

// lbStatusOf is the lb status as the controller knows it, without asking
// HAProxy (servers without their live state).
func (a *agent) lbStatusOf(cs lb.ControllerStatus) *LBStatus {
	st := &LBStatus{
		Mode: a.cfg.HAProxyMode, Config: a.haproxy.ConfigPath(), Frontends: cs.Running.Frontends,
		Problems: cs.Problems, Stale: cs.Stale, StaleSince: cs.StaleSince, StaleReason: cs.StaleReason,
		Holding: cs.Holding, PendingReload: cs.PendingReload, RuntimeOps: cs.RuntimeOps, Reloads: cs.Reloads,
		FailedReloads: cs.FailedReloads, ValidationFails: cs.ValidationFails, ApplyErrors: cs.ApplyErrors,
		LastApply: cs.LastApply, LastApplyDur: cs.LastApplyDur, LastError: cs.LastError,
		PendingFile: cs.PendingFile, FileWrites: cs.FileWrites, FileWriteDur: cs.FileWriteDur, Restarts: cs.Restarts,
	}
	for _, b := range cs.Running.Backends {
		lbb := LBBackend{Name: b.Name, Mode: b.Mode, Balance: b.Balance, Slots: b.Slots}
		for _, s := range b.Servers {
			if !s.Enabled {
				continue
			}
			lbb.Servers = append(lbb.Servers, LBServer{Slot: s.Name, Addr: s.Addr, Weight: s.Weight, Enabled: s.Enabled})
		}
		// A total order (two slots may hold one address): the cluster
		// view compares successive samples.
		sort.Slice(lbb.Servers, func(i, j int) bool {
			a, b := lbb.Servers[i], lbb.Servers[j]
			return a.Addr < b.Addr || a.Addr == b.Addr && a.Slot < b.Slot
		})
		st.Backends = append(st.Backends, lbb)
	}
	return st
}

func printLB(w io.Writer, s *LBStatus) {
	if s == nil {
		return
	}
	state := "in step with Consul"
	switch {
	case s.Stale:
		state = fmt.Sprintf("STALE since %s (%s): HAProxy kept as it is", s.StaleSince.Format(time.RFC3339), s.StaleReason)
	case len(s.Holding) > 0:
		state = "holding unconfirmed shrink"
	case s.PendingReload:
		state = "reload pending (coalescing)"
	}
	fmt.Fprintf(w, "\nlb (%s haproxy, %s): %s; runtime ops %d, reloads %d, failed reloads %d, validation failures %d\n",
		s.Mode, s.Config, state, s.RuntimeOps, s.Reloads, s.FailedReloads, s.ValidationFails)
	file := fmt.Sprintf("files written %d times in the background (last %s)", s.FileWrites, s.FileWriteDur.Round(time.Millisecond))
	if s.PendingFile {
		file += ", a write pending: the files lag the runtime"
	}
	fmt.Fprintf(w, "%s; haproxy restarted %d times\n", file, s.Restarts)
	if s.Procs != nil {
		fmt.Fprintf(w, "haproxy master %d, worker %d, old workers %d\n", s.Procs.Master, s.Procs.Worker, len(s.Procs.OldWorkers))
	} else if s.ProcsError != "" {
		fmt.Fprintf(w, "haproxy: %s\n", s.ProcsError)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FRONTEND\tMODE\tPORT\tROUTES")
	for _, f := range s.Frontends {
		routes := ""
		for _, r := range f.Routes {
			h := r.Host
			if h == "" {
				h = "*"
			}
			routes += fmt.Sprintf("%s%s→%s ", h, r.PathPrefix, r.Backend)
		}
		if f.DefaultBackend != "" {
			routes = "→" + f.DefaultBackend
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", f.Name, f.Mode, f.Port, routes)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tSERVER\tADDR\tWEIGHT\tSTATUS\tSESSIONS\tTOTAL")
	for _, b := range s.Backends {
		if len(b.Servers) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tno servers\t-\t-\n", b.Name)
		}
		for _, sv := range b.Servers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\n", b.Name, sv.Slot, sv.Addr, sv.Weight, sv.Status, sv.Sessions, sv.Total)
		}
	}
	tw.Flush()
	if len(s.TLS.Certs) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CERTIFICATE\tSOURCE\tHOSTS\tEXPIRES")
		for _, c := range s.TLS.Certs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Source, strings.Join(c.Names, ","), c.NotAfter.Format(time.RFC3339))
		}
		tw.Flush()
	}
	for _, r := range s.TLS.Refused {
		fmt.Fprintf(w, "REFUSED %s\n", r)
	}
	if s.TLS.LastError != "" {
		fmt.Fprintf(w, "certificates: %s\n", s.TLS.LastError)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(w, "REFUSED %s\n", p)
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "lb last error: %s\n", s.LastError)
	}
}

// accessLog writes HAProxy's access log lines as structured log lines, at
// most --lb-access-log-rate per second; the rest are counted.
type accessLog struct {
	log     *slog.Logger
	limit   *rate.Limiter
	lines   atomic.Int64
	dropped atomic.Int64
}

func newAccessLog(log *slog.Logger, perSecond int) *accessLog {
	return &accessLog{log: log, limit: rate.NewLimiter(rate.Limit(perSecond), perSecond)}
}

func (l *accessLog) write(e haproxy.AccessEntry) {
	l.lines.Add(1)
	if !l.limit.Allow() {
		l.dropped.Add(1)
		return
	}
	attrs := []any{"client", e.Client, "frontend", e.Frontend, "backend", e.Backend, "server", e.Server,
		"bytes", e.Bytes, "queue_ms", e.QueueMs, "connect_ms", e.ConnectMs, "response_ms", e.ResponseMs,
		"total_ms", e.TotalMs, "termination", e.Termination}
	if e.Method != "" {
		attrs = append(attrs, "status", e.Status, "method", e.Method, "path", e.Path)
	}
	l.log.Info("access", attrs...)
}
