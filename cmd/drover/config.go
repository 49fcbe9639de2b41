package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/drover-net/drover/discovery"
)

// Config is the agent's configuration. Every field has a flag, a DROVER_*
// environment variable (flag name upper-cased, "-" → "_") and a key of the
// same name as the flag in the TOML file given by --config; flags win over
// the environment, the environment over the file, the file over defaults.
type Config struct {
	NodeName     string        // drover node name; default: persisted, else the Consul agent's node name
	DataDir      string        // key, lease cache, node name (0700)
	Consul       consulFlags   // local Consul agent: address, token file, TLS
	DockerHost   string        // empty: DOCKER_HOST or the default socket
	Interface    string        // WireGuard interface name
	WGMode       string        // auto, kernel or userspace
	ListenPort   int           // WireGuard UDP port
	Endpoint     string        // published underlay ip[:port]; empty: the Consul agent's address
	ClusterCIDR  string        // the cluster's container address space
	SubnetSize   int           // prefix length of each host's subnet
	MTU          int           // WireGuard MTU; 0: underlay MTU - 80
	Keepalive    time.Duration // persistent keepalive
	PeerTimeout  time.Duration // a node failing this long stops being a peer
	Resync       time.Duration // full reconcile period
	Network      string        // Docker bridge network for containers
	Bridge       string        // Linux bridge name of that network
	AddrMode     string        // how registrations get their address: auto, overlay, host or container
	AdvertiseIP  string        // host address registered for published ports; empty: the endpoint's address
	Register     string        // labelled (containers with drover.* or SERVICE_* keys) or all (registrator's default)
	StatusSocket string        // local status API (unix socket, 0600)
	MetricsAddr  string        // Prometheus /metrics, /healthz, /readyz; empty disables
	UI           string        // web UI: "" on the metrics listener, "off", or its own host:port
	UITokenFile  string        // file holding the token the UI requires (required off loopback)
	Confdir      string        // confgen: directory with conf.d/ and templates/; empty: no confgen in the agent
	Prefix       string        // confgen: KV prefix joined before every resource's prefix
	LB           bool          // run the HAProxy load balancer on this host
	HAProxyMode  string        // managed (drover runs HAProxy) or external (drover drives one run by someone else)
	HAProxyBin   string        // haproxy binary (validation; managed mode's process)
	LBDir        string        // lb state: haproxy.cfg (managed), last-known-good, server state; default DATA_DIR/lb
	HAProxyCfg   string        // config file HAProxy reads; default LB_DIR/haproxy.cfg
	HAProxySock  string        // HAProxy master CLI socket; default LB_DIR/master.sock
	LBSlots      int           // smallest server-slot pool per backend (a power of two)
	LBHTTPPort   int           // port of http services without drover.lb.port
	LBReloadMin  time.Duration // at most one reload per this interval; changes in between coalesce
	LBConfirm    time.Duration // a backend losing all or most servers at once waits this long for confirmation
	LBHTTPSPort  int           // port of the HTTPS frontend of drover.lb.tls services
	LBCertDir    string        // directory of PEM bundles (besides KV drover/v1/certs/)
	LBAccessLog  string        // UDP address (loopback) HAProxy sends access log lines to; empty: none
	LBLogRate    int           // access log lines written per second at most (the rest counted)
	LBAllow      string        // CIDRs whose instances are proxied without a drover-node record (comma-separated)
	LBTrusted    string        // CIDRs of proxies whose X-Forwarded-* headers are kept (comma-separated)
	LBAcceptPrx  bool          // frontends expect the PROXY protocol (behind an L4 balancer)
	LBHardStop   time.Duration // an old HAProxy worker keeps its connections at most this long after a reload
	LBTunnel     time.Duration // idle timeout of WebSocket/upgraded and tcp connections, unless a label says otherwise
	DNSAddr      string        // ip[:port] of the containers' DNS server, on the dummy link drover-dns; empty: off
	DNSDomain    string        // domain answered from Consul (containers' search domain)
	DNSTTL       time.Duration // TTL of every answer, negative ones too
	DNSUpstream  string        // resolvers for every other name (comma-separated ip[:port]); empty: /etc/resolv.conf's at start
	DNSAllow     string        // CIDRs served besides loopback and the cluster CIDR (comma-separated)
	LogFormat    string        // text or json
	LogLevel     string        // debug, info, warn or error
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		DataDir:      "/var/lib/drover",
		Interface:    "drover0",
		WGMode:       "auto",
		ListenPort:   51820,
		ClusterCIDR:  "10.42.0.0/16",
		SubnetSize:   24,
		Keepalive:    25 * time.Second,
		PeerTimeout:  24 * time.Hour,
		Resync:       30 * time.Second,
		Network:      "drover",
		AddrMode:     "auto",
		Register:     "labelled",
		Bridge:       "drover-br",
		StatusSocket: "/run/drover/drover.sock",
		MetricsAddr:  "127.0.0.1:9714",
		HAProxyMode:  "managed",
		HAProxyBin:   "haproxy",
		LBSlots:      8,
		LBHTTPPort:   80,
		LBReloadMin:  2 * time.Second,
		LBConfirm:    3 * time.Second,
		LBHTTPSPort:  443,
		LBAccessLog:  "127.0.0.1:9715",
		LBLogRate:    100,
		LBHardStop:   15 * time.Minute,
		LBTunnel:     time.Hour,
		DNSAddr:      "169.254.53.53",
		DNSDomain:    "service.consul",
		DNSTTL:       5 * time.Second,
		DNSAllow:     "172.17.0.0/16",
		LogFormat:    "text",
		LogLevel:     "info",
	}
}

// agentFlags binds cfg's fields to fs; the returned string is --config.
func agentFlags(fs *flag.FlagSet, cfg *Config) *string {
	file := fs.String("config", "", "TOML file whose keys are these flags' names, e.g. cluster-cidr = \"10.42.0.0/16\" (env DROVER_CONFIG)")
	fs.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, "drover node name (default: kept from the first start, else the Consul agent's node name)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the WireGuard key, lease cache and node name (0700)")
	cfg.Consul.bind(fs)
	fs.StringVar(&cfg.DockerHost, "docker-host", cfg.DockerHost, "Docker daemon address (default: DOCKER_HOST, else the default socket)")
	fs.StringVar(&cfg.Interface, "interface", cfg.Interface, "WireGuard interface name")
	fs.StringVar(&cfg.WGMode, "wg-mode", cfg.WGMode, "WireGuard implementation: auto, kernel or userspace")
	fs.IntVar(&cfg.ListenPort, "listen-port", cfg.ListenPort, "WireGuard UDP listen port")
	fs.StringVar(&cfg.Endpoint, "endpoint", cfg.Endpoint, "underlay ip[:port] other hosts reach this one at (default: the Consul agent's address and --listen-port)")
	fs.StringVar(&cfg.ClusterCIDR, "cluster-cidr", cfg.ClusterCIDR, "address space of all container subnets")
	fs.IntVar(&cfg.SubnetSize, "subnet-size", cfg.SubnetSize, "prefix length of each host's container subnet")
	fs.IntVar(&cfg.MTU, "mtu", cfg.MTU, "WireGuard MTU (0: the underlay interface's MTU minus 80)")
	fs.DurationVar(&cfg.Keepalive, "keepalive", cfg.Keepalive, "WireGuard persistent keepalive")
	fs.DurationVar(&cfg.PeerTimeout, "peer-timeout", cfg.PeerTimeout, "remove a peer whose node has been failing in Consul this long (0: never)")
	fs.DurationVar(&cfg.Resync, "resync", cfg.Resync, "full reconcile period")
	fs.StringVar(&cfg.Network, "network", cfg.Network, "Docker bridge network that gets this host's subnet")
	fs.StringVar(&cfg.Bridge, "bridge", cfg.Bridge, "Linux bridge name of that network")
	fs.StringVar(&cfg.AddrMode, "address-mode", cfg.AddrMode, "where containers are registered unless drover.address says otherwise: auto (overlay address on --network, else the host's address and the published port), overlay, host (registrator's default) or container (the container's own address, registrator's -internal)")
	fs.StringVar(&cfg.Register, "register", cfg.Register, "which containers are registered: labelled (drover.* labels or registrator's SERVICE_NAME/_TAGS/_CHECK_*/_IGNORE) or all (every container with a port to register, named after its image, as registrator does by default)")
	fs.StringVar(&cfg.AdvertiseIP, "advertise-addr", cfg.AdvertiseIP, "host address registered for published ports, like registrator's -ip (default: the address of --endpoint)")
	fs.StringVar(&cfg.StatusSocket, "status-socket", cfg.StatusSocket, "unix socket of the local status API")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "address of the Prometheus /metrics, /healthz and /readyz endpoints (empty: off)")
	fs.StringVar(&cfg.UI, "ui", cfg.UI, "read-only web UI (/ui/) and its JSON API (/api/v1/): empty serves them on --metrics-addr, \"off\" disables them, host:port gives them a listener of their own; off a loopback address --ui-token-file is required")
	fs.StringVar(&cfg.UITokenFile, "ui-token-file", cfg.UITokenFile, "file holding the token the web UI and API require (Authorization: Bearer TOKEN, or /ui/?token=TOKEN once, which sets a cookie); required when the UI listens on a non-loopback address")
	fs.StringVar(&cfg.Confdir, "confdir", cfg.Confdir, "run confgen in the agent over this directory's conf.d/ and templates/ (empty: off)")
	fs.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "confgen: KV prefix joined before every resource's prefix")
	fs.BoolVar(&cfg.LB, "lb", cfg.LB, "run the HAProxy load balancer on this host for services with drover.lb.* labels")
	fs.StringVar(&cfg.HAProxyMode, "haproxy-mode", cfg.HAProxyMode, "managed: drover starts and supervises HAProxy; external: drover writes --haproxy-config and drives an HAProxy started by someone else through --haproxy-master-socket")
	fs.StringVar(&cfg.HAProxyBin, "haproxy-bin", cfg.HAProxyBin, "haproxy binary, used to validate every config (and run it in managed mode)")
	fs.StringVar(&cfg.LBDir, "lb-dir", cfg.LBDir, "directory for the lb's config, last-known-good config and server state (default: DATA_DIR/lb)")
	fs.StringVar(&cfg.HAProxyCfg, "haproxy-config", cfg.HAProxyCfg, "config file HAProxy runs from (default: LB_DIR/haproxy.cfg)")
	fs.StringVar(&cfg.HAProxySock, "haproxy-master-socket", cfg.HAProxySock, "HAProxy master CLI socket (default: LB_DIR/master.sock)")
	fs.IntVar(&cfg.LBSlots, "lb-slots", cfg.LBSlots, "smallest pool of server slots per backend, a power of two: scaling within it never reloads HAProxy")
	fs.IntVar(&cfg.LBHTTPPort, "lb-http-port", cfg.LBHTTPPort, "port of http services without drover.lb.port")
	fs.DurationVar(&cfg.LBReloadMin, "lb-reload-interval", cfg.LBReloadMin, "at most one HAProxy reload per interval; structural changes in between coalesce")
	fs.DurationVar(&cfg.LBConfirm, "lb-confirm", cfg.LBConfirm, "a backend losing all or most of its servers in one Consul read waits this long for the same answer before it is applied")
	fs.IntVar(&cfg.LBHTTPSPort, "lb-https-port", cfg.LBHTTPSPort, "port of the HTTPS frontend of services with drover.lb.tls=true")
	fs.StringVar(&cfg.LBCertDir, "lb-cert-dir", cfg.LBCertDir, "directory of PEM bundles (chain, then key; *.pem) served by SNI, besides Consul KV drover/v1/certs/ (empty: KV only)")
	fs.StringVar(&cfg.LBAccessLog, "lb-access-log", cfg.LBAccessLog, "loopback UDP address HAProxy sends one access log line per request to; the agent writes them as structured log lines (empty: no access log)")
	fs.IntVar(&cfg.LBLogRate, "lb-access-log-rate", cfg.LBLogRate, "at most this many access log lines per second are written; the rest are counted in drover_lb_access_log_dropped_total")
	fs.StringVar(&cfg.LBAllow, "lb-allow", cfg.LBAllow, "comma-separated CIDRs whose instances the lb proxies although no drover agent registered them (default: none; loopback, link-local and this host's addresses never)")
	fs.StringVar(&cfg.LBTrusted, "lb-trusted-proxies", cfg.LBTrusted, "comma-separated CIDRs of proxies in front of the lb whose X-Forwarded-For/-Proto/-Port are kept; from anyone else they are replaced")
	fs.BoolVar(&cfg.LBAcceptPrx, "lb-accept-proxy", cfg.LBAcceptPrx, "every lb frontend expects the PROXY protocol (an lb host behind an L4 balancer that sends it)")
	fs.DurationVar(&cfg.LBHardStop, "lb-hard-stop-after", cfg.LBHardStop, "after a reload, an old HAProxy worker keeps serving its open connections at most this long (longer keeps idle WebSockets; old workers hold memory meanwhile)")
	fs.DurationVar(&cfg.LBTunnel, "lb-tunnel-timeout", cfg.LBTunnel, "idle timeout of WebSocket/upgraded and tcp connections of services without drover.lb.tunnel-timeout")
	fs.StringVar(&cfg.DNSAddr, "dns-addr", cfg.DNSAddr, "ip[:port] (port 53 by default) of the DNS server for containers, held by the dummy link drover-dns; point dockerd's --dns at it (empty: no DNS server)")
	fs.StringVar(&cfg.DNSDomain, "dns-domain", cfg.DNSDomain, "domain answered from Consul: <service>.DOMAIN, <tag>.<service>.DOMAIN (give it to dockerd as --dns-search for short names)")
	fs.DurationVar(&cfg.DNSTTL, "dns-ttl", cfg.DNSTTL, "TTL of every DNS answer from Consul, negative answers too (whole seconds)")
	fs.StringVar(&cfg.DNSUpstream, "dns-upstream", cfg.DNSUpstream, "comma-separated ip[:port] resolvers every name outside --dns-domain is forwarded to (default: the nameservers of /etc/resolv.conf at start)")
	fs.StringVar(&cfg.DNSAllow, "dns-allow", cfg.DNSAllow, "comma-separated CIDRs the DNS server answers besides loopback and --cluster-cidr (default: Docker's default bridge); any other source is refused")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "log format: text or json")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn or error")
	return file
}

// envName is the DROVER_* variable of a flag.
func envName(flagName string) string {
	return "DROVER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// load completes a parsed flag set with the environment and the config
// file: a flag given on the command line wins; otherwise its DROVER_*
// variable; otherwise the file's key of the same name; otherwise the
// default. Every problem (unknown key, bad value) is reported at once.
func load(fs *flag.FlagSet, getenv func(string) string, file *string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			set[f.Name] = true
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", envName(f.Name), v, err))
			}
		}
	})
	if *file == "" {
		return errors.Join(errs...)
	}
	var kv map[string]any
	if _, err := toml.DecodeFile(*file, &kv); err != nil {
		return errors.Join(append(errs, fmt.Errorf("reading config file %s: %w", *file, err))...)
	}
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			errs = append(errs, fmt.Errorf("config file %s: unknown key %q (keys are the agent's flag names)", *file, k))
			continue
		}
		if set[k] {
			continue
		}
		if err := f.Value.Set(fmt.Sprint(kv[k])); err != nil {
			errs = append(errs, fmt.Errorf("config file %s: %s = %v: %v", *file, k, kv[k], err))
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem of cfg at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.DataDir == "" {
		bad("--data-dir is empty")
	}
	if c.Interface == "" || len(c.Interface) > 15 {
		bad("--interface %q: want 1-15 characters", c.Interface)
	}
	switch c.WGMode {
	case "auto", "kernel", "userspace":
	default:
		bad("--wg-mode %q: want auto, kernel or userspace", c.WGMode)
	}
	if c.ListenPort < 1 || c.ListenPort > 65535 {
		bad("--listen-port %d: want 1..65535", c.ListenPort)
	}
	cidr, err := netip.ParsePrefix(c.ClusterCIDR)
	if err != nil || !cidr.Addr().Is4() {
		bad("--cluster-cidr %q: want an IPv4 prefix such as 10.42.0.0/16", c.ClusterCIDR)
	} else if c.SubnetSize < cidr.Bits() || c.SubnetSize > 29 {
		bad("--subnet-size %d: want %d..29 for cluster CIDR %s", c.SubnetSize, cidr.Bits(), cidr)
	}
	if c.Endpoint != "" {
		if _, err := parseEndpoint(c.Endpoint, c.ListenPort); err != nil {
			bad("--endpoint %q: %v", c.Endpoint, err)
		}
	}
	if c.MTU != 0 && (c.MTU < 1280 || c.MTU > 9000) {
		bad("--mtu %d: want 0 (auto) or 1280..9000", c.MTU)
	}
	if c.Keepalive < 0 || c.PeerTimeout < 0 || c.Resync <= 0 {
		bad("--keepalive, --peer-timeout must be ≥ 0 and --resync > 0")
	}
	if c.Network == "" || c.Bridge == "" || len(c.Bridge) > 15 {
		bad("--network must be set and --bridge 1-15 characters")
	}
	if _, err := discovery.ParseAddressMode(c.AddrMode); err != nil {
		bad("--address-mode %q: want auto, overlay, host or container", c.AddrMode)
	}
	if c.Register != "labelled" && c.Register != "all" {
		bad("--register %q: want labelled or all", c.Register)
	}
	if c.AdvertiseIP != "" {
		if a, err := netip.ParseAddr(c.AdvertiseIP); err != nil || !a.Is4() || a.IsLoopback() || a.IsUnspecified() {
			bad("--advertise-addr %q: want an IPv4 address other hosts reach (not loopback)", c.AdvertiseIP)
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			bad("--metrics-addr %q: want host:port or empty", c.MetricsAddr)
		}
	}
	if ui := c.UIListen(); c.UI != "" && c.UI != "off" {
		if _, _, err := net.SplitHostPort(c.UI); err != nil {
			bad("--ui %q: want host:port, empty (on --metrics-addr) or off", c.UI)
		} else if !loopbackAddr(ui) && c.UITokenFile == "" {
			bad("--ui %s is not a loopback address: give --ui-token-file (a file holding the token every browser and script must send), bind it to 127.0.0.1, or set --ui off", c.UI)
		}
	} else if ui != "" && !loopbackAddr(ui) && c.UITokenFile == "" {
		bad("the web UI is served on --metrics-addr %s, which is not a loopback address: give --ui-token-file (a file holding the token every browser and script must send), give the UI a loopback listener of its own (--ui 127.0.0.1:9716), or set --ui off", ui)
	}
	switch c.HAProxyMode {
	case "managed", "external":
	default:
		bad("--haproxy-mode %q: want managed or external", c.HAProxyMode)
	}
	if c.LBSlots < 1 || c.LBSlots > 1024 || c.LBSlots&(c.LBSlots-1) != 0 {
		bad("--lb-slots %d: want a power of two in 1..1024", c.LBSlots)
	}
	if c.LBHTTPPort < 1 || c.LBHTTPPort > 65535 {
		bad("--lb-http-port %d: want 1..65535", c.LBHTTPPort)
	}
	if c.LBHTTPSPort < 1 || c.LBHTTPSPort > 65535 || (c.LB && c.LBHTTPSPort == c.LBHTTPPort) {
		bad("--lb-https-port %d: want 1..65535, not --lb-http-port", c.LBHTTPSPort)
	}
	if c.LBReloadMin < 0 || c.LBConfirm < 0 {
		bad("--lb-reload-interval and --lb-confirm must be ≥ 0")
	}
	for _, l := range []struct{ flag, v string }{{"--lb-allow", c.LBAllow}, {"--lb-trusted-proxies", c.LBTrusted}} {
		if _, err := parseCIDRs(l.v); err != nil {
			bad("%s %q: %v", l.flag, l.v, err)
		}
	}
	if c.LBAccessLog != "" {
		if ap, err := netip.ParseAddrPort(c.LBAccessLog); err != nil || !ap.Addr().IsLoopback() {
			bad("--lb-access-log %q: want a loopback ip:port (or empty)", c.LBAccessLog)
		}
	}
	if c.LBLogRate < 1 {
		bad("--lb-access-log-rate %d: want ≥ 1", c.LBLogRate)
	}
	if c.LBHardStop < time.Second || c.LBTunnel < time.Second || c.LBTunnel > 24*time.Hour {
		bad("--lb-hard-stop-after must be ≥ 1s and --lb-tunnel-timeout 1s..24h")
	}
	if c.LB && c.HAProxyBin == "" {
		bad("--haproxy-bin is empty")
	}
	if _, _, err := dnsListen(c.DNSAddr); err != nil {
		bad("--dns-addr %q: %v", c.DNSAddr, err)
	}
	if d := strings.Trim(c.DNSDomain, "."); d == "" || !isDomainName(d) {
		bad("--dns-domain %q: want a domain name such as service.consul", c.DNSDomain)
	}
	if c.DNSTTL < 0 || c.DNSTTL > 24*time.Hour || c.DNSTTL%time.Second != 0 {
		bad("--dns-ttl %v: want whole seconds in 0s..24h", c.DNSTTL)
	}
	if c.DNSUpstream != "" {
		if _, err := dnsUpstreams(c.DNSUpstream, "", netip.AddrPort{}); err != nil {
			bad("%v", err)
		}
	}
	if _, err := parseCIDRs(c.DNSAllow); err != nil {
		bad("--dns-allow %q: %v", c.DNSAllow, err)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("--log-format %q: want text or json", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return nil
}

// UIListen is the address the web UI listens on: its own --ui, else the
// metrics listener; "" when it is off.
func (c Config) UIListen() string {
	switch c.UI {
	case "off":
		return ""
	case "":
		return c.MetricsAddr
	}
	return c.UI
}

// loopbackAddr reports whether host:port names only loopback: a loopback
// IP or localhost (an empty host is every address).
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseEndpoint reads "ip" or "ip:port".
func parseEndpoint(s string, port int) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want ip or ip:port")
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// parseCIDRs reads a comma-separated list of CIDRs ("" is none).
func parseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("want comma-separated CIDRs such as 10.0.0.0/8: %w", err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
