package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/drover-net/drover/discovery/dns"
	"github.com/drover-net/drover/internal/buildinfo"
	"github.com/drover-net/drover/internal/webui"
)

// collector turns the agent's status snapshots into Prometheus metrics at
// scrape time, so that the core packages keep no metric state of their own
// and the metrics can never disagree with `drover status`.
type collector struct{ a *agent }

var (
	mBuild        = desc("drover_build_info", "Build information; always 1.", "version")
	mPeers        = desc("drover_overlay_peers", "WireGuard peers configured.")
	mPeerUp       = desc("drover_overlay_peer_reachable", "1 when the peer's last handshake is recent (3 min).", "peer")
	mPeerAge      = desc("drover_overlay_peer_handshake_age_seconds", "Seconds since the peer's last handshake (-1: never).", "peer")
	mPeerRx       = desc("drover_overlay_peer_receive_bytes", "Bytes received from the peer.", "peer")
	mPeerTx       = desc("drover_overlay_peer_transmit_bytes", "Bytes sent to the peer.", "peer")
	mRejected     = desc("drover_overlay_rejected_records", "drover-node records refused (forged, conflicting or malformed).")
	mApplies      = desc("drover_overlay_applies_total", "Reconciles that changed the device or routes.")
	mOverlayErr   = desc("drover_overlay_error", "1 when the last overlay reconcile failed.")
	mLastApplied  = desc("drover_overlay_last_applied_timestamp_seconds", "When the overlay last changed something.")
	mOvPasses     = desc("drover_overlay_reconciles_total", "Overlay reconcile passes (every change, kick and check).")
	mOvPassDur    = desc("drover_overlay_reconcile_duration_seconds", "Duration of the last overlay reconcile pass.")
	mOvSuccess    = desc("drover_overlay_last_success_timestamp_seconds", "End of the last overlay reconcile pass without error.")
	mHostRepairs  = desc("drover_overlay_host_repairs_total", "Times the container network or firewall rules were put back after someone else removed them.")
	mRecRepairs   = desc("drover_overlay_record_repairs_total", "Times this host's drover-node record was missing or changed on the local Consul agent and written back.")
	mHostErr      = desc("drover_overlay_host_error", "1 when the last check of the container network and firewall rules failed.")
	mSyncDur      = desc("drover_discovery_pass_duration_seconds", "Duration of the last completed Docker→Consul sync pass.")
	mProbeUp      = desc("drover_mesh_probe_reachable", "1 when the peer answers the end-to-end probe through the tunnel.", "peer")
	mProbeRTT     = desc("drover_mesh_probe_rtt_seconds", "Round-trip time of the last successful end-to-end probe.", "peer")
	mRegs         = desc("drover_discovery_registrations", "Container service instances this node has registered.")
	mSkipped      = desc("drover_discovery_skipped", "Containers (or ports) skipped because of bad labels; 1 per problem.", "container", "port", "reason")
	mWrites       = desc("drover_discovery_consul_writes_total", "Consul registrations, deregistrations and TTL updates made.")
	mPasses       = desc("drover_discovery_passes_total", "Completed Docker→Consul sync passes.")
	mPending      = desc("drover_discovery_pending", "1 while a failed sync pass is being retried.")
	mEvents       = desc("drover_discovery_docker_events_total", "Docker container events received.")
	mReconnects   = desc("drover_discovery_docker_reconnects_total", "Docker event stream reconnections.")
	mLastPass     = desc("drover_discovery_last_pass_timestamp_seconds", "When the last sync pass completed.")
	mCgRenders    = desc("drover_confgen_renders_total", "Renders of a confgen resource.", "resource")
	mCgChanges    = desc("drover_confgen_changes_total", "Times a confgen resource replaced its file.", "resource")
	mCgReloads    = desc("drover_confgen_reloads_total", "Successful reload_cmd runs of a confgen resource.", "resource")
	mCgError      = desc("drover_confgen_error", "1 when the last render of a confgen resource failed (old file kept).", "resource")
	mLBRequests   = desc("drover_lb_requests_total", "Requests (http) or sessions (tcp) per HAProxy frontend, backend and server, from show stat.", "proxy", "server", "kind")
	mLBResponses  = desc("drover_lb_responses_total", "HTTP responses by class (1xx…5xx, other) per frontend, backend and server.", "proxy", "server", "kind", "class")
	mLBErrors     = desc("drover_lb_errors_total", "HAProxy errors: bad requests (request), failed connections to servers (connect), bad or aborted responses (response).", "proxy", "server", "kind", "error")
	mLBRespTime   = desc("drover_lb_response_time_seconds", "Average response time of the last 1024 requests per backend and server.", "proxy", "server", "kind")
	mLBAccess     = desc("drover_lb_access_log_lines_total", "Access log lines HAProxy sent to the agent.")
	mLBAccessDrop = desc("drover_lb_access_log_dropped_total", "Access log lines not written because of --lb-access-log-rate.")
	mLBServers    = desc("drover_lb_servers", "Servers in use per backend and HAProxy status (UP, DOWN, MAINT, ...).", "backend", "status")
	mLBOps        = desc("drover_lb_runtime_ops_total", "Server changes applied through the HAProxy runtime API (no reload).")
	mLBReloads    = desc("drover_lb_reloads_total", "Successful HAProxy reloads.")
	mLBFailed     = desc("drover_lb_failed_reloads_total", "HAProxy reloads that failed (last-known-good config restored).")
	mLBInvalid    = desc("drover_lb_validation_failures_total", "Configs refused by haproxy -c (never installed).")
	mLBStale      = desc("drover_lb_stale", "1 while the Consul view is not trusted and HAProxy is kept as it is.")
	mLBStaleSecs  = desc("drover_lb_stale_seconds", "How long the Consul view has been untrusted (0 when fresh).")
	mLBHolding    = desc("drover_lb_holding_shrinks", "Suspicious backend shrinks waiting for confirmation.")
	mLBApplyDur   = desc("drover_lb_last_apply_duration_seconds", "Duration of the last applied lb change (runtime ops or reload).")
	mLBLastApply  = desc("drover_lb_last_apply_timestamp_seconds", "When the lb last changed HAProxy.")
	mConsulReq    = desc("drover_consul_requests_total", "HTTP requests sent to the local Consul agent, by kind (blocking: a query waiting on an index or hash; read; write).", "kind")
	mConsulFlight = desc("drover_consul_requests_in_flight", "Requests to the local Consul agent in flight now (each holds a connection).")
	mConsulMax    = desc("drover_consul_requests_in_flight_max", "Most requests to the local Consul agent ever in flight at once since the agent started.")
	mConsulBlock  = desc("drover_consul_blocking_queries", "Blocking queries waiting on the local Consul agent now.")
	mConsulQuery  = desc("drover_consul_watch_queries", "Blocking queries the watch hub runs (fixed by what is watched, not by the number of services).")
	mConsulThrot  = desc("drover_consul_throttled_total", "Answers of the local Consul agent that were HTTP 429 (too many connections from this client).")
	mSetServices  = desc("drover_consul_set_services", "Services in a watched service set.", "set")
	mSetFetches   = desc("drover_consul_set_fetches_total", "Non-blocking /v1/health/service/<name> fetches made by a service set.", "set")
	mSetFull      = desc("drover_consul_set_full_refetches_total", "Catalog moves no check change explained, after which a service set fetched every service again.", "set")
	mDNSQueries   = desc("drover_dns_queries_total", "DNS queries answered (from Consul or forwarded), by rcode of the reply.", "rcode")
	mDNSForwarded = desc("drover_dns_forwarded_total", "DNS queries outside --dns-domain forwarded to an upstream resolver.")
	mDNSFwdErrors = desc("drover_dns_forward_errors_total", "Forwarded DNS queries no upstream answered in time (SERVFAIL to the client).")
	mDNSRefused   = desc("drover_dns_refused_total", "DNS queries refused: their source is neither loopback, --cluster-cidr nor --dns-allow.")
	mDNSLatency   = desc("drover_dns_request_duration_seconds", "Time from a DNS query's arrival to its reply (forwarded ones included).")
	mDNSUp        = desc("drover_dns_listening", "1 while the DNS server's UDP and TCP listeners are up.")
	mDNSInstances = desc("drover_dns_instances", "Passing instances the DNS server answers from.")
	mDNSIndexAt   = desc("drover_dns_index_timestamp_seconds", "When the DNS server last took a new read of the services.")
	mWatchContact = desc("drover_consul_watch_last_contact_timestamp_seconds", "Last successful Consul read of a watch.", "topic")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mBuild, mPeers, mPeerUp, mPeerAge, mPeerRx, mPeerTx, mRejected, mApplies, mOverlayErr,
		mLastApplied, mProbeUp, mProbeRTT, mRegs, mSkipped, mWrites, mPasses, mPending, mEvents, mReconnects, mLastPass, mWatchContact, mConsulReq, mConsulFlight, mConsulMax, mConsulBlock, mConsulQuery, mConsulThrot, mSetServices, mSetFetches, mSetFull, mCgRenders, mCgChanges, mCgReloads, mCgError,
		mOvPasses, mOvPassDur, mOvSuccess, mHostRepairs, mRecRepairs, mHostErr, mSyncDur,
		mLBAccess, mLBAccessDrop, mLBRequests, mLBResponses, mLBErrors, mLBRespTime, mLBServers, mLBOps, mLBReloads, mLBFailed, mLBInvalid, mLBStale, mLBStaleSecs, mLBHolding, mLBApplyDur, mLBLastApply,
		mDNSQueries, mDNSForwarded, mDNSFwdErrors, mDNSRefused, mDNSLatency, mDNSUp, mDNSInstances, mDNSIndexAt} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	r := c.a.report()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	cnt := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(mBuild, 1, buildinfo.String())
	o := r.Overlay
	g(mPeers, float64(len(o.Peers)))
	for _, p := range o.Peers {
		g(mPeerUp, b2f(p.Reachable), p.Node)
		age := -1.0
		if !p.LastHandshake.IsZero() {
			age = time.Since(p.LastHandshake).Seconds()
		}
		g(mPeerAge, age, p.Node)
		g(mPeerRx, float64(p.RxBytes), p.Node)
		g(mPeerTx, float64(p.TxBytes), p.Node)
	}
	g(mRejected, float64(len(o.Rejections)))
	cnt(mApplies, float64(o.Applies))
	g(mOverlayErr, b2f(o.LastError != ""))
	g(mLastApplied, ts(o.LastApplied))
	cnt(mOvPasses, float64(o.Reconciles))
	g(mOvPassDur, o.LastPassDur.Seconds())
	g(mOvSuccess, ts(o.LastSuccess))
	cnt(mHostRepairs, float64(o.Host.Repairs))
	cnt(mRecRepairs, float64(o.RecordRepairs))
	g(mHostErr, b2f(o.Host.LastError != ""))
	for _, p := range r.Mesh {
		g(mProbeUp, b2f(p.Reachable), p.Node)
		g(mProbeRTT, p.RTT.Seconds(), p.Node)
	}
	d := r.Sync
	g(mRegs, float64(len(d.Registrations)))
	for _, p := range d.Problems {
		g(mSkipped, 1, p.ContainerName, strconv.Itoa(p.Port), p.Reason)
	}
	cnt(mWrites, float64(d.Writes))
	cnt(mPasses, float64(d.Passes))
	g(mPending, b2f(d.Pending))
	cnt(mEvents, float64(d.DockerEvents))
	cnt(mReconnects, float64(d.Reconnects))
	g(mLastPass, ts(d.LastPass))
	g(mSyncDur, d.LastPassDur.Seconds())
	for _, c := range r.Confgen {
		name := filepath.Base(c.Resource)
		ch <- prometheus.MustNewConstMetric(mCgRenders, prometheus.CounterValue, float64(c.Renders), name)
		ch <- prometheus.MustNewConstMetric(mCgChanges, prometheus.CounterValue, float64(c.Changes), name)
		ch <- prometheus.MustNewConstMetric(mCgReloads, prometheus.CounterValue, float64(c.Reloads), name)
		g(mCgError, b2f(c.LastError != ""), name)
	}
	if l := r.LB; l != nil {
		for _, b := range l.Backends {
			by := map[string]int{}
			for _, s := range b.Servers {
				by[s.Status]++
			}
			for st, n := range by {
				g(mLBServers, float64(n), b.Name, st)
			}
		}
		cnt(mLBOps, float64(l.RuntimeOps))
		cnt(mLBReloads, float64(l.Reloads))
		cnt(mLBFailed, float64(l.FailedReloads))
		cnt(mLBInvalid, float64(l.ValidationFails))
		g(mLBStale, b2f(l.Stale))
		stale := 0.0
		if l.Stale {
			stale = time.Since(l.StaleSince).Seconds()
		}
		g(mLBStaleSecs, stale)
		g(mLBHolding, float64(len(l.Holding)))
		g(mLBApplyDur, l.LastApplyDur.Seconds())
		g(mLBLastApply, ts(l.LastApply))
	}
	if c.a.access != nil {
		cnt(mLBAccess, float64(c.a.access.lines.Load()))
		cnt(mLBAccessDrop, float64(c.a.access.dropped.Load()))
	}
	if c.a.haproxy != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		rows, err := c.a.haproxy.Stats(ctx)
		cancel()
		if err == nil {
			counter := func(d *prometheus.Desc, v float64, l ...string) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
			}
			for _, row := range rows {
				counter(mLBRequests, float64(row.Requests), row.Proxy, row.Server, row.Kind)
				for class, n := range row.Responses {
					counter(mLBResponses, float64(n), row.Proxy, row.Server, row.Kind, class)
				}
				counter(mLBErrors, float64(row.ErrReq), row.Proxy, row.Server, row.Kind, "request")
				counter(mLBErrors, float64(row.ErrConn), row.Proxy, row.Server, row.Kind, "connect")
				counter(mLBErrors, float64(row.ErrResp), row.Proxy, row.Server, row.Kind, "response")
				if row.Kind != "frontend" {
					g(mLBRespTime, float64(row.RTimeMs)/1000, row.Proxy, row.Server, row.Kind)
				}
			}
		}
	}
	if d := r.DNS; d != nil {
		for rc, n := range d.Stats.Queries {
			ch <- prometheus.MustNewConstMetric(mDNSQueries, prometheus.CounterValue, float64(n), rc)
		}
		cnt(mDNSForwarded, float64(d.Stats.Forwarded))
		cnt(mDNSFwdErrors, float64(d.Stats.ForwardErrors))
		cnt(mDNSRefused, float64(d.Stats.Refused))
		buckets := make(map[float64]uint64, len(dns.LatencyBuckets))
		for i, b := range dns.LatencyBuckets {
			buckets[b] = d.Stats.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(mDNSLatency, d.Stats.LatencyCount, d.Stats.LatencySum, buckets)
		g(mDNSUp, b2f(d.Listening))
		g(mDNSInstances, float64(d.Instances))
		g(mDNSIndexAt, ts(d.IndexAt))
	}
	cr := r.Consul.Requests
	for _, k := range []string{"blocking", "read", "write"} {
		ch <- prometheus.MustNewConstMetric(mConsulReq, prometheus.CounterValue, float64(cr.Total[k]), k)
	}
	g(mConsulFlight, float64(cr.InFlight))
	g(mConsulMax, float64(cr.MaxInFlight))
	g(mConsulBlock, float64(cr.Blocking))
	g(mConsulQuery, float64(r.Consul.Queries))
	cnt(mConsulThrot, float64(cr.Throttled))
	for name, s := range r.Consul.Sets {
		g(mSetServices, float64(s.Services), name)
		ch <- prometheus.MustNewConstMetric(mSetFetches, prometheus.CounterValue, float64(s.Fetches), name)
		ch <- prometheus.MustNewConstMetric(mSetFull, prometheus.CounterValue, float64(s.FullPasses), name)
	}
	g(mWatchContact, ts(r.Consul.NodesLastContact), "nodes")
	g(mWatchContact, ts(r.Consul.LeasesLastContact), "leases")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func ts(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// serveMetrics serves /metrics, /healthz (the process answers) and /readyz
// (the overlay and the Docker→Consul sync have each completed a pass) on
// addr until ctx ends, and the web UI when it has no listener of its own
// (ui non-nil and --ui empty). An empty addr disables it.
func (a *agent) serveMetrics(ctx context.Context, addr string, ui http.Handler) error {
	if addr == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{a}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		r := a.report()
		if r.Overlay.Subnet == "" || r.Sync.Passes == 0 {
			http.Error(w, "not ready: waiting for the first overlay reconcile and sync pass", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if ui != nil && a.cfg.UI == "" {
		for _, p := range webui.Paths {
			mux.Handle(p, ui)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	if ui != nil && a.cfg.UI == "" {
		a.log.Info("serving the web UI on the metrics listener", "url", a.cfg.uiURL())
	}
	a.log.Info("serving metrics", "addr", addr)
	return serveHTTP(ctx, ln, mux, "metrics")
}
