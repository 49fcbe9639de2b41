// Command drover-demo is the tiny HTTP service that drover's sandbox, demo
// and end-to-end tests run in containers. It is built statically and packed
// into the FROM-scratch image drover-demo:latest.
//
// Modes:
//
//	drover-demo [serve] [-listen :8080] [-marker TEXT]
//	    answer every path with the hostname, the container's addresses, the
//	    request path and an optional marker; /healthz answers "ok" (503
//	    after a request to /sick, until one to /well);
//	    /flap/PERIOD answers ok and 503 in turn, PERIOD each (fault tests).
//	drover-demo resolve [-srv] [-n 1] [-timeout 5s] [-server IP:PORT] NAME
//	    look NAME up with Go's own resolver (the container's
//	    /etc/resolv.conf: nameservers, search domains, ndots), as an app
//	    in the container does, and print "addrs=A,B" (sorted; with -srv
//	    "srv=TARGET:PORT,..."); with -n > 1 also
//	    "resolve n=N ok=K failed=F p50_ms=X p99_ms=X max_ms=X". Exits 1
//	    when the last lookup failed.
//	drover-demo dns-stub [-listen :5353] NAME=IP...
//	    a resolver answering A queries of the given names, NXDOMAIN for
//	    every other name (the host's resolver, in tests).
//	drover-demo get [-timeout 5s] [-n 1] [-count] URL
//	    fetch URL n times and print the last body (scratch images have no curl);
//	    exits 1 on any failure.
//	drover-demo sink [-listen :5201]
//	    accept TCP connections and discard what they send (throughput tests).
//	drover-demo blast [-seconds 5] [-streams 1] ADDR
//	    send as fast as possible to a sink and print "gbit_per_s=X".
//	drover-demo load [-rate 200] [-duration 10s] [-concurrency 8] [-timeout 5s]
//	                 [-host NAME] [-report 0] [-stop-file PATH] URL
//	    send GET requests to URL at a bounded rate over keep-alive
//	    connections for the duration (or until SIGINT/SIGTERM or until the
//	    stop file exists), then print one line to stdout:
//	        load ok=N failed=N p50_ms=X p99_ms=X max_ms=X fail_span_ms=X by=HOST:N,...
//	    A request is ok when it got status 200 and its whole body; the
//	    latencies are those of ok requests; fail_span_ms is the time from
//	    the start of the first failed request to the end of the last one
//	    (0 without failures: an outage's length as clients saw it); by= counts ok replies per host=
//	    field of a serve reply ("-" when the body has none), sorted by host.
//	    Up to 20 distinct errors with counts go to stderr. It exits 0 even
//	    when requests failed; 1 only on bad usage.
//
// It is a test fixture, not part of the agent: it knows nothing of drover.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

func main() {
	args := os.Args[1:]
	mode := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		mode, args = args[0], args[1:]
	}
	var err error
	switch mode {
	case "serve":
		err = serve(args)
	case "get":
		err = get(args, os.Stdout)
	case "sink":
		err = sink(args)
	case "blast":
		err = blast(args, os.Stdout)
	case "load":
		err = load(args, os.Stdout, os.Stderr)
	case "ws":
		err = wsIdle(args, os.Stdout)
	case "resolve":
		err = resolve(args, os.Stdout)
	case "dns-stub":
		err = dnsStub(args)
	default:
		err = fmt.Errorf("unknown mode %q (want serve, get, sink, blast, load, ws, resolve or dns-stub)", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "drover-demo:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", envOr("DEMO_LISTEN", ":8080"), "address to listen on")
	marker := fs.String("marker", os.Getenv("DEMO_MARKER"), "text added to every reply (tests search for it)")
	pp := fs.Bool("proxy-protocol", os.Getenv("DEMO_PROXY_PROTOCOL") == "1", "accept a PROXY protocol v1/v2 header (optional per connection): the client address it carries becomes the remote address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _ := os.Hostname()
	var served atomic.Int64
	mux := http.NewServeMux()
	var sick atomic.Bool
	// DEMO_FLAP=PERIOD makes /healthz flap as /flap/PERIOD does.
	flap, _ := time.ParseDuration(os.Getenv("DEMO_FLAP"))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if sick.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		if flap >= 10*time.Millisecond && (time.Now().UnixNano()/int64(flap))%2 == 1 {
			http.Error(w, "flapping: down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	// /sick makes /healthz answer 503 from now on, /well ok again: an
	// instance that goes critical on demand.
	mux.HandleFunc("/sick", func(w http.ResponseWriter, _ *http.Request) { sick.Store(true); fmt.Fprintln(w, "sick") })
	mux.HandleFunc("/well", func(w http.ResponseWriter, _ *http.Request) { sick.Store(false); fmt.Fprintln(w, "well") })
	// /flap/PERIOD (e.g. /flap/1s) answers ok and 503 in turn, each for
	// PERIOD of wall-clock time: a flapping health check for fault tests.
	mux.HandleFunc("/flap/", func(w http.ResponseWriter, r *http.Request) {
		period, err := time.ParseDuration(strings.TrimPrefix(r.URL.Path, "/flap/"))
		if err != nil || period < 10*time.Millisecond {
			period = time.Second
		}
		if (time.Now().UnixNano()/int64(period))%2 == 1 {
			http.Error(w, "flapping: down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "flapping: ok")
	})
	// /stream?seconds=N&rate=BYTES_PER_SECOND sends a long response at a
	// bounded rate: a long-running transfer for fault tests.
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		secs, _ := strconv.Atoi(r.URL.Query().Get("seconds"))
		rate, _ := strconv.Atoi(r.URL.Query().Get("rate"))
		if secs <= 0 || secs > 600 {
			secs = 5
		}
		if rate <= 0 || rate > 100<<20 {
			rate = 1 << 20
		}
		chunk := make([]byte, rate/10)
		for i := range chunk {
			chunk[i] = 'x'
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(chunk)*secs*10))
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; i < secs*10; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			<-t.C
		}
	})
	mux.HandleFunc("/ws", wsEcho)
	// /headers shows what a proxy in front said about the client.
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s remote=%s xff=%q xfproto=%q xfport=%q\n", host, r.RemoteAddr,
			strings.Join(r.Header.Values("X-Forwarded-For"), ","), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Port"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		fmt.Fprintf(w, "host=%s addrs=%s path=%s n=%d", host, strings.Join(addrs(), ","), r.URL.Path, n)
		if *marker != "" {
			fmt.Fprintf(w, " marker=%s", *marker)
		}
		fmt.Fprintln(w)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	if *pp {
		ln = &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: 5 * time.Second}
	}
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", *listen, err)
	case <-ctx.Done():
	}
	// Graceful stop: finish in-flight requests, close idle keep-alives.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func get(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout")
	n := fs.Int("n", 1, "number of requests")
	count := fs.Bool("count", false, "print only the number of body bytes received")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("get needs exactly one URL")
	}
	url := fs.Arg(0)
	client := &http.Client{Timeout: *timeout}
	var body []byte
	for i := 0; i < *n; i++ {
		resp, err := client.Get(url)
		if err != nil {
			return fmt.Errorf("fetching %s: %w", url, err)
		}
		if *count {
			var got int64
			got, err = io.Copy(io.Discard, resp.Body)
			body = []byte(fmt.Sprintf("received %d bytes\n", got))
			if err == nil && resp.ContentLength >= 0 && got != resp.ContentLength {
				err = fmt.Errorf("short body: %d of %d bytes", got, resp.ContentLength)
			}
		} else {
			body, err = io.ReadAll(resp.Body)
		}
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("reading %s: %w", url, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("fetching %s: status %s", url, resp.Status)
		}
	}
	_, err := out.Write(body)
	return err
}

// addrs lists the non-loopback IP addresses of this host, sorted.
func addrs() []string {
	var out []string
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range ifaddrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			out = append(out, ipn.IP.String())
		}
	}
	sort.Strings(out)
	return out
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func sink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	listen := fs.String("listen", ":5201", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

func blast(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("blast", flag.ContinueOnError)
	secs := fs.Int("seconds", 5, "how long to send")
	streams := fs.Int("streams", 1, "parallel TCP connections")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("blast needs ADDR (host:port of a sink)")
	}
	deadline := time.Now().Add(time.Duration(*secs) * time.Second)
	var total atomic.Int64
	errc := make(chan error, *streams)
	begin := time.Now()
	for i := 0; i < *streams; i++ {
		go func() {
			c, err := net.DialTimeout("tcp", fs.Arg(0), 5*time.Second)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			buf := make([]byte, 128<<10)
			for time.Now().Before(deadline) {
				n, err := c.Write(buf)
				total.Add(int64(n))
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for i := 0; i < *streams; i++ {
		if err := <-errc; err != nil {
			return fmt.Errorf("blasting %s: %w", fs.Arg(0), err)
		}
	}
	el := time.Since(begin).Seconds()
	fmt.Fprintf(out, "gbit_per_s=%.3f bytes=%d seconds=%.2f\n", float64(total.Load())*8/el/1e9, total.Load(), el)
	return nil
}

// Bounds of load's flags: enough for a reload test, small enough that a
// mistyped flag cannot flood a test network.
const (
	maxLoadRate     = 5000
	maxLoadDuration = 10 * time.Minute
	maxLoadWorkers  = 1000
	loadErrsShown   = 20   // distinct errors printed to stderr
	loadErrsKept    = 1000 // distinct errors counted; the rest count as "other errors"
)

// loadConfig is load's parsed and validated flags.
type loadConfig struct {
	url, host, stopFile       string
	caFile, connect           string  // https: the CA to trust; the address to dial instead of the URL's host
	close                     bool    // a new connection for every request
	rate                      float64 // requests per second
	duration, timeout, report time.Duration
	workers                   int
}

// tlsConfig trusts caFile's certificates when set (nil: the defaults).
func (c loadConfig) tlsConfig() *tls.Config {
	if c.caFile == "" {
		return nil
	}
	b, err := os.ReadFile(c.caFile)
	pool := x509.NewCertPool()
	if err != nil || !pool.AppendCertsFromPEM(b) {
		fmt.Fprintf(os.Stderr, "load: -cacert %s: no certificate read (%v)\n", c.caFile, err)
	}
	return &tls.Config{RootCAs: pool}
}

// load runs the load generator (see the package comment). It returns an
// error only for bad usage: failed requests are counted, not returned.
func load(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c loadConfig
	fs.Float64Var(&c.rate, "rate", 200, "requests per second, all workers together (0 < rate ≤ 5000)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send (at most 10m)")
	fs.IntVar(&c.workers, "concurrency", 8, "keep-alive workers, each with at most one request in flight")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "per-request timeout, body included")
	fs.StringVar(&c.host, "host", "", "Host header (default: the URL's host)")
	fs.DurationVar(&c.report, "report", 0, "interval of a progress line to stderr: totals and replies per host since the last line (0: none)")
	fs.StringVar(&c.stopFile, "stop-file", "", "stop early once this file exists")
	fs.StringVar(&c.caFile, "cacert", "", "https: PEM file of the CA to trust (default: the system's)")
	fs.StringVar(&c.connect, "connect", "", "host:port to connect to instead of the URL's (the URL's host stays the SNI name and Host)")
	fs.BoolVar(&c.close, "close", false, "a new connection for every request (no keep-alive)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var bad []string
	if !(c.rate > 0 && c.rate <= maxLoadRate) { // also refuses NaN
		bad = append(bad, fmt.Sprintf("-rate %v: want 0 < rate ≤ %d", c.rate, maxLoadRate))
	}
	if c.duration <= 0 || c.duration > maxLoadDuration {
		bad = append(bad, fmt.Sprintf("-duration %s: want 0 < duration ≤ %s", c.duration, maxLoadDuration))
	}
	if c.workers < 1 || c.workers > maxLoadWorkers {
		bad = append(bad, fmt.Sprintf("-concurrency %d: want 1 to %d", c.workers, maxLoadWorkers))
	}
	if c.timeout <= 0 {
		bad = append(bad, fmt.Sprintf("-timeout %s: want > 0", c.timeout))
	}
	if c.report < 0 {
		bad = append(bad, fmt.Sprintf("-report %s: want ≥ 0", c.report))
	}
	if fs.NArg() != 1 {
		bad = append(bad, "load needs exactly one URL")
	} else if u, err := url.Parse(fs.Arg(0)); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad = append(bad, fmt.Sprintf("URL %q: want http://host[:port]/path", fs.Arg(0)))
	} else {
		c.url = u.String()
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	st, dropped := runLoad(ctx, c, stderr)
	fmt.Fprintln(stdout, st.line())
	if dropped > 0 {
		fmt.Fprintf(stderr, "load: %d requests not sent: all %d workers were busy\n", dropped, c.workers)
	}
	st.printErrors(stderr)
	return nil
}

// runLoad sends the requests and waits for the last one to finish. It
// returns the results and the number of requests dropped because every
// worker was busy.
func runLoad(ctx context.Context, c loadConfig, progress io.Writer) (*loadStats, int) {
	dialer := &net.Dialer{Timeout: c.timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               nil, // never a proxy from the environment: the target is on a test network
		DialContext:         dialer.DialContext,
		MaxIdleConns:        c.workers,
		MaxIdleConnsPerHost: c.workers,
		IdleConnTimeout:     90 * time.Second,
		DisableKeepAlives:   c.close,
		TLSClientConfig:     c.tlsConfig(),
	}
	if c.connect != "" {
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, c.connect)
		}
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		Timeout:   c.timeout,
		// A redirect is an answer other than 200, hence a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	st := &loadStats{by: map[string]int{}, errs: map[string]int{}}
	tokens := make(chan struct{}, c.workers)
	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() {
			for range tokens {
				st.record(fetch(client, c.url, c.host))
			}
		})
	}
	dropped := pace(ctx, c, tokens, st, progress)
	close(tokens)
	// In-flight requests finish (each within c.timeout): cutting them
	// short would count as failures that the target did not cause.
	wg.Wait()
	return st, dropped
}

// pace hands out c.rate tokens per second until c.duration has passed,
// ctx is done or the stop file exists. A token that finds every worker
// busy is dropped rather than queued, so that a server that stalled does
// not get a burst when it recovers; pace returns how many were dropped.
func pace(ctx context.Context, c loadConfig, tokens chan<- struct{}, st *loadStats, progress io.Writer) (dropped int) {
	total := max(int(c.duration.Seconds()*c.rate), 1)
	step := min(max(time.Duration(float64(time.Second)/c.rate), time.Millisecond), 100*time.Millisecond)
	tick := time.NewTicker(step)
	defer tick.Stop()
	var reportC <-chan time.Time
	if c.report > 0 {
		r := time.NewTicker(c.report)
		defer r.Stop()
		reportC = r.C
	}
	begin := time.Now()
	end := begin.Add(c.duration)
	var nextStat time.Time // when to look for the stop file again
	sent := 0
	for {
		if ctx.Err() != nil {
			return dropped
		}
		now := time.Now()
		if c.stopFile != "" && !now.Before(nextStat) {
			nextStat = now.Add(100 * time.Millisecond)
			if _, err := os.Stat(c.stopFile); err == nil {
				return dropped
			}
		}
		// The first request goes at once, then one every 1/rate.
		due := min(int(now.Sub(begin).Seconds()*c.rate)+1, total)
		for ; sent < due; sent++ {
			select {
			case tokens <- struct{}{}:
			default:
				dropped++
			}
		}
		if sent >= total || !now.Before(end) {
			return dropped
		}
		select {
		case <-ctx.Done():
			return dropped
		case t := <-reportC:
			fmt.Fprintf(progress, "load t=%.1fs %s\n", t.Sub(begin).Seconds(), st.counts())
		case <-tick.C:
		}
	}
}

// loadResult is the outcome of one request: err is empty when it is ok.
type loadResult struct {
	lat        time.Duration
	host       string // the host= field of the reply, "-" when it has none
	err        string
	start, end time.Time
}

// fetch sends one GET. It is ok only with status 200 and the whole body
// read without error.
func fetch(client *http.Client, target, host string) loadResult {
	begin := time.Now()
	r := fetchOnce(client, target, host, begin)
	r.start, r.end = begin, time.Now()
	return r
}

func fetchOnce(client *http.Client, target, host string, begin time.Time) loadResult {
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return loadResult{err: err.Error()}
	}
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		return loadResult{err: errText(err)}
	}
	defer resp.Body.Close()
	head, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	switch {
	case resp.StatusCode != http.StatusOK:
		return loadResult{err: "status " + resp.Status}
	case err != nil:
		return loadResult{err: "reading body: " + errText(err)}
	}
	return loadResult{lat: time.Since(begin), host: replyHost(head)}
}

// errText is err without the parts that differ from request to request
// (the URL, local and remote addresses), so that equal failures count
// together.
func errText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return fmt.Sprintf("%s %s: %v", oe.Op, oe.Net, oe.Err)
	}
	return err.Error()
}

// replyHost returns the host= field of a serve reply, or "-".
func replyHost(body []byte) string {
	for _, f := range strings.Fields(string(body)) {
		if h, ok := strings.CutPrefix(f, "host="); ok && h != "" {
			return h
		}
	}
	return "-"
}

// loadStats is what load's workers record.
type loadStats struct {
	mu     sync.Mutex // guards the fields below
	ok     int
	failed int
	lat    []time.Duration // of ok requests
	by     map[string]int  // ok requests per replying host
	recent map[string]int  // ok requests per replying host since the last progress line
	errs   map[string]int  // failed requests per error text
	// firstFail and lastFail bound the failed requests: the start of the
	// first one and the end of the last one.
	firstFail, lastFail time.Time
}

func (s *loadStats) record(r loadResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.err == "" {
		s.ok++
		s.lat = append(s.lat, r.lat)
		s.by[r.host]++
		if s.recent == nil {
			s.recent = map[string]int{}
		}
		s.recent[r.host]++
		return
	}
	s.failed++
	if s.firstFail.IsZero() || r.start.Before(s.firstFail) {
		s.firstFail = r.start
	}
	if r.end.After(s.lastFail) {
		s.lastFail = r.end
	}
	if _, ok := s.errs[r.err]; !ok && len(s.errs) >= loadErrsKept {
		r.err = "other errors"
	}
	s.errs[r.err]++
}

func (s *loadStats) counts() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var by []string
	for _, h := range slices.Sorted(maps.Keys(s.recent)) {
		by = append(by, fmt.Sprintf("%s:%d", h, s.recent[h]))
	}
	s.recent = nil
	return fmt.Sprintf("ok=%d failed=%d since_last=%s", s.ok, s.failed, strings.Join(by, ","))
}

// line is the result line: "load ok=N failed=N p50_ms=X p99_ms=X max_ms=X
// fail_span_ms=X by=HOST:N,...", hosts sorted by name.
func (s *loadStats) line() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lat := slices.Sorted(slices.Values(s.lat))
	var by []string
	for _, h := range slices.Sorted(maps.Keys(s.by)) {
		by = append(by, fmt.Sprintf("%s:%d", h, s.by[h]))
	}
	var span time.Duration
	if s.failed > 0 {
		span = s.lastFail.Sub(s.firstFail)
	}
	return fmt.Sprintf("load ok=%d failed=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f fail_span_ms=%.2f by=%s",
		s.ok, s.failed, ms(rank(lat, 50)), ms(rank(lat, 99)), ms(rank(lat, 100)), ms(span), strings.Join(by, ","))
}

// printErrors writes the most frequent error texts with their counts.
func (s *loadStats) printErrors(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) == 0 {
		return
	}
	texts := slices.SortedFunc(maps.Keys(s.errs), func(a, b string) int {
		if c := s.errs[b] - s.errs[a]; c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	fmt.Fprintf(w, "load: %d failed requests, %d distinct errors:\n", s.failed, len(texts))
	for _, t := range texts[:min(len(texts), loadErrsShown)] {
		fmt.Fprintf(w, "  %7d %s\n", s.errs[t], t)
	}
	if len(texts) > loadErrsShown {
		fmt.Fprintf(w, "  (%d more distinct errors)\n", len(texts)-loadErrsShown)
	}
}

// rank is the nearest-rank percentile p (1-100) of sorted, 0 when empty.
func rank(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
