package main

// The agent's cluster view: once a second it samples its own status into
// a mesh row (with refusals and events) and, on an lb host, an lb summary;
// it publishes them to Consul KV through write gates, and it answers the
// web UI from every host's rows (read through the watch hub) joined with
// its own live ones.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/watch"
	"github.com/drover-net/drover/internal/webui"
	"github.com/drover-net/drover/lb/haproxy"
)

// sampleEvery is how often the view samples the agent's status.
const sampleEvery = time.Second

// yieldAtMost is how many samples in a row the view's writes wait while
// other non-blocking requests are in flight to the local Consul agent: the
// agent keeps at most about 10 requests there at once (FetchConcurrency),
// and a row can wait a few seconds.
const yieldAtMost = 5

// lbSampleEvery is how many samples apart the lb's structure is read
// again: copying a large lb's state every second (2,000 backends) cost
// about 30 MB of agent RSS; lb events and summaries lag by up to 5 s.
const lbSampleEvery = 5

// clusterView is the agent's side of the web UI.
type clusterView struct {
	a *agent

	mu      sync.Mutex // guards the fields below
	ring    *webui.Ring
	lbRing  *webui.Ring
	prev    webui.Facts
	sampled bool
	row     webui.Row
	lb      *webui.LBSummary // structure only (no HAProxy figures): what the lb gate compares
	tracker *webui.Tracker
	failing bool // the last KV write failed (logged once until it works again)
	left    bool // the host left the mesh: publish nothing more

	rowGate, lbGate *webui.Gate // only the run loop touches these
	yielded         int         // samples in a row whose writes waited for a busy Consul client
	lbTick          int         // samples since the lb was last read
	lastLB          *LBStatus   // the lb as last read
	pubMu           sync.Mutex  // held by a publish pass and by withdraw, so no write lands after the delete

	watchOnce sync.Once
	meshKV    *watch.Latest[map[string]discovery.KVPair]
	lbKV      *watch.Latest[map[string]discovery.KVPair]
	all       *watch.Set
}

func newClusterView(a *agent) *clusterView {
	return &clusterView{a: a, ring: webui.NewRing(200), lbRing: webui.NewRing(webui.RowEvents), tracker: webui.NewTracker(),
		rowGate: webui.NewGate(webui.MinInterval, webui.Heartbeat), lbGate: webui.NewGate(webui.MinInterval, webui.Heartbeat)}
}

// run samples and publishes until ctx ends.
func (v *clusterView) run(ctx context.Context) error {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		v.sample(ctx, time.Now())
		v.publish(ctx, time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sample reads the agent's status into the local row and the lb's
// structure. It asks HAProxy nothing: the lb part comes from the lb
// controller's memory; HAProxy's own figures are read only when a summary
// is published or shown.
func (v *clusterView) sample(ctx context.Context, now time.Time) {
	r := v.a.baseReport()
	fresh := false
	if v.a.lb != nil {
		if v.lbTick%lbSampleEvery == 0 || v.lastLB == nil {
			v.lastLB, fresh = v.a.lbStatusOf(v.a.lb.Status()), true
		}
		v.lbTick++
		r.LB = v.lastLB
	}
	facts := factsOf(r)
	v.mu.Lock()
	defer v.mu.Unlock()
	evs := webui.Diff(v.a.cfg.NodeName, v.prev, facts, !v.sampled, now)
	v.prev, v.sampled = facts, true
	v.ring.Add(evs...)
	for _, e := range evs {
		switch e.Kind {
		case webui.EventReload, webui.EventRuntime, webui.EventLBError:
			v.lbRing.Add(e)
		}
	}
	v.row = webui.CapRow(rowOf(r, v.a.started, now, v.ring.Newest(webui.RowEvents)))
	if r.LB != nil && fresh {
		s := lbSummaryOf(v.a.cfg.NodeName, r.LB, nil, v.lbRing.Newest(webui.RowEvents))
		v.lb = &s
	}
}

// liveLB is this lb host's summary with HAProxy's own states and figures
// (nil without --lb).
func (v *clusterView) liveLB(ctx context.Context) *webui.LBSummary {
	if v.a.lb == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	l := v.a.lbStatus(ctx)
	stats, _ := v.a.haproxy.Stats(ctx)
	v.mu.Lock()
	hist := v.lbRing.Newest(webui.RowEvents)
	v.mu.Unlock()
	s := lbSummaryOf(v.a.cfg.NodeName, l, stats, hist)
	return &s
}

// publish writes the row and the lb summary when their gates say so.
func (v *clusterView) publish(ctx context.Context, now time.Time) {
	v.pubMu.Lock()
	defer v.pubMu.Unlock()
	v.mu.Lock()
	row, lbs, left := v.row, v.lb, v.left
	v.mu.Unlock()
	if left || row.Subnet == "" {
		return // not in the mesh yet: nothing to say
	}
	if rs := v.a.consul.Requests(); rs.InFlight-rs.Blocking > 0 && v.yielded < yieldAtMost {
		v.yielded++
		return
	}
	v.yielded = 0
	if k := webui.RowKey(row); v.rowGate.Due(k, now) {
		row.Seq = uint64(now.UnixNano())
		if v.put(ctx, webui.MeshPrefix+row.Node, row) {
			v.rowGate.Wrote(k, now)
		} else {
			v.rowGate.Failed(now)
		}
	}
	if lbs != nil {
		if k := webui.LBKey(*lbs); v.lbGate.Due(k, now) {
			if live := v.liveLB(ctx); live != nil {
				s := webui.CapLB(*live)
				s.Seq = uint64(now.UnixNano())
				if v.put(ctx, webui.LBPrefix+s.Node, s) {
					v.lbGate.Wrote(k, now)
				} else {
					v.lbGate.Failed(now)
				}
			}
		}
	}
}

func (v *clusterView) put(ctx context.Context, key string, doc any) bool {
	b, err := json.Marshal(doc)
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = v.a.consul.KVPut(wctx, key, b)
		cancel()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		if !v.failing && ctx.Err() == nil {
			v.a.log.Warn("publishing the cluster view failed; other hosts' UIs will show this host as stale (retried every second)", "key", key, "err", err)
		}
		v.failing = true
		return false
	}
	if v.failing {
		v.a.log.Info("publishing the cluster view works again", "key", key)
	}
	v.failing = false
	return true
}

// withdraw deletes this host's rows (drover leave): a host that left is
// not shown as a stale one. Nothing is published afterwards.
func (v *clusterView) withdraw(ctx context.Context) error {
	v.pubMu.Lock()
	defer v.pubMu.Unlock()
	v.mu.Lock()
	v.left = true
	v.mu.Unlock()
	err := v.a.consul.KVDelete(ctx, webui.MeshPrefix+v.a.cfg.NodeName)
	if v.a.cfg.LB { // only an lb host's token may write (and delete) its lb key
		err = errors.Join(err, v.a.consul.KVDelete(ctx, webui.LBPrefix+v.a.cfg.NodeName))
	}
	return err
}

// factsOf reduces a status report to what events are computed from.
func factsOf(r StatusReport) webui.Facts {
	f := webui.Facts{Subnet: r.Overlay.Subnet, Peers: map[string]webui.PeerFact{}, Refused: refusalsOf(r.Sync),
		HostRepairs: r.Overlay.Host.Repairs, LastRepair: r.Overlay.Host.LastRepair, RecordRepairs: r.Overlay.RecordRepairs}
	probes := map[string]bool{}
	for _, p := range r.Mesh {
		if !p.ProbedAt.IsZero() { // a peer the bounded rounds did not reach yet has no verdict
			probes[p.Node] = p.Reachable
		}
	}
	for _, p := range r.Overlay.Peers {
		reach, probed := probes[p.Node]
		f.Peers[p.Node] = webui.PeerFact{Probed: probed, Reachable: reach}
	}
	if l := r.LB; l != nil {
		lf := &webui.LBFacts{Reloads: l.Reloads, FailedReloads: l.FailedReloads, RuntimeOps: l.RuntimeOps, LastError: l.LastError,
			Slots: map[string]int{}, Servers: map[string][]string{}}
		for _, fe := range l.Frontends {
			lf.Frontends = append(lf.Frontends, fe.Name)
		}
		for _, b := range l.Backends {
			lf.Slots[b.Name] = b.Slots
			for _, s := range b.Servers {
				lf.Servers[b.Name] = append(lf.Servers[b.Name], s.Addr)
			}
		}
		f.LB = lf
	}
	return f
}

func refusalsOf(s discovery.SyncStatus) []webui.Refusal {
	out := []webui.Refusal{}
	for _, p := range s.Problems {
		out = append(out, webui.Refusal{Container: p.ContainerName, ContainerID: p.ContainerID, Port: p.Port, Reason: p.Reason})
	}
	return out
}

// rowOf is this host's row: itself and how it sees every peer.
func rowOf(r StatusReport, started, now time.Time, events []webui.Event) webui.Row {
	o := r.Overlay
	row := webui.Row{Schema: webui.Schema, Node: r.Node, Version: r.Version, Subnet: o.Subnet, Endpoint: o.Endpoint,
		UptimeS: int64(now.Sub(started) / time.Second), Peers: []webui.Peer{}, Refused: refusalsOf(r.Sync), Events: events}
	probes := map[string]int{}
	for i, p := range r.Mesh {
		if !p.ProbedAt.IsZero() {
			probes[p.Node] = i
		}
	}
	for _, p := range o.Peers {
		c := webui.Peer{Node: p.Node, HandshakeAgeS: -1, RxBytes: p.RxBytes, TxBytes: p.TxBytes, Health: p.Health}
		if !p.LastHandshake.IsZero() {
			c.HandshakeAgeS = now.Sub(p.LastHandshake).Seconds()
		}
		if i, ok := probes[p.Node]; ok {
			pr := r.Mesh[i]
			c.Probed, c.Reachable, c.RTTMs, c.LastError = true, pr.Reachable, float64(pr.RTT)/float64(time.Millisecond), pr.LastError
		}
		row.Peers = append(row.Peers, c)
	}
	return row
}

// lbSummaryOf is this lb host's summary: the running frontends and
// backends joined with HAProxy's own figures.
func lbSummaryOf(node string, l *LBStatus, stats []haproxy.StatRow, history []webui.Event) webui.LBSummary {
	by := map[[2]string]haproxy.StatRow{}
	for _, s := range stats {
		by[[2]string{s.Proxy, s.Server}] = s
	}
	st := func(proxy, server string) webui.LBStats {
		s, ok := by[[2]string{proxy, server}]
		if !ok {
			return webui.LBStats{}
		}
		return webui.LBStats{Status: s.Status, Sessions: s.Sessions, Total: s.Total, Rate: s.Rate, Requests: s.Requests, Errors: s.ErrReq + s.ErrConn + s.ErrResp}
	}
	out := webui.LBSummary{Schema: webui.Schema, Node: node, Stale: l.Stale, StaleReason: l.StaleReason, LastError: l.LastError,
		Reloads: l.Reloads, FailedReloads: l.FailedReloads, RuntimeOps: l.RuntimeOps, Problems: l.Problems,
		Frontends: []webui.LBFrontend{}, Backends: []webui.LBBackend{}, History: history}
	for _, f := range l.Frontends {
		wf := webui.LBFrontend{Name: f.Name, Mode: f.Mode, Port: f.Port, TLS: f.TLS, DefaultBackend: f.DefaultBackend, Stats: st(f.Name, "FRONTEND")}
		for _, r := range f.Routes {
			wf.Routes = append(wf.Routes, webui.LBRoute{Host: r.Host, Path: r.PathPrefix, Backend: r.Backend, Redirect: r.Redirect})
		}
		out.Frontends = append(out.Frontends, wf)
	}
	for _, b := range l.Backends {
		wb := webui.LBBackend{Name: b.Name, Mode: b.Mode, Balance: b.Balance, Slots: b.Slots, Stats: st(b.Name, "BACKEND"), Servers: []webui.LBServer{}}
		for _, s := range b.Servers {
			ss := st(b.Name, s.Slot)
			if ss.Status == "" {
				ss.Status = s.Status
			}
			wb.Servers = append(wb.Servers, webui.LBServer{Slot: s.Slot, Addr: s.Addr, Weight: s.Weight, Stats: ss})
		}
		out.Backends = append(out.Backends, wb)
	}
	return out
}

// uiHandler is the web UI's handler with its token (read from
// --ui-token-file), or nil when the UI is off.
func (a *agent) uiHandler() (http.Handler, error) {
	if a.cfg.UIListen() == "" {
		return nil, nil
	}
	var token string
	if a.cfg.UITokenFile != "" {
		b, err := os.ReadFile(a.cfg.UITokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading --ui-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("--ui-token-file %s is empty", a.cfg.UITokenFile)
		}
	}
	return webui.Handler(webui.Options{Source: a.view, Token: token}), nil
}

// serveUI serves the web UI on its own --ui listener (when it has one).
func (a *agent) serveUI(ctx context.Context, h http.Handler) error {
	if a.cfg.UI == "" || a.cfg.UI == "off" || h == nil {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.UI)
	if err != nil {
		return fmt.Errorf("web UI listener: %w", err)
	}
	a.log.Info("serving the web UI", "url", "http://"+a.cfg.UI+"/ui/")
	return serveHTTP(ctx, ln, h, "web UI")
}

// uiURL is the UI's address as `drover ui` prints it ("" when off).
func (c Config) uiURL() string {
	addr := c.UIListen()
	if addr == "" {
		return ""
	}
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/ui/"
}

var _ webui.Source = (*clusterView)(nil)

// errNoUI is `drover ui`'s answer when the agent serves no UI.
var errNoUI = errors.New("the agent serves no web UI (--ui off, or no --metrics-addr)")
