//go:build e2e && faults

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// Modes of the Consul fault proxy.
const (
	proxyPass      = "pass"       // forward everything
	proxyIndex0    = "index0"     // blocking reads answer at once with X-Consul-Index: 0
	proxySameIndex = "same-index" // blocking reads answer at once, always with the same index
	proxyEmpty     = "empty"      // one service answers [] with KnownLeader=false, again every second with a newer index
	proxySlow      = "slow"       // every request waits 2 s before it is forwarded (a 2 s RTT)
)

// faultProxy is a reverse proxy between a drover agent and its local
// Consul agent's HTTPS API, inside the host's network namespace, that
// injects the answers real Consul gives only in its bugs and bad moments
// (reliability.md §3.1). It counts the requests it sees.
type faultProxy struct {
	addr  string // 127.0.0.1:port inside the host
	srv   *http.Server
	ln    net.Listener
	up    *httputil.ReverseProxy
	mode  atomic.Value // string
	empty string       // the service proxyEmpty empties

	mu      sync.Mutex     // guards counts, total and refused
	counts  map[string]int // blocking reads per topic (path + query without index/wait)
	total   int            // every request
	refused int            // requests Consul refused (429) or cut (reset, EOF)
	// inflight cancels the requests in flight, so that a new mode applies
	// at once and not only after the blocking queries' wait (60 s).
	inflight map[*http.Request]context.CancelFunc
	emptyIdx uint64 // the index of proxyEmpty's last answer
	// conns and maxConns are drover's connections to the proxy: open now
	// and the most at once since the last countConns.
	conns, maxConns int
}

// countConns returns the most connections drover held to the proxy at
// once since the last call, and resets it to those open now.
func (p *faultProxy) countConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.maxConns
	p.maxConns = p.conns
	return n
}

func (p *faultProxy) connState(_ net.Conn, st http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch st {
	case http.StateNew:
		p.conns++
		p.maxConns = max(p.maxConns, p.conns)
	case http.StateClosed, http.StateHijacked:
		p.conns--
	}
}

// countRefusals returns the refusals since the last call and resets them.
func (p *faultProxy) countRefusals() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.refused
	p.refused = 0
	return n
}

// fakeIndex is the index proxySameIndex reports.
const fakeIndex = "987654321"

// startFaultProxy listens on 127.0.0.1:18501 in host h and forwards to
// h's Consul agent over verified TLS; it serves the agent's own certificate
// (valid for 127.0.0.1, signed by the sandbox CA drover trusts). Both sides
// speak HTTP/2 where the peer offers it, as Consul's HTTPS API does: every
// request drover has in flight is a stream of one connection, here as
// against Consul itself, so the connections Consul counts from this host
// (http_max_conns_per_client, T31) are the proxy's one plus the harness's
// own short requests — not one per request in flight, as an HTTP/1.1 relay
// would make them.
func startFaultProxy(sb *sandbox.Sandbox, h sandbox.Host, emptyService string) (*faultProxy, error) {
	caPEM, err := os.ReadFile(sb.CAFile())
	if err != nil {
		return nil, fmt.Errorf("reading the sandbox CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("sandbox CA: no certificate")
	}
	upstream := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return sandbox.DialNetns(ctx, h.NetNS, network, addr)
		},
	}
	target, _ := url.Parse(sandbox.ConsulURL)
	p := &faultProxy{addr: "127.0.0.1:18501", empty: emptyService, counts: map[string]int{},
		inflight: map[*http.Request]context.CancelFunc{}, emptyIdx: 987654321}
	p.mode.Store(proxyPass)
	p.up = httputil.NewSingleHostReverseProxy(target)
	p.up.Transport = upstream
	p.up.FlushInterval = -1
	p.up.ModifyResponse = p.rewrite
	p.up.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if !errors.Is(err, context.Canceled) {
			p.mu.Lock()
			p.refused++
			p.mu.Unlock()
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	sec := filepath.Join(sb.Options().Dir, "security")
	cert, err := tls.LoadX509KeyPair(filepath.Join(sec, "sandbox-client-consul-0.pem"), filepath.Join(sec, "sandbox-client-consul-0-key.pem"))
	if err != nil {
		return nil, fmt.Errorf("loading the agent certificate: %w", err)
	}
	ln, err := listenNetns(h.NetNS, p.addr)
	if err != nil {
		return nil, err
	}
	p.ln = ln
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, ConnState: p.connState,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}}
	go func() { _ = p.srv.ServeTLS(p.ln, "", "") }()
	return p, nil
}

// URL is the proxy's address for --consul-addr.
func (p *faultProxy) URL() string { return "https://" + p.addr }

func (p *faultProxy) close() { _ = p.srv.Close() }

// setMode switches the mode and ends every request in flight (the client
// gets a 502, as from an agent that went away, and asks again).
func (p *faultProxy) setMode(m string) {
	p.mode.Store(m)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cancel := range p.inflight {
		cancel()
	}
}

// blocking reports whether r is one of the blocking reads the watches make.
func blocking(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, pre := range []string{"/v1/health/service/", "/v1/catalog/services", "/v1/kv/"} {
		if strings.HasPrefix(r.URL.Path, pre) {
			return true
		}
	}
	return false
}

// topicOf is r's path and query without index and wait.
func topicOf(r *http.Request) string {
	q := r.URL.Query()
	q.Del("index")
	q.Del("wait")
	return r.URL.Path + "?" + q.Encode()
}

// snapshot returns the counts so far and resets them.
func (p *faultProxy) snapshot() (total int, perTopic map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	total, perTopic = p.total, p.counts
	p.total, p.counts = 0, map[string]int{}
	return total, perTopic
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	r = r.WithContext(ctx)
	mode := p.mode.Load().(string)
	block := blocking(r)
	p.mu.Lock()
	p.total++
	if block {
		p.counts[topicOf(r)]++
	}
	p.inflight[r] = cancel
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.inflight, r)
		p.mu.Unlock()
	}()
	if mode == proxySlow {
		select {
		case <-ctx.Done():
			w.WriteHeader(http.StatusBadGateway)
			return
		case <-time.After(2 * time.Second):
		}
		p.up.ServeHTTP(w, r)
		return
	}
	if !block || mode == proxyPass {
		p.up.ServeHTTP(w, r)
		return
	}
	if mode == proxyEmpty {
		if r.URL.Path != "/v1/health/service/"+p.empty {
			p.up.ServeHTTP(w, r)
			return
		}
		p.mu.Lock()
		idx := p.emptyIdx
		p.mu.Unlock()
		if r.URL.Query().Get("index") == strconv.FormatUint(idx, 10) {
			// A stale server that keeps answering: a second, newer
			// empty answer every second.
			select {
			case <-ctx.Done():
				w.WriteHeader(http.StatusBadGateway)
				return
			case <-time.After(time.Second):
			}
			p.mu.Lock()
			p.emptyIdx++
			idx = p.emptyIdx
			p.mu.Unlock()
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("X-Consul-Index", strconv.FormatUint(idx, 10))
		h.Set("X-Consul-KnownLeader", "false")
		h.Set("X-Consul-LastContact", "60000")
		_, _ = w.Write([]byte("[]"))
		return
	}
	// index0, same-index: answer at once (no blocking upstream).
	r2 := r.Clone(r.Context())
	q := r2.URL.Query()
	q.Del("index")
	q.Del("wait")
	r2.URL.RawQuery = q.Encode()
	p.up.ServeHTTP(w, r2)
}

// rewrite sets the index header of blocking reads in the index modes.
func (p *faultProxy) rewrite(resp *http.Response) error {
	if resp.StatusCode == http.StatusTooManyRequests {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
	}
	if !blocking(resp.Request) {
		return nil
	}
	switch p.mode.Load().(string) {
	case proxyIndex0:
		resp.Header.Set("X-Consul-Index", "0")
	case proxySameIndex:
		resp.Header.Set("X-Consul-Index", fakeIndex)
	}
	return nil
}

// listenNetns listens on addr inside network namespace netns.
func listenNetns(netns, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread dies with this goroutine, so its
		// namespace cannot leak into other goroutines.
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("opening netns %s: %w", netns, err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("entering netns %s: %w", netns, err)}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

// cpuTicks returns the user+system clock ticks process pid used so far.
func cpuTicks(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return u + st
}

// busiest returns the topic with the most requests and its count.
func busiest(perTopic map[string]int) (string, int) {
	keys := make([]string, 0, len(perTopic))
	for k := range perTopic {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return perTopic[keys[i]] > perTopic[keys[j]] })
	if len(keys) == 0 {
		return "", 0
	}
	return keys[0], perTopic[keys[0]]
}

// lbWatcher samples h1's lb every 250 ms: the fewest UP servers of a
// backend seen, and runtime ops and reloads at the start.
type lbWatcher struct {
	stop    chan struct{}
	done    chan struct{}
	min     atomic.Int64           // fewest servers UP (HAProxy's checks included)
	present atomic.Int64           // fewest servers drover keeps in the backend (not in MAINT)
	worst   atomic.Pointer[string] // the backend's server statuses in the sample with fewest UP
	// unscraped counts samples without HAProxy's server states (drover
	// status could not read them), left out of min.
	unscraped atomic.Int64
}

func watchUp(ctx context.Context, sb *sandbox.Sandbox, be string) *lbWatcher {
	w := &lbWatcher{stop: make(chan struct{}), done: make(chan struct{})}
	w.min.Store(1 << 30)
	w.present.Store(1 << 30)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, err := lbStateErr(ctx, sb); err == nil {
				if !st.scraped(be) {
					// HAProxy's stats socket did not answer drover status
					// (e.g. during a reload): no figure for HAProxy's view.
					w.unscraped.Add(1)
				} else if n := int64(len(st.upServers(be))); n < w.min.Load() {
					w.min.Store(n)
					statuses := st.statuses(be)
					w.worst.Store(&statuses)
				}
				if n := int64(len(st.runtimeServers(be))); n < w.present.Load() {
					w.present.Store(n)
				}
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// end stops sampling and returns the fewest UP servers seen.
func (w *lbWatcher) end() int {
	close(w.stop)
	<-w.done
	return int(w.min.Load())
}

// worstSample returns the server statuses of the sample with the fewest
// servers UP ("" before any); call it after end.
func (w *lbWatcher) worstSample() string {
	if p := w.worst.Load(); p != nil {
		return *p
	}
	return ""
}

// fewestPresent returns the fewest servers drover kept in the backend
// (UP or DOWN, not in maintenance); call it after end.
func (w *lbWatcher) fewestPresent() int { return int(w.present.Load()) }

// lbStateErr is lbState for goroutines: it returns the error.
func lbStateErr(ctx context.Context, sb *sandbox.Sandbox) (lbStatus, error) {
	out, err := sb.Output(ctx, "h1", "drover", "status", "--json")
	if err != nil {
		return lbStatus{}, err
	}
	var st lbStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return lbStatus{}, fmt.Errorf("drover status --json: %w", err)
	}
	return st, nil
}

// proxyWindow is what one fault window of the proxy cases measured.
type proxyWindow struct {
	reqs, busiestN     int
	busiest            string
	perSec, busiestSec float64
	cpuPct             float64
	minUp, present     int
	ops, reloads       int64
	secs               float64
}

func (w proxyWindow) figures() []any {
	return []any{"req_s", fmt.Sprintf("%.1f", w.perSec), "busiest_topic_req_s", fmt.Sprintf("%.1f", w.busiestSec),
		"cpu", fmt.Sprintf("%.0f%%", w.cpuPct), "backends_removed", 3 - w.present, "down_in_haproxy", 3 - w.minUp,
		"runtime_ops", w.ops, "reloads", w.reloads}
}

// measureWindow runs the proxy in mode for d and measures drover's
// requests, its CPU and the web backend on h1.
func measureWindow(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, p *faultProxy, mode string, d time.Duration) proxyWindow {
	t.Helper()
	h1, _ := sb.HostByName("h1")
	pid := sb.ProcessPID(h1, sandbox.ProcAgent)
	before := lbState(ctx, t, sb)
	p.setMode(mode)
	p.snapshot()
	ticks := cpuTicks(pid)
	w := watchUp(ctx, sb, "web")
	begin := time.Now()
	time.Sleep(d)
	total, per := p.snapshot()
	secs := time.Since(begin).Seconds()
	used := cpuTicks(pid) - ticks
	minUp := w.end()
	p.setMode(proxyPass)
	after := lbState(ctx, t, sb)
	blockingN := 0
	for _, n := range per {
		blockingN += n
	}
	top, n := busiest(per)
	r := proxyWindow{reqs: total, busiest: top, busiestN: n, perSec: float64(blockingN) / secs, busiestSec: float64(n) / secs,
		cpuPct: float64(used) / secs, minUp: minUp, present: w.fewestPresent(), ops: after.LB.RuntimeOps - before.LB.RuntimeOps,
		reloads: after.LB.Reloads - before.LB.Reloads, secs: secs}
	t.Logf("mode %s for %.0fs: %d requests (%d blocking reads, busiest %s %d), drover cpu %.0f%%, web UP ≥ %d, runtime ops %d, reloads %d",
		mode, secs, total, blockingN, top, n, r.cpuPct, minUp, r.ops, r.reloads)
	return r
}

// TestFaultConsulProxy runs the cases that need answers real Consul gives
// only in its bugs (T8, T9) and the agent connection limit (T31): h1's
// agent talks to its Consul agent through the fault proxy; web has 3
// instances on h2 behind h1's HAProxy.
func TestFaultConsulProxy(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "fp", Hosts: 2, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	waitNetwork(ctx, t, sb, "h1", "h2")
	for i := 1; i <= 3; i++ {
		runLB(ctx, t, sb, "h2", fmt.Sprintf("web-%d", i))
	}
	waitUp(ctx, t, sb, "web", 3)
	h1, _ := sb.HostByName("h1")
	p, err := startFaultProxy(sb, h1, "web")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	restartAgent := func(extra ...string) {
		if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		if err := sb.Start(ctx, "h1", sandbox.ProcAgent, extra...); err != nil {
			t.Fatal(err)
		}
	}
	restartAgent("--consul-addr", p.URL())
	waitUp(ctx, t, sb, "web", 3)
	window := envDuration("DROVER_FAULTS_PROXY_WINDOW", 30*time.Second)
	if os.Getenv("DROVER_FAULTS_SHORT") != "" {
		window = 10 * time.Second
	}
	base := measureWindow(ctx, t, sb, p, proxyPass, window)
	t.Logf("baseline through the proxy: %.2f blocking reads/s", base.perSec)

	// R4's floor: at least 100 ms between the queries of one watch.
	const maxTopicRate = 10.0
	t.Run("T8", func(t *testing.T) {
		for _, c := range []struct{ mode, title string }{
			{proxyIndex0, "blocking reads answer at once with X-Consul-Index 0"},
			{proxySameIndex, "blocking reads answer at once with the same index forever"},
		} {
			begin := time.Now()
			w := measureWindow(ctx, t, sb, p, c.mode, window)
			pass := w.busiestSec <= maxTopicRate && w.present == 3 && w.cpuPct < 25
			r := faultResult{Case: "T8-" + c.mode, Title: c.title + fmt.Sprintf(" (fault proxy, %.0f s)", w.secs), Promises: []string{"P8"},
				Figures: kv(append(w.figures(), "baseline_req_s", fmt.Sprintf("%.2f", base.perSec))...),
				Target:  fmt.Sprintf("busiest_topic_req_s≤%.0f backends_removed=0 cpu<25%%", maxTopicRate),
				Pass:    pass}
			if !pass {
				r.Note = "busiest topic " + w.busiest
			}
			recordFault(t, begin, r)
			waitUp(ctx, t, sb, "web", 3)
		}
	})

	t.Run("T9", func(t *testing.T) {
		begin := time.Now()
		w := measureWindow(ctx, t, sb, p, proxyEmpty, window)
		var back time.Duration
		recovered := time.Now()
		harness.Eventually(t, 30*time.Second, "web has 3 UP once Consul answers truly", func() error {
			if up := lbState(ctx, t, sb).upServers("web"); len(up) != 3 {
				return fmt.Errorf("UP %v", up)
			}
			back = time.Since(recovered)
			return nil
		})
		recordFault(t, begin, faultResult{Case: "T9", Title: fmt.Sprintf("web (3 instances) answers [] with KnownLeader=false, LastContact 60 s, a newer empty answer every second, for %.0f s (fault proxy)", w.secs),
			Promises: []string{"P2"},
			Figures:  kv(append(w.figures(), "up_again_after", back.Round(10*time.Millisecond))...),
			Target:   "backends_removed=0 runtime_ops=0 reloads=0",
			Pass:     w.present == 3 && w.ops == 0 && w.reloads == 0})
	})

	t.Run("T32", func(t *testing.T) { faultT32(ctx, t, sb, p) })

	t.Run("T31", func(t *testing.T) {
		begin := time.Now()
		// More watches than the limit: 12 more lb services, each a
		// blocking query of its own today.
		const extra = 12
		for k := 0; k < extra; k++ {
			s := t2svc{on: true, weight: 10}
			if err := s.register(ctx, sb, 20+k); err != nil {
				t.Fatal(err)
			}
		}
		harness.Eventually(t, 60*time.Second, "the extra services in h1's lb", func() error {
			st := lbState(ctx, t, sb)
			have := map[string]bool{}
			for _, b := range st.LB.Backends {
				have[b.Name] = true
			}
			for k := 0; k < extra; k++ {
				if !have[fmt.Sprintf("t2svc%d", 20+k)] {
					out, _ := sb.Output(ctx, "h1", "drover", "status")
					return fmt.Errorf("no backend t2svc%d:\n%s", 20+k, out)
				}
			}
			return nil
		})
		if err := sb.SetConsulExtra("h1", "limits {\n  http_max_conns_per_client = 10\n}\n"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sb.SetConsulExtra("h1", "") })
		// The agent stops first: with it connected, the limit would also
		// refuse the sandbox's own readiness checks from 127.0.0.1.
		if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		if _, err := sb.Kill("h1", sandbox.ProcConsul); err != nil {
			t.Fatal(err)
		}
		if err := sb.Start(ctx, "h1", sandbox.ProcConsul); err != nil {
			t.Fatal(err)
		}
		if err := sb.Start(ctx, "h1", sandbox.ProcAgent, "--consul-addr", p.URL()); err != nil {
			t.Fatal(err)
		}
		waitUp(ctx, t, sb, "web", 3)
		p.countRefusals()
		p.countConns()
		w := measureWindow(ctx, t, sb, p, proxyPass, 2*window)
		refused := p.countRefusals()
		conns := p.countConns()
		agentLog, _ := os.ReadFile(filepath.Join(h1.Dir, "agent.log"))
		st := lbState(ctx, t, sb)
		pass := w.busiestSec <= maxTopicRate && w.present == 3 && w.cpuPct < 25 && !st.LB.Stale
		r := faultResult{Case: "T31", Title: fmt.Sprintf("h1's Consul agent with http_max_conns_per_client = 10, %d lb services (%.0f s)", extra+1, w.secs),
			Promises: []string{"P2", "P8"},
			Figures:  kv(append(w.figures(), "refused_by_consul", refused, "drover_conns_max", conns, "lb_stale", yesNo(st.LB.Stale))...),
			Target:   fmt.Sprintf("busiest_topic_req_s≤%.0f backends_removed=0 cpu<25%% refused_by_consul=0 drover_conns_max≤2 lb_stale=no", maxTopicRate),
			Pass:     pass && refused == 0 && conns <= 2}
		if refused > 0 {
			log := string(agentLog)
			var cs struct {
				Consul struct {
					Requests struct {
						Blocking    int64 `json:"blocking"`
						MaxInFlight int64 `json:"max_in_flight"`
					} `json:"requests"`
				} `json:"consul"`
			}
			out, _ := sb.Output(ctx, "h1", "drover", "status", "--json")
			_ = json.Unmarshal([]byte(out), &cs)
			r.Note = fmt.Sprintf("Consul refused or cut %d of drover's requests (429 \"too many concurrent connections\"): drover held %d blocking queries at the end, at most %d requests in flight and at most %d connections to the proxy; the agent log has %d lines with 429, %d failed mesh check updates",
				refused, cs.Consul.Requests.Blocking, cs.Consul.Requests.MaxInFlight, conns, strings.Count(log, "429"), strings.Count(log, "reporting the mesh check failed"))
		}
		recordFault(t, begin, r)
		for k := 0; k < extra; k++ {
			_ = deregisterT2(ctx, sb, 20+k)
		}
	})
}

// droverMetric returns a metric of h1's agent (its /metrics), -1 if absent.
func droverMetric(ctx context.Context, sb *sandbox.Sandbox, name string) float64 {
	out, err := sb.Output(ctx, "h1", "curl", "-sf", "-m", "5", "http://127.0.0.1:9714/metrics")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}

// faultT32: every request from h1's agent to Consul takes 2 s more (the
// fault proxy's slow mode) for 10 minutes (60 s with DROVER_FAULTS_SHORT):
// goroutines and open files stay flat, and a change still reaches the lb.
func faultT32(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, p *faultProxy) {
	begin := time.Now()
	d := envDuration("DROVER_FAULTS_T32_FOR", 10*time.Minute)
	if os.Getenv("DROVER_FAULTS_SHORT") != "" {
		d = 60 * time.Second
	}
	g0, f0 := droverMetric(ctx, sb, "go_goroutines"), droverMetric(ctx, sb, "process_open_fds")
	p.setMode(proxySlow)
	w := watchUp(ctx, sb, "web")
	start := time.Now()
	gMax, fMax, inflightMax := g0, f0, 0
	sample := func() {
		gMax = max(gMax, droverMetric(ctx, sb, "go_goroutines"))
		fMax = max(fMax, droverMetric(ctx, sb, "process_open_fds"))
		p.mu.Lock()
		inflightMax = max(inflightMax, len(p.inflight))
		p.mu.Unlock()
	}
	// A change half-way: how long it takes through the slow Consul.
	var latency time.Duration
	seen := false
	changed := false
	var changeAt time.Time
	for time.Since(start) < d {
		sample()
		if !changed && time.Since(start) > d/2 {
			s := t2svc{on: true, weight: 9}
			if err := s.register(ctx, sb, 80); err != nil {
				t.Fatal(err)
			}
			changed, changeAt = true, time.Now()
		}
		if changed && !seen {
			for _, b := range lbState(ctx, t, sb).LB.Backends {
				if b.Name == "t2svc80" {
					seen, latency = true, time.Since(changeAt)
				}
			}
		}
		time.Sleep(2 * time.Second)
	}
	g1, f1 := droverMetric(ctx, sb, "go_goroutines"), droverMetric(ctx, sb, "process_open_fds")
	p.setMode(proxyPass)
	minUp := w.end()
	present := w.fewestPresent()
	_ = deregisterT2(ctx, sb, 80)
	flat := g1 <= g0*1.2+10 && f1 <= f0*1.2+10
	recordFault(t, begin, faultResult{Case: "T32", Title: fmt.Sprintf("2 s added to every drover→Consul request for %s (fault proxy)", d),
		Promises: []string{"P8"},
		Figures: kv("goroutines", fmt.Sprintf("%.0f→%.0f(max %.0f)", g0, g1, gMax), "open_fds", fmt.Sprintf("%.0f→%.0f(max %.0f)", f0, f1, fMax),
			"max_requests_in_flight", inflightMax, "update_latency", latency.Round(100*time.Millisecond), "update_seen", yesNo(seen),
			"backends_removed", 3-present, "down_in_haproxy", 3-minUp),
		Target: "goroutines and fds flat (end ≤ start×1.2+10) update_seen=yes backends_removed=0",
		Pass:   flat && seen && present == 3})
}
