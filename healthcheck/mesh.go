package healthcheck

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
)

// MeshPort is the TCP port of the mesh self-check responder, bound to the
// host's gateway address on its container bridge, so a probe reaches it
// only through the tunnel.
const MeshPort = 51822

// Target is one mesh peer to probe: its node name and the address of its
// responder (its gateway address and MeshPort).
type Target struct {
	Node string
	Addr netip.AddrPort
	// Bytes is what this host and the peer exchanged so far (WireGuard's
	// receive + transmit counters); a peer whose count grew by more than
	// MeshOptions.ActiveBytes since the previous round is one this host
	// talks to, and is probed first.
	Bytes int64
}

// PeerProbe is the latest result for one peer.
type PeerProbe struct {
	Node      string        `json:"node"`
	Addr      string        `json:"addr"`
	Reachable bool          `json:"reachable"`
	RTT       time.Duration `json:"rtt_ns"`
	LastOK    time.Time     `json:"last_ok"`
	LastError string        `json:"last_error,omitempty"`
	// ProbedAt is when the peer was last probed (zero: not yet; it then
	// counts as neither reachable nor down).
	ProbedAt  time.Time `json:"probed_at"`
	oks, errs int
	bytes     int64 // Target.Bytes at the previous round
	active    bool  // its traffic grew past ActiveBytes at the last round
}

// MeshOptions configures the mesh self-check.
type MeshOptions struct {
	Self     string
	Listen   func() netip.AddrPort // this host's responder address (may change)
	Targets  func() []Target       // current peers
	Interval time.Duration         // between probe rounds (jittered)
	Timeout  time.Duration         // per probe
	Rise     int                   // consecutive successes before reachable
	Fall     int                   // consecutive failures before unreachable
	// MaxProbes bounds the probes of one round (default DefaultMaxProbes);
	// ActiveBytes is the traffic that makes a peer one this host talks to
	// (default DefaultActiveBytes). See pick.
	MaxProbes   int
	ActiveBytes int64
	// Report publishes the aggregate ("passing" when every peer answers,
	// else "warning" naming the unreachable ones) as the drover-node
	// service's mesh check; it is called only when the aggregate changes,
	// and at least every Refresh.
	Report  func(ctx context.Context, status, output string) error
	Refresh time.Duration
	Log     *slog.Logger
}

// Mesh probes every peer end to end over the tunnel (TCP to the peer's
// responder, which answers with its node name) and answers the probes of
// others. One probe per peer is in flight at a time.
type Mesh struct {
	opt MeshOptions

	mu       sync.Mutex // guards the fields below
	peers    map[string]*PeerProbe
	reported string
	at       time.Time
}

// NewMesh returns a mesh self-check; it starts nothing.
func NewMesh(opt MeshOptions) *Mesh {
	if opt.Interval == 0 {
		opt.Interval = 2 * time.Second
	}
	if opt.Timeout == 0 {
		opt.Timeout = time.Second
	}
	if opt.Rise == 0 {
		opt.Rise = 1
	}
	if opt.Fall == 0 {
		opt.Fall = 3
	}
	if opt.Refresh == 0 {
		opt.Refresh = 5 * time.Minute
	}
	if opt.MaxProbes == 0 {
		opt.MaxProbes = DefaultMaxProbes
	}
	if opt.ActiveBytes == 0 {
		opt.ActiveBytes = DefaultActiveBytes
	}
	return &Mesh{opt: opt, peers: map[string]*PeerProbe{}}
}

// Resend makes the next round report its aggregate even when it did not
// change: the check was registered again (the local Consul agent forgot it
// and the drover-node record was restored with its initial status).
func (m *Mesh) Resend() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reported = ""
}

// Status returns the latest probe of every peer, sorted by node.
func (m *Mesh) Status() []PeerProbe {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]PeerProbe, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// Run answers and sends probes until ctx ends.
func (m *Mesh) Run(ctx context.Context) error {
	go m.serve(ctx)
	for {
		jitter := time.Duration(rand.Int64N(int64(m.opt.Interval) / 4))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(m.opt.Interval + jitter):
		}
		m.round(ctx)
	}
}

// round probes the peers pick chooses (all of them up to MaxProbes) in
// parallel and waits for all.
func (m *Mesh) round(ctx context.Context) {
	all := m.opt.Targets()
	m.mu.Lock()
	cs := make([]candidate, len(all))
	byNode := map[string]Target{}
	for i, t := range all {
		byNode[t.Node] = t
		c := candidate{node: t.Node}
		if p, ok := m.peers[t.Node]; ok {
			c.lastProbed = p.ProbedAt
			c.active = t.Bytes-p.bytes > m.opt.ActiveBytes
			p.bytes, p.active = t.Bytes, c.active
		} else {
			m.peers[t.Node] = &PeerProbe{Node: t.Node, Addr: t.Addr.String(), bytes: t.Bytes}
		}
		cs[i] = c
	}
	for n := range m.peers {
		if _, ok := byNode[n]; !ok {
			delete(m.peers, n)
		}
	}
	m.mu.Unlock()
	chosen := pick(cs, m.opt.MaxProbes)
	var wg sync.WaitGroup
	results := make([]PeerProbe, len(chosen))
	for i, n := range chosen {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = m.probe(ctx, byNode[n])
		}()
	}
	wg.Wait()
	now := time.Now()
	m.mu.Lock()
	for i, n := range chosen {
		p := m.peers[n]
		if p == nil {
			continue
		}
		r := results[i]
		p.Addr, p.ProbedAt = r.Addr, now
		if r.LastError == "" {
			p.oks, p.errs = p.oks+1, 0
			p.RTT, p.LastOK, p.LastError = r.RTT, now, ""
			if p.oks >= m.opt.Rise {
				p.Reachable = true
			}
		} else {
			p.oks, p.errs = 0, p.errs+1
			p.LastError = r.LastError
			if p.errs >= m.opt.Fall {
				p.Reachable = false
			}
		}
	}
	status, output := aggregate(m.peers)
	report := status+output != m.reported || time.Since(m.at) > m.opt.Refresh
	m.mu.Unlock()
	if report && m.opt.Report != nil {
		if err := m.opt.Report(ctx, status, output); err != nil {
			m.opt.Log.Warn("reporting the mesh check failed", "err", err)
			return
		}
		m.mu.Lock()
		m.reported, m.at = status+output, time.Now()
		m.mu.Unlock()
	}
}

// aggregate is the mesh check's status and output: warning naming the
// peers that do not answer, passing when none; peers not probed yet are
// counted, not judged.
func aggregate(peers map[string]*PeerProbe) (string, string) {
	var down []string
	waiting := 0
	for _, p := range peers {
		switch {
		case p.ProbedAt.IsZero() && p.oks+p.errs == 0:
			waiting++
		case !p.Reachable:
			down = append(down, p.Node)
		}
	}
	sort.Strings(down)
	suffix := ""
	if waiting > 0 {
		suffix = fmt.Sprintf(" (%d not probed yet)", waiting)
	}
	if len(down) == 0 {
		return "passing", fmt.Sprintf("all %d peers answer through the tunnel", len(peers)-waiting) + suffix
	}
	return "warning", fmt.Sprintf("%d of %d peers do not answer through the tunnel: %s", len(down), len(peers)-waiting, strings.Join(down, ", ")) + suffix
}

func (m *Mesh) probe(ctx context.Context, t Target) PeerProbe {
	r := PeerProbe{Node: t.Node, Addr: t.Addr.String()}
	begin := time.Now()
	d := net.Dialer{Timeout: m.opt.Timeout}
	c, err := d.DialContext(ctx, "tcp", t.Addr.String())
	if err != nil {
		r.LastError = err.Error()
		return r
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(m.opt.Timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		r.LastError = "reading the answer: " + err.Error()
		return r
	}
	if got := strings.TrimSpace(strings.TrimPrefix(line, "drover ")); got != t.Node {
		r.LastError = fmt.Sprintf("answered as %q, want %q", got, t.Node)
		return r
	}
	r.RTT = time.Since(begin)
	return r
}

// serve answers probes on the responder address, rebinding when the address
// changes or first appears.
func (m *Mesh) serve(ctx context.Context) {
	for ctx.Err() == nil {
		addr := m.opt.Listen()
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			m.opt.Log.Debug("mesh responder cannot listen yet", "addr", addr, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		go func() { <-ctx.Done(); ln.Close() }()
		for {
			c, err := ln.Accept()
			if err != nil {
				break
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprintf(c, "drover %s\n", m.opt.Self)
			c.Close()
		}
		ln.Close()
	}
}
