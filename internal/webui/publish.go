package webui

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Write cadence of the published rows. A row is written when what it says
// changed (reachability, peers, refusals, events, the lb's structure or
// server states), at most every MinInterval, and at least every Heartbeat
// even when nothing changed, so that a reader can tell a row that stopped
// moving (StaleAfter) from one that has nothing new to say. Counters that
// always move (bytes, RTT, sessions) ride along but never cause a write.
// The cost is one small KV write per host every Heartbeat (two on an lb
// host) while nothing changes. Staleness is the backstop only: a host that
// is cut off or whose agent died turns red sooner, as soon as its peers'
// probes fail (BuildMesh). Every KV write also wakes each blocking query
// on an empty KV prefix anywhere in the cluster (Consul answers those with
// the index of the whole store), such as an lb host's watch of
// drover/v1/certs/ while it holds no certificate: a long heartbeat keeps
// that to one request per host every 30 s.
const (
	MinInterval = 2 * time.Second
	Heartbeat   = 30 * time.Second
	StaleAfter  = 90 * time.Second
)

// Gate decides when a document is written. Its zero value is not usable:
// make it with NewGate. It is pure (the caller passes the time) and not
// safe for concurrent use.
//
//	content key changed ──▶ due once MinInterval passed since the last write
//	nothing changed     ──▶ due once Heartbeat passed since the last write
//	write failed        ──▶ Failed: not due for MinInterval, doubling with
//	                        every failure in a row up to Heartbeat
type Gate struct {
	min, beat time.Duration
	key       string
	at        time.Time
	wrote     bool
	fails     int
	retryAt   time.Time
}

// NewGate returns a gate with the given minimum interval and heartbeat.
func NewGate(min, heartbeat time.Duration) *Gate { return &Gate{min: min, beat: heartbeat} }

// Due reports whether a document whose significant content is key should
// be written now.
func (g *Gate) Due(key string, now time.Time) bool {
	if now.Before(g.retryAt) {
		return false
	}
	if !g.wrote {
		return true
	}
	since := now.Sub(g.at)
	if key != g.key {
		return since >= g.min
	}
	return since >= g.beat
}

// Wrote records a successful write of key at now.
func (g *Gate) Wrote(key string, now time.Time) {
	g.key, g.at, g.wrote, g.fails, g.retryAt = key, now, true, 0, time.Time{}
}

// Failed records a failed write at now: the next one waits.
func (g *Gate) Failed(now time.Time) {
	wait := g.min << min(g.fails, 16)
	g.fails++
	g.retryAt = now.Add(min(wait, g.beat))
}

// RowKey is a row's significant content: everything but its counters
// (sequence, uptime, RTT, handshake ages, bytes).
func RowKey(r Row) string {
	r.Seq, r.UptimeS = 0, 0
	peers := make([]Peer, len(r.Peers))
	for i, p := range r.Peers {
		p.RTTMs, p.HandshakeAgeS, p.RxBytes, p.TxBytes, p.LastError = 0, 0, 0, 0, ""
		peers[i] = p
	}
	r.Peers = peers
	return digest(r)
}

// LBKey is an lb summary's significant content: its structure and every
// state, without the traffic figures.
func LBKey(s LBSummary) string {
	s.Seq = 0
	fs := make([]LBFrontend, len(s.Frontends))
	for i, f := range s.Frontends {
		f.Stats = LBStats{Status: f.Stats.Status}
		fs[i] = f
	}
	s.Frontends = fs
	bs := make([]LBBackend, len(s.Backends))
	for i, b := range s.Backends {
		b.Stats = LBStats{Status: b.Stats.Status}
		svs := make([]LBServer, len(b.Servers))
		for j, sv := range b.Servers {
			sv.Stats = LBStats{Status: sv.Stats.Status}
			svs[j] = sv
		}
		b.Servers = svs
		bs[i] = b
	}
	s.Backends = bs
	return digest(s)
}

// digest is a short fingerprint of v's JSON, so that a gate keeps 64
// bytes, not the document (an lb summary can be megabytes).
func digest(v any) string {
	h := sha256.New()
	if err := json.NewEncoder(h).Encode(v); err != nil {
		panic("webui: " + err.Error())
	}
	return hex.EncodeToString(h.Sum(nil))
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain data types are marshalled here.
		panic("webui: " + err.Error())
	}
	return string(b)
}

// maxDoc bounds a document that is read back.
const maxDoc = 2 * MaxPublished

func decode(b []byte, v any) error {
	if len(b) > maxDoc {
		return fmt.Errorf("%d bytes, over the %d byte limit", len(b), maxDoc)
	}
	return json.Unmarshal(b, v)
}

// Bounds of what is published: Consul refuses KV values over 512 KiB, and
// every host reads every row.
const (
	MaxPublished = 256 << 10
	MaxRefused   = 100
)

// CapRow keeps at most MaxRefused refusals, counting the rest. It is pure.
func CapRow(r Row) Row {
	if n := len(r.Refused); n > MaxRefused {
		r.Refused = r.Refused[:MaxRefused:MaxRefused]
		r.OmittedRefused = n - MaxRefused
	}
	return r
}

// CapLB keeps as many backends, in order, as fit in MaxPublished (with the
// rest of the summary), counting the ones left out. It is pure.
func CapLB(s LBSummary) LBSummary {
	if len(mustJSON(s)) <= MaxPublished {
		return s
	}
	rest := s
	rest.Backends = nil
	budget := MaxPublished - len(mustJSON(rest)) - 64
	var kept []LBBackend
	for _, b := range s.Backends {
		n := len(mustJSON(b)) + 1
		if n > budget {
			break
		}
		budget -= n
		kept = append(kept, b)
	}
	if kept == nil {
		kept = []LBBackend{}
	}
	s.OmittedBackends = len(s.Backends) - len(kept)
	s.Backends = kept
	return s
}
