package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Listen is the one address the UDP and TCP listeners bind (never a
	// wildcard: the server must not be an open resolver on the underlay).
	Listen netip.AddrPort
	// Domain and TTL are Answer's Options.
	Domain string
	TTL    time.Duration
	// Upstreams are the resolvers names outside the domain go to, as
	// host:port, asked in order until one answers.
	Upstreams []string
	// Timeout bounds one exchange with one upstream; default 2 s.
	Timeout time.Duration
	// Allow lists the sources served (containers, loopback); any other
	// source is REFUSED. Empty: every source.
	Allow []netip.Prefix
	Log   *slog.Logger
}

// LatencyBuckets are the upper bounds (seconds) of the latency histogram.
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// Stats are what the server did since it was made.
type Stats struct {
	// Queries counts replies by rcode name (NOERROR, NXDOMAIN, SERVFAIL, …).
	Queries map[string]uint64 `json:"queries"`
	// Forwarded counts queries sent to an upstream, ForwardErrors those no
	// upstream answered (SERVFAIL to the client), Refused those from a
	// source not allowed.
	Forwarded     uint64 `json:"forwarded"`
	ForwardErrors uint64 `json:"forward_errors"`
	Refused       uint64 `json:"refused"`
	// Latency is a histogram of the time from a query's arrival to its
	// reply: Buckets[i] counts replies within LatencyBuckets[i] (cumulative).
	LatencyCount uint64   `json:"latency_count"`
	LatencySum   float64  `json:"latency_sum_seconds"`
	Buckets      []uint64 `json:"latency_buckets"`
}

// Status is what `drover status` shows of the server.
type Status struct {
	Listen    string `json:"listen"`
	Listening bool   `json:"listening"`
	// Device holds the listen address: the dummy link drover-dns, or lo
	// on a kernel without dummy links.
	Device    string   `json:"device,omitempty"`
	LastError string   `json:"last_error,omitempty"`
	Domain    string   `json:"domain"`
	TTL       string   `json:"ttl"`
	Upstreams []string `json:"upstreams"`
	// IndexError is why the last snapshot could not be read (the previous
	// index is answered meanwhile). Services and Instances are what the
	// index answers from, IndexAt when it was built (zero: no first read
	// yet, names of the domain get SERVFAIL).
	IndexError string    `json:"index_error,omitempty"`
	Services   int       `json:"services"`
	Instances  int       `json:"instances"`
	IndexAt    time.Time `json:"index_at,omitzero"`
	Stats      Stats     `json:"stats"`
}

// Server answers the domain from the latest Index and forwards the rest.
// Handle and SetIndex are safe for concurrent use.
type Server struct {
	opt Options
	so  ServerOptions
	ix  atomic.Pointer[indexAt]

	mu        sync.Mutex // guards the fields below
	stats     Stats
	listening bool
	lastErr   string
	indexErr  string
	device    string
}

// SetDevice records which device holds the listen address.
func (s *Server) SetDevice(dev string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.device = dev
}

type indexAt struct {
	ix *Index
	at time.Time
}

// NewServer returns a server; Run starts its listeners.
func NewServer(o ServerOptions) *Server {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ttl := uint32(o.TTL / time.Second)
	return &Server{so: o, opt: Options{Domain: mdns.CanonicalName(o.Domain), TTL: ttl},
		stats: Stats{Queries: map[string]uint64{}, Buckets: make([]uint64, len(LatencyBuckets))}}
}

// SetIndex makes ix the content answered from now on.
func (s *Server) SetIndex(ix *Index, at time.Time) {
	s.ix.Store(&indexAt{ix: ix, at: at})
	s.mu.Lock()
	s.indexErr = ""
	s.mu.Unlock()
}

// SetIndexError records why the index could not be renewed; the last one
// keeps being answered.
func (s *Server) SetIndexError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.indexErr = err.Error()
}

// Status returns the server's state and counters.
func (s *Server) Status() Status {
	st := Status{Listen: s.so.Listen.String(), Domain: s.opt.Domain, TTL: s.so.TTL.String(), Upstreams: s.so.Upstreams}
	if p := s.ix.Load(); p != nil {
		st.Services, st.Instances, st.IndexAt = p.ix.Services, p.ix.Instances, p.at
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Listening, st.LastError, st.IndexError, st.Device = s.listening, s.lastErr, s.indexErr, s.device
	st.Stats = s.stats
	st.Stats.Queries = maps.Clone(s.stats.Queries)
	st.Stats.Buckets = slices.Clone(s.stats.Buckets)
	return st
}

// SetError records why the listeners are not up ("" clears it).
func (s *Server) SetError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = ""
	if err != nil {
		s.lastErr = err.Error()
	}
}

// Run serves UDP and TCP on the listen address until ctx ends (then nil),
// or returns the error that kept a listener from starting or stopped it.
func (s *Server) Run(ctx context.Context) error {
	addr := s.so.Listen.String()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("listening on udp %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("listening on tcp %s: %w", addr, err)
	}
	h := mdns.HandlerFunc(s.serveDNS)
	udp := &mdns.Server{PacketConn: pc, Handler: h}
	tcp := &mdns.Server{Listener: ln, Handler: h, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for _, srv := range []*mdns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- srv.ActivateAndServe()
		}()
		select {
		case <-started:
		case err := <-errs:
			pc.Close()
			ln.Close()
			wg.Wait()
			return fmt.Errorf("serving dns on %s: %w", addr, err)
		}
	}
	s.mu.Lock()
	s.listening, s.lastErr = true, ""
	s.mu.Unlock()
	s.so.Log.Info("serving dns", "addr", addr, "domain", s.opt.Domain, "upstreams", s.so.Upstreams)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		runErr = fmt.Errorf("serving dns on %s: %w", addr, runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = udp.ShutdownContext(sctx)
	_ = tcp.ShutdownContext(sctx)
	wg.Wait()
	s.mu.Lock()
	s.listening = false
	s.mu.Unlock()
	if ctx.Err() != nil {
		return nil
	}
	return runErr
}

func (s *Server) serveDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	tcp := false
	var src netip.Addr
	switch a := w.RemoteAddr().(type) {
	case *net.TCPAddr:
		tcp = true
		src, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		src, _ = netip.AddrFromSlice(a.IP)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(s.so.Upstreams)+1)*s.so.Timeout)
	defer cancel()
	if m := s.Handle(ctx, req, tcp, src.Unmap()); m != nil {
		_ = w.WriteMsg(m)
	}
}

// Handle returns the reply to req from src: answered from the index when
// in the domain, else forwarded over the transport the client used (so a
// truncated UDP answer makes it ask again over TCP).
func (s *Server) Handle(ctx context.Context, req *mdns.Msg, tcp bool, src netip.Addr) *mdns.Msg {
	start := time.Now()
	var m *mdns.Msg
	forwarded, ferr, refused := false, false, false
	switch {
	case !s.allowed(src):
		m = new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeRefused)
		refused = true
	case InDomain(req, s.opt.Domain):
		p := s.ix.Load()
		if p == nil {
			m = new(mdns.Msg)
			m.SetRcode(req, mdns.RcodeServerFailure) // no first read yet: nothing cached downstream
			break
		}
		m, _ = Answer(req, p.ix, s.opt, MaxSize(req, tcp), shuffle)
	default:
		forwarded = true
		var err error
		m, err = s.forward(ctx, req, tcp)
		if err != nil {
			ferr = true
			s.so.Log.Debug("forwarding dns query failed", "name", req.Question[0].Name, "err", err)
			m = new(mdns.Msg)
			m.SetRcode(req, mdns.RcodeServerFailure)
		}
		m.Id = req.Id
	}
	s.record(m.Rcode, forwarded, ferr, refused, time.Since(start))
	return m
}

func shuffle(ts []Target) { rand.Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] }) }

func (s *Server) allowed(src netip.Addr) bool {
	if len(s.so.Allow) == 0 {
		return true
	}
	for _, p := range s.so.Allow {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// errNoUpstream is returned when no upstream is configured.
var errNoUpstream = errors.New("no upstream resolver")

// forward asks each upstream in turn, each exchange bounded by Timeout.
func (s *Server) forward(ctx context.Context, req *mdns.Msg, tcp bool) (*mdns.Msg, error) {
	if len(s.so.Upstreams) == 0 {
		return nil, errNoUpstream
	}
	c := &mdns.Client{Net: "udp", Timeout: s.so.Timeout}
	if tcp {
		c.Net = "tcp"
	}
	if o := req.IsEdns0(); o != nil {
		c.UDPSize = o.UDPSize()
	}
	var last error
	for _, u := range s.so.Upstreams {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ectx, cancel := context.WithTimeout(ctx, s.so.Timeout)
		r, _, err := c.ExchangeContext(ectx, req, u)
		cancel()
		if err == nil {
			return r, nil
		}
		last = fmt.Errorf("asking %s: %w", u, err)
	}
	return nil, last
}

func (s *Server) record(rcode int, forwarded, ferr, refused bool, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := mdns.RcodeToString[rcode]
	if !ok {
		name = fmt.Sprint(rcode)
	}
	s.stats.Queries[name]++
	if forwarded {
		s.stats.Forwarded++
	}
	if ferr {
		s.stats.ForwardErrors++
	}
	if refused {
		s.stats.Refused++
	}
	sec := d.Seconds()
	s.stats.LatencyCount++
	s.stats.LatencySum += sec
	for i, b := range LatencyBuckets {
		if sec <= b {
			s.stats.Buckets[i]++
		}
	}
}
