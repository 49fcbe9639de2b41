package lb

import (
	"net/netip"
	"time"
)

// Options tune Desired. Zero fields take their defaults.
type Options struct {
	HTTPPort       int    // port of HTTP services without lb_port (default 80)
	HTTPSPort      int    // port of the HTTPS frontend of lb_tls services (default 443)
	SlotsMin       int    // smallest server-slot pool per backend (default 8)
	DefaultBalance string // balance of services without lb_balance (default "roundrobin")
	// Own are the lb host's own addresses: never proxied.
	Own []netip.Addr
	// Allow are the networks whose instances are proxied although no
	// drover agent registered them (--lb-allow).
	Allow []netip.Prefix
	// TunnelTimeout is the idle timeout of upgraded (WebSocket) and tcp
	// connections of services that set none (default 1h).
	TunnelTimeout time.Duration
	// Edge are the frontend-wide settings, copied into State.Edge.
	Edge Edge
	// Unbindable are ports HAProxy cannot bind on this host (taken by
	// another program), with why: services claiming them are left out, so
	// that every other change still reloads.
	Unbindable map[int]string
}

// Edge are the settings every frontend shares.
type Edge struct {
	// TrustedProxies are the previous hops whose X-Forwarded-* headers
	// are kept (appended to); from anyone else they are replaced.
	TrustedProxies []netip.Prefix
	// AcceptProxy makes every frontend expect the PROXY protocol (an lb
	// host behind an L4 balancer).
	AcceptProxy bool
	// HardStopAfter bounds how long an old HAProxy worker keeps its
	// connections after a reload (default 15m).
	HardStopAfter time.Duration
	// MaxReloads is HAProxy's mworker-max-reloads: a worker that has lived
	// through more reloads is stopped, its connections cut. 0 is
	// MaxReloadsFor(HardStopAfter, 2s).
	MaxReloads int
}

// Bounds of Edge.MaxReloads.
const (
	minMaxReloads = 50
	maxMaxReloads = 1000
)

// MaxReloadsFor is the mworker-max-reloads that lets a connection live
// until hard-stop-after however often drover reloads: one reload per
// reload interval at most, so hardStop/interval reloads (plus one), within
// 50..1000. Old workers exist only while they hold connections, so a higher
// bound costs memory only when long connections meet frequent reloads.
func MaxReloadsFor(hardStop, interval time.Duration) int {
	if hardStop <= 0 {
		hardStop = DefaultHardStopAfter
	}
	if interval <= 0 {
		interval = 2 * time.Second
	}
	n := int((hardStop+interval-1)/interval) + 1
	return max(minMaxReloads, min(maxMaxReloads, n))
}

func (o Options) withDefaults() Options {
	if o.HTTPPort <= 0 {
		o.HTTPPort = 80
	}
	if o.HTTPSPort <= 0 {
		o.HTTPSPort = 443
	}
	if o.SlotsMin <= 0 {
		o.SlotsMin = 8
	}
	if o.DefaultBalance == "" {
		o.DefaultBalance = "roundrobin"
	}
	if o.TunnelTimeout <= 0 {
		o.TunnelTimeout = DefaultTunnelTimeout
	}
	if o.Edge.HardStopAfter <= 0 {
		o.Edge.HardStopAfter = DefaultHardStopAfter
	}
	if o.Edge.MaxReloads <= 0 {
		o.Edge.MaxReloads = MaxReloadsFor(o.Edge.HardStopAfter, 0)
	}
	return o
}

// Defaults of Options.
const (
	DefaultTunnelTimeout = time.Hour
	DefaultHardStopAfter = 15 * time.Minute
)
