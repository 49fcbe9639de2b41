package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/drover-net/drover/confgen"
	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/consul"
	"github.com/drover-net/drover/discovery/dns"
	"github.com/drover-net/drover/discovery/watch"
	"github.com/drover-net/drover/healthcheck"
	"github.com/drover-net/drover/internal/buildinfo"
	"github.com/drover-net/drover/overlay"
)

// StatusReport is what GET /v1/status returns and `drover status` prints.
type StatusReport struct {
	Version string                   `json:"version"`
	Node    string                   `json:"node"`
	Uptime  string                   `json:"uptime"`
	WGMode  string                   `json:"wg_mode"`
	Overlay overlay.Status           `json:"overlay"`
	Sync    discovery.SyncStatus     `json:"discovery"`
	Mesh    []healthcheck.PeerProbe  `json:"mesh_probes"`
	Confgen []confgen.ResourceStatus `json:"confgen,omitempty"`
	LB      *LBStatus                `json:"lb,omitempty"`
	Consul  WatchStatus              `json:"consul"`
	DNS     *dns.Status              `json:"dns,omitempty"` // nil when --dns-addr is empty
	// UI is the web UI's address ("" when off) and UIToken whether it
	// asks for the --ui-token-file token.
	UI      string `json:"ui,omitempty"`
	UIToken bool   `json:"ui_token,omitempty"`
	// JoinError is why the agent is not in the mesh yet (its first lease
	// write or registration failed; it keeps retrying), empty once joined.
	JoinError string `json:"join_error,omitempty"`
}

// WatchStatus reports the Consul watches' health and what the agent asks
// of its local Consul agent.
type WatchStatus struct {
	NodesLastContact  time.Time `json:"nodes_last_contact"`
	LeasesLastContact time.Time `json:"leases_last_contact"`
	Error             string    `json:"error,omitempty"`
	// Queries is how many blocking queries the watch hub runs (fixed by
	// what is watched, not by the number of services).
	Queries  int                 `json:"queries"`
	Requests consul.RequestStats `json:"requests"`
	// Sets are the watched service sets by consumer ("lb" with --lb).
	Sets map[string]watch.SetStats `json:"sets,omitempty"`
}

func (a *agent) report() StatusReport {
	r := a.baseReport()
	r.LB = a.lbStatus(context.Background())
	return r
}

// baseReport is the status report without the lb part, which asks HAProxy
// (the cluster view samples it every second).
func (a *agent) baseReport() StatusReport {
	_, _, nat := a.nodes.Get()
	_, _, lat := a.leases.Get()
	ws := WatchStatus{NodesLastContact: nat, LeasesLastContact: lat, Queries: a.watches.Queries(), Requests: a.consul.Requests()}
	ws.Sets = map[string]watch.SetStats{}
	if a.lbSet != nil {
		ws.Sets["lb"] = a.lbSet.Stats()
	}
	if a.dnsSet != nil {
		ws.Sets["dns"] = a.dnsSet.Stats()
	}
	if err := errors.Join(a.nodes.Err(), a.leases.Err()); err != nil {
		ws.Error = err.Error()
	}
	var cg []confgen.ResourceStatus
	if a.confgen != nil {
		cg = a.confgen.Status()
	}
	r := StatusReport{Confgen: cg, Version: buildinfo.String(), Node: a.cfg.NodeName, Uptime: time.Since(a.started).Round(time.Second).String(),
		WGMode: a.link.Mode(), Overlay: a.overlay.Status(), Consul: ws, UI: a.cfg.uiURL(), UIToken: a.cfg.UITokenFile != ""}
	// Before the first join the status socket already answers; the
	// controllers started after it are still nil.
	if a.joined.Load() {
		r.Sync, r.Mesh = a.sync.Status(), a.mesh.Status()
	}
	if a.dns != nil {
		st := a.dns.Status()
		r.DNS = &st
	}
	if e, _ := a.joinErr.Load().(string); e != "" {
		r.JoinError = e
	}
	return r
}

// serveStatus serves the local status API on a unix socket (0600) until ctx
// ends.
func (a *agent) serveStatus(ctx context.Context) error {
	path := a.cfg.StatusSocket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("status socket: %w", err)
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.report())
	})
	mux.HandleFunc("POST /v1/leave", func(w http.ResponseWriter, r *http.Request) {
		reply := make(chan error, 1)
		select {
		case a.leave <- reply:
		case <-r.Context().Done():
			return
		}
		if err := <-reply; err != nil {
			http.Error(w, "leave: "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "node %s left the mesh; its lease is free and its interface removed\n", a.cfg.NodeName)
	})
	return serveHTTP(ctx, ln, mux, "status API")
}

// serveHTTP serves h on ln until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, what string) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// apiClient talks to the local agent's status socket.
func apiClient(sock string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
}

func (c *cli) socketFlag(name, synopsis string) (*flag.FlagSet, *string) {
	fs := c.flagSet(name, synopsis)
	sock := fs.String("status-socket", envDefault(c.getenv("DROVER_STATUS_SOCKET"), DefaultConfig().StatusSocket), "unix socket of the local agent (env DROVER_STATUS_SOCKET)")
	return fs, sock
}

func (c *cli) status(args []string) int {
	fs, sock := c.socketFlag("status", "drover status [--json] [--status-socket PATH]\n\nShows what the local agent is doing: this node, its subnet and every mesh\npeer with its endpoint, subnet, last handshake, traffic and reachability.")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	body, r, err := fetchStatus(*sock)
	if err != nil {
		return c.fail("%v", err)
	}
	if *asJSON {
		c.stdout.Write(body)
		return 0
	}
	printStatus(c.stdout, r)
	return 0
}

// fetchStatus asks the agent on sock for its status report: the JSON as
// sent and decoded.
func fetchStatus(sock string) ([]byte, StatusReport, error) {
	var r StatusReport
	resp, err := apiClient(sock).Get("http://drover/v1/status")
	if err != nil {
		return nil, r, fmt.Errorf("cannot reach the agent at %s (is `drover agent` running?): %v", sock, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		err = json.Unmarshal(body, &r)
	}
	if err != nil {
		return nil, r, fmt.Errorf("reading status: %v", err)
	}
	return body, r, nil
}

func printStatus(w io.Writer, r StatusReport) {
	o := r.Overlay
	if r.JoinError != "" {
		fmt.Fprintf(w, "NOT IN THE MESH YET (retrying): %s\n", r.JoinError)
	}
	fmt.Fprintf(w, "node %s  subnet %s  interface %s (%s, mtu %d)  endpoint %s  up %s  drover %s\n",
		r.Node, o.Subnet, o.Interface, r.WGMode, o.MTU, o.Endpoint, r.Uptime, r.Version)
	if r.UI != "" {
		fmt.Fprintf(w, "web UI %s (the whole cluster; `drover ui`)\n", r.UI)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	probes := map[string]healthcheck.PeerProbe{}
	for _, p := range r.Mesh {
		probes[p.Node] = p
	}
	fmt.Fprintln(tw, "PEER\tENDPOINT\tSUBNET\tHANDSHAKE\tRX\tTX\tREACHABLE\tPROBE\tCONSUL")
	for _, p := range o.Peers {
		hs := "never"
		if p.HandshakeAge != "" {
			hs = p.HandshakeAge + " ago"
		}
		probe := "-"
		if pr, ok := probes[p.Node]; ok {
			probe = "down"
			if pr.Reachable {
				probe = "ok " + pr.RTT.Round(10*time.Microsecond).String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%v\t%s\t%s\n", p.Node, p.Endpoint, p.Subnet, hs, p.RxBytes, p.TxBytes, p.Reachable, probe, p.Health)
	}
	tw.Flush()
	for _, rej := range o.Rejections {
		fmt.Fprintf(w, "REFUSED %s\n", rej)
	}
	if o.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", o.LastError)
	}
	if h := o.Host; h.Repairs > 0 || h.LastError != "" {
		fmt.Fprintf(w, "host state (container network, firewall rules): %d repairs", h.Repairs)
		if h.Repairs > 0 {
			fmt.Fprintf(w, ", last %s ago: %s", time.Since(h.RepairedAt).Round(time.Second), h.LastRepair)
		}
		fmt.Fprintln(w)
		if h.LastError != "" {
			fmt.Fprintf(w, "host state check failed: %s\n", h.LastError)
		}
	}
	if n := o.Host.Network; n != "" {
		fmt.Fprintf(w, "container network %s (TCP MSS clamped to fit mtu %d; recreated once no container is attached)\n", n, o.MTU)
	}
	d := r.Sync
	fmt.Fprintf(w, "\nservices registered by this node: %d (consul writes %d, passes %d)\n", len(d.Registrations), d.Writes, d.Passes)
	if len(d.Placed) == len(d.Registrations) {
		for _, pl := range d.Placed {
			fmt.Fprintf(w, "  %s\n", pl) // ID: mode address:port (why)
		}
	} else {
		for _, id := range d.Registrations {
			fmt.Fprintf(w, "  %s\n", id)
		}
	}
	for _, p := range d.Warnings {
		fmt.Fprintf(w, "REGISTERED, NOT AS ASKED container %s port %d: %s\n", p.ContainerName, p.Port, p.Reason)
	}
	for _, f := range d.Failed {
		fmt.Fprintf(w, "NOT REGISTERED (Consul refused; retried) %s\n", f)
	}
	for _, p := range d.Problems {
		fmt.Fprintf(w, "SKIPPED container %s port %d: %s\n", p.ContainerName, p.Port, p.Reason)
	}
	if d.LastError != "" {
		fmt.Fprintf(w, "discovery error: %s\n", d.LastError)
	}
	for _, c := range r.Confgen {
		fmt.Fprintf(w, "confgen %s → %s: renders %d, changes %d, reloads %d", c.Resource, c.Dest, c.Renders, c.Changes, c.Reloads)
		if c.LastError != "" {
			fmt.Fprintf(w, ", ERROR %s", c.LastError)
		}
		fmt.Fprintln(w)
	}
	printLB(w, r.LB)
	printDNS(w, r.DNS)
	c := r.Consul
	fmt.Fprintf(w, "consul: %d blocking queries held (%d configured), %d requests in flight (at most %d ever); requests so far: %d blocking, %d reads, %d writes; %d throttled (429)\n",
		c.Requests.Blocking, c.Queries, c.Requests.InFlight, c.Requests.MaxInFlight, c.Requests.Total["blocking"], c.Requests.Total["read"], c.Requests.Total["write"], c.Requests.Throttled)
	for _, name := range slices.Sorted(maps.Keys(c.Sets)) {
		s := c.Sets[name]
		fmt.Fprintf(w, "consul %s set: %d services, %d pending, %d service fetches, %d full refetches\n", name, s.Services, s.Pending, s.Fetches, s.FullPasses)
	}
	if r.Consul.Error != "" {
		fmt.Fprintf(w, "consul: %s\n", r.Consul.Error)
	}
}

func (c *cli) leaveCmd(args []string) int {
	fs, sock := c.socketFlag("leave", "drover leave [--status-socket PATH]\n\nTakes this host out of the mesh for good: the running agent withdraws its\ndrover-node record, releases its subnet lease (every other host drops its\npeer and route at once), removes the WireGuard interface and exits.")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	resp, err := apiClient(*sock).Post("http://drover/v1/leave", "text/plain", nil)
	if err != nil {
		return c.fail("cannot reach the agent at %s (is `drover agent` running?): %v", *sock, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return c.fail("%s", body)
	}
	c.stdout.Write(body)
	return 0
}
