// Package contract is the typed codec of the registration contract: what
// discovery writes into a Consul service registration's meta for the load
// balancer, and what lb reads back. It is the only place that knows the
// meta keys (lb_mode, lb_port, …, check_kind, check_interval, …); a test in
// this package fails if any other Go file spells one.
//
// Encoding is canonical (one spelling per value), so an unchanged label
// gives an unchanged registration. Decoding trusts nothing: meta can be
// written by anyone with write access to the catalog, so every value is
// checked again here, against what HAProxy can take safely, and a bad one
// is an error naming the key, the value and what is wanted.
//
// The package is pure: no I/O, no clock.
package contract

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The meta keys of the contract.
const (
	KeyLBMode    = "lb_mode"           // "http" or "tcp"; its presence asks for a load balancer
	KeyLBPort    = "lb_port"           // frontend port
	KeyLBHost    = "lb_host"           // http: Host header routed to the service
	KeyLBPath    = "lb_path"           // http: path prefix routed to the service
	KeyLBBalance = "lb_balance"        // roundrobin, leastconn or source
	KeyWeight    = "weight"            // server weight 0-256
	KeyLBSticky  = "lb_sticky"         // "true": cookie persistence
	KeyLBProxy   = "lb_proxy_protocol" // "v1" or "v2": PROXY protocol to the servers
	KeyLBTunnel  = "lb_tunnel_timeout" // idle timeout of upgraded/long-lived connections
	KeyLBTLS     = "lb_tls"            // "true": served on the HTTPS frontend (needs lb_host)
	KeyLBRedir   = "lb_redirect"       // "301" or "308": plain HTTP redirected to HTTPS
	KeyLBHSTS    = "lb_hsts"           // HSTS max-age on HTTPS answers

	KeyCheckKind     = "check_kind"     // http, tcp or none
	KeyCheckPath     = "check_path"     // http check path
	KeyCheckInterval = "check_interval" // between probes
	KeyCheckTimeout  = "check_timeout"  // per probe
	KeyCheckRise     = "check_rise"     // successes before passing
	KeyCheckFall     = "check_fall"     // failures before critical
)

// LBFilter selects, in Consul's filter language, the service instances
// that ask for a load balancer.
const LBFilter = `"` + KeyLBMode + `" in ServiceMeta`

// Value bounds the decoder enforces (what HAProxy takes safely; the label
// grammar in discovery is stricter).
const (
	MaxWeight    = 256
	MaxRiseFall  = 1000
	MinCheckTime = time.Millisecond
	MaxCheckTime = time.Hour
	maxHost      = 253
	// MinTunnel and MaxTunnel bound the tunnel timeout.
	MinTunnel = time.Second
	MaxTunnel = 24 * time.Hour
	// MaxHSTS bounds the HSTS max-age (two years, what preload lists ask).
	MaxHSTS = 2 * 365 * 24 * time.Hour
	maxPath = 1024
)

// LB is the load-balancer part of a registration: the settings every
// instance of one service must agree on, and the instance's weight.
type LB struct {
	Mode    string // "http" or "tcp"
	Port    int    // frontend port; 0: the lb's HTTP port (http only)
	Host    string // http only; "" routes any host
	Path    string // http only; "" routes any path
	Balance string // "": the lb's default
	Weight  int    // 0-256; a registration always carries one
	// Sticky pins a client to one server with a cookie, until that server
	// drains or fails.
	Sticky bool
	// ProxyProtocol is "v1" or "v2" to send the PROXY protocol header to
	// the servers (the client's address, for tcp services too), "" for
	// none.
	ProxyProtocol string
	// TunnelTimeout is how long an upgraded (WebSocket) or tcp connection
	// may stay idle; 0: the lb's default.
	TunnelTimeout time.Duration
	// TLS serves the service's host route on the HTTPS frontend too, with
	// a certificate for Host chosen by SNI.
	TLS bool
	// Redirect (301 or 308, with TLS) answers plain HTTP with a redirect
	// to HTTPS instead of serving it.
	Redirect int
	// HSTS, when > 0, adds Strict-Transport-Security with this max-age to
	// HTTPS answers.
	HSTS time.Duration
}

// Check is a health check definition: discovery hands it to Consul and
// writes it into meta, and the lb runs the same check from HAProxy.
type Check struct {
	// Kind is "http", "tcp" or "none", or one Consul runs but HAProxy
	// does not ("https", "ttl", "grpc", from registrator's keys): for
	// those the meta says "none" and the lb follows Consul's state.
	Kind     string
	Path     string        // HTTP(S) path, starting with "/"
	Interval time.Duration // between probes
	Timeout  time.Duration // per probe, < Interval
	Rise     int           // consecutive successes before passing (≥ 1)
	Fall     int           // consecutive failures before critical (≥ 1)
	// Grace is the initial grace after the container starts: until it
	// ends, Fall is raised by Grace/Interval, so a service that is slow to
	// start is not marked critical by failures it cannot help. It is not
	// part of the meta (HAProxy has no use for it).
	Grace time.Duration

	// Consul-only settings (registrator's keys); not part of the meta.
	Method          string        // HTTP(S) method; "" is GET
	TTL             time.Duration // for Kind "ttl": the application passes it itself
	TLSSkipVerify   bool          // https, grpc with TLS
	GRPCUseTLS      bool          // grpc
	InitialStatus   string        // "passing", "warning" or "critical"; "" is drover's own judgment
	DeregisterAfter time.Duration // 0 is drover's default
}

// HAProxyKind is the kind of check HAProxy runs for c: the check kinds it
// cannot run itself become "none" (the lb then follows Consul's state).
func (c Check) HAProxyKind() string {
	switch c.Kind {
	case "http", "tcp":
		return c.Kind
	}
	return "none"
}

// Encode writes l and c into meta in their canonical form. It writes
// nothing when l is nil: the check is part of the contract only for
// instances that ask for a load balancer (Consul runs its own copy).
func Encode(meta map[string]string, l *LB, c Check) {
	if l == nil {
		return
	}
	meta[KeyLBMode] = l.Mode
	if l.Port != 0 {
		meta[KeyLBPort] = strconv.Itoa(l.Port)
	}
	if l.Host != "" {
		meta[KeyLBHost] = l.Host
	}
	if l.Path != "" {
		meta[KeyLBPath] = l.Path
	}
	if l.Balance != "" {
		meta[KeyLBBalance] = l.Balance
	}
	if l.Sticky {
		meta[KeyLBSticky] = "true"
	}
	if l.ProxyProtocol != "" {
		meta[KeyLBProxy] = l.ProxyProtocol
	}
	if l.TunnelTimeout != 0 {
		meta[KeyLBTunnel] = FormatDuration(l.TunnelTimeout)
	}
	if l.TLS {
		meta[KeyLBTLS] = "true"
	}
	if l.Redirect != 0 {
		meta[KeyLBRedir] = strconv.Itoa(l.Redirect)
	}
	if l.HSTS != 0 {
		meta[KeyLBHSTS] = FormatDuration(l.HSTS)
	}
	meta[KeyWeight] = strconv.Itoa(l.Weight)
	kind := c.HAProxyKind()
	meta[KeyCheckKind] = kind
	if kind == "http" {
		meta[KeyCheckPath] = c.Path
	}
	if kind != "none" {
		meta[KeyCheckInterval] = FormatDuration(c.Interval)
		meta[KeyCheckTimeout] = FormatDuration(c.Timeout)
		meta[KeyCheckRise] = strconv.Itoa(c.Rise)
		meta[KeyCheckFall] = strconv.Itoa(c.Fall)
	}
}

// Reserved reports whether k is a meta key of the contract (or in its
// lb_/check_ namespaces), which labels may not set as attributes.
func Reserved(k string) bool {
	return k == KeyWeight || strings.HasPrefix(k, "lb_") || strings.HasPrefix(k, "check_")
}

// AsksForLB reports whether meta asks for a load balancer.
func AsksForLB(meta map[string]string) bool {
	_, ok := meta[KeyLBMode]
	return ok
}

// DecodeLB reads the service-level lb settings of meta (weight is read by
// DecodeWeight). Port is 0 and Balance "" when meta does not set them.
func DecodeLB(meta map[string]string) (LB, error) {
	var l LB
	l.Mode = meta[KeyLBMode]
	if l.Mode != "http" && l.Mode != "tcp" {
		return l, fmt.Errorf("%s %q: want http or tcp", KeyLBMode, l.Mode)
	}
	if v, ok := meta[KeyLBPort]; ok {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return l, fmt.Errorf("%s %q: want a port 1-65535", KeyLBPort, v)
		}
		l.Port = p
	} else if l.Mode == "tcp" {
		return l, fmt.Errorf("%s tcp needs %s", KeyLBMode, KeyLBPort)
	}
	host, hasHost := meta[KeyLBHost]
	path, hasPath := meta[KeyLBPath]
	if l.Mode == "tcp" && (host != "" || path != "") {
		return l, fmt.Errorf("%s and %s need %s http", KeyLBHost, KeyLBPath, KeyLBMode)
	}
	if l.Mode == "tcp" && meta[KeyLBSticky] == "true" {
		return l, fmt.Errorf("%s needs %s http (a cookie)", KeyLBSticky, KeyLBMode)
	}
	if hasHost && !ValidHost(host) {
		return l, fmt.Errorf("%s %q: want a lower-case DNS name", KeyLBHost, host)
	}
	if hasPath && !ValidPath(path) {
		return l, fmt.Errorf("%s %q: %s", KeyLBPath, path, wantPath)
	}
	l.Host, l.Path = host, path
	if v, ok := meta[KeyLBBalance]; ok {
		switch v {
		case "roundrobin", "leastconn", "source":
			l.Balance = v
		default:
			return l, fmt.Errorf("%s %q: want roundrobin, leastconn or source", KeyLBBalance, v)
		}
	}
	if v, ok := meta[KeyLBSticky]; ok {
		switch v {
		case "true":
			l.Sticky = true
		case "false":
		default:
			return l, fmt.Errorf("%s %q: want true or false", KeyLBSticky, v)
		}
	}
	if v, ok := meta[KeyLBProxy]; ok {
		if v != "v1" && v != "v2" {
			return l, fmt.Errorf("%s %q: want v1 or v2", KeyLBProxy, v)
		}
		l.ProxyProtocol = v
	}
	if v, ok := meta[KeyLBTunnel]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < MinTunnel || d > MaxTunnel || d%time.Millisecond != 0 {
			return l, fmt.Errorf("%s %q: want a duration of whole milliseconds, 1s to 24h", KeyLBTunnel, v)
		}
		l.TunnelTimeout = d
	}
	if v, ok := meta[KeyLBTLS]; ok {
		switch v {
		case "true":
			l.TLS = true
		case "false":
		default:
			return l, fmt.Errorf("%s %q: want true or false", KeyLBTLS, v)
		}
	}
	if v, ok := meta[KeyLBRedir]; ok {
		if v != "301" && v != "308" {
			return l, fmt.Errorf("%s %q: want 301 or 308", KeyLBRedir, v)
		}
		l.Redirect, _ = strconv.Atoi(v)
	}
	if v, ok := meta[KeyLBHSTS]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > MaxHSTS || d%time.Second != 0 {
			return l, fmt.Errorf("%s %q: want whole seconds, 1s to 2 years", KeyLBHSTS, v)
		}
		l.HSTS = d
	}
	if (l.TLS || l.Redirect != 0 || l.HSTS != 0) && (l.Mode != "http" || l.Host == "") {
		return l, fmt.Errorf("%s, %s and %s need %s http and %s (the certificate is chosen by host name)", KeyLBTLS, KeyLBRedir, KeyLBHSTS, KeyLBMode, KeyLBHost)
	}
	if (l.Redirect != 0 || l.HSTS != 0) && !l.TLS {
		return l, fmt.Errorf("%s and %s need %s true", KeyLBRedir, KeyLBHSTS, KeyLBTLS)
	}
	return l, nil
}

const wantPath = `want a path starting with "/" without spaces, quotes, '\' or '#'`

// DecodeWeight reads the instance's weight, def when meta has none; a bad
// value is an error and def is used.
func DecodeWeight(meta map[string]string, def int) (int, error) {
	v, ok := meta[KeyWeight]
	if !ok {
		return def, nil
	}
	w, err := strconv.Atoi(v)
	if err != nil || w < 0 || w > MaxWeight {
		return def, fmt.Errorf("%s %q: want 0-%d; using %d", KeyWeight, v, MaxWeight, def)
	}
	return w, nil
}

// DecodeCheckKind reads the check's kind and path (which HAProxy sets per
// backend, so all instances of a service must agree), def's kind when meta
// has none. An http check without a path checks "/".
func DecodeCheckKind(meta map[string]string, def Check) (kind, path string, err error) {
	kind = def.Kind
	if v, ok := meta[KeyCheckKind]; ok {
		switch v {
		case "http", "tcp", "none":
			kind = v
		default:
			return "", "", fmt.Errorf("%s %q: want http, tcp or none", KeyCheckKind, v)
		}
	}
	if kind != "http" {
		return kind, "", nil
	}
	path = "/"
	if v, ok := meta[KeyCheckPath]; ok {
		if !ValidPath(v) {
			return "", "", fmt.Errorf("%s %q: %s", KeyCheckPath, v, wantPath)
		}
		path = v
	}
	return kind, path, nil
}

// DecodeCheck reads the whole check of an instance, starting from def: a
// missing value keeps def's; a bad one keeps def's with an error saying
// so. A kind or path that DecodeCheckKind refuses keeps def's kind and
// path here (the caller refuses the service on that error). A timeout
// above the interval becomes the interval.
func DecodeCheck(meta map[string]string, def Check) (Check, []error) {
	c := def
	var errs []error
	if kind, path, err := DecodeCheckKind(meta, def); err == nil {
		c.Kind, c.Path = kind, path
	}
	dur := func(key string, d *time.Duration) {
		v, ok := meta[key]
		if !ok {
			return
		}
		x, err := time.ParseDuration(v)
		if err != nil || x < MinCheckTime || x > MaxCheckTime || x%time.Millisecond != 0 {
			errs = append(errs, fmt.Errorf("%s %q: want a duration of whole milliseconds, 1ms to 1h; using %s", key, v, FormatDuration(*d)))
			return
		}
		*d = x
	}
	num := func(key string, n *int) {
		v, ok := meta[key]
		if !ok {
			return
		}
		x, err := strconv.Atoi(v)
		if err != nil || x < 1 || x > MaxRiseFall {
			errs = append(errs, fmt.Errorf("%s %q: want 1-%d; using %d", key, v, MaxRiseFall, *n))
			return
		}
		*n = x
	}
	dur(KeyCheckInterval, &c.Interval)
	dur(KeyCheckTimeout, &c.Timeout)
	num(KeyCheckRise, &c.Rise)
	num(KeyCheckFall, &c.Fall)
	if c.Timeout > c.Interval {
		errs = append(errs, fmt.Errorf("%s %s exceeds %s %s; using %s", KeyCheckTimeout, FormatDuration(c.Timeout),
			KeyCheckInterval, FormatDuration(c.Interval), FormatDuration(c.Interval)))
		c.Timeout = c.Interval
	}
	c.Grace = 0
	return c, errs
}

// FormatDuration writes d in whole seconds ("5s") or, when it has a
// fraction of a second, in milliseconds ("1500ms"): the form both meta and
// haproxy.cfg use.
func FormatDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// ValidPath reports whether p is a URL path the contract accepts: it
// starts with "/", is at most 1024 bytes, and has no spaces, control or
// non-ASCII bytes, quotes, backslashes or '#', so that it is safe to write
// unquoted into generated configuration (HAProxy's included).
func ValidPath(p string) bool {
	if !strings.HasPrefix(p, "/") || len(p) > maxPath {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '\\' || c == '#' {
			return false
		}
	}
	return true
}

// ValidHost reports whether h is a lower-case DNS name: labels of [a-z0-9-]
// not starting or ending with '-', 1 to 63 characters each, at most 253 in
// all.
func ValidHost(h string) bool {
	if len(h) < 1 || len(h) > maxHost {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if len(l) < 1 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
