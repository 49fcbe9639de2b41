// Package sandbox builds a multi-host drover cluster on one Linux machine:
// every simulated host is a network namespace (plus a private mount
// namespace) on a shared underlay bridge, with its own Consul client agent
// and its own dockerd; Consul servers live in namespaces of their own.
//
// It is test and demo infrastructure: `drover sandbox` exposes it to users and
// every end-to-end test drives it. It owns only what it creates, all named
// with one prefix, so that teardown and stale-state cleanup are exact.
// It never gives the root namespace a route into the underlay.
//
// Every host is a production host, not a lab one: dockerd with its own
// defaults (iptables with FORWARD policy DROP, masquerade, docker0, the
// userland proxy), an input firewall that lets in only the ports
// docs/security.md lists (firewall.go), and a secured Consul: ACLs deny by
// default, HTTPS only with a CA the sandbox makes, gossip encryption, and a
// least-privilege token per drover agent (security.go).
//
// Topology for prefix "drv" (the default):
//
//	netns drv-sw      bridge br0 (the underlay switch, 10.99.0.0/24)
//	netns drv-c1..c3  eth0 10.99.0.2..4   consul server, input firewall
//	netns drv-h1..hN  eth0 10.99.0.11..   consul client agent (https://127.0.0.1:8501),
//	                  dockerd (unix socket under the run dir), input
//	                  firewall, drover agent, private /run/wireguard in
//	                  the host's mount namespace
package sandbox

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// MaxHosts is the largest cluster a sandbox builds (addresses .11 to .60).
const MaxHosts = 50

// Underlay is the underlay network every sandbox host is attached to. It
// exists only inside the sandbox's namespaces.
var Underlay = netip.MustParsePrefix("10.99.0.0/24")

// Options configures a sandbox. The zero value of each field means its
// default (see Defaults).
type Options struct {
	// Prefix starts the name of every namespace, directory, mount and cgroup
	// the sandbox makes. Default "drv"; tests use their own so that they
	// never touch a user's demo.
	Prefix string
	// Hosts is the number of simulated hosts, h1..hN. Default: the number
	// of the sandbox that is up, else 3.
	Hosts int
	// ConsulServers is 1 or 3. Default: that of the sandbox that is up,
	// else 1.
	ConsulServers int
	// Dir holds persistent data (Consul and Docker data, logs, state file).
	// Default /var/lib/<prefix>-sandbox.
	Dir string
	// RunDir holds sockets, pid files and mount-namespace handles.
	// Default /run/<prefix>-sandbox.
	RunDir string
	// BinDir holds the consul, drover and drover-demo binaries. Default: the
	// directory of the running executable.
	BinDir string
	// Agents starts a drover agent on every host (after Consul and dockerd).
	Agents bool
	// LB names the host whose agent runs the load balancer (--lb, managed
	// HAProxy, lb dir <host dir>/lb). Empty: that of the sandbox that is
	// up, else none; "none": none.
	LB string
	// Log receives progress; default discards.
	Log *slog.Logger
}

// Sandbox is one sandbox cluster, described by its options. Its methods are
// not safe for concurrent use: one caller drives a sandbox at a time.
type Sandbox struct {
	opt Options
	log *slog.Logger
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,7}$`)

// New checks opt, fills defaults and returns the sandbox it describes. It
// changes nothing on the machine.
func New(opt Options) (*Sandbox, error) {
	if opt.Prefix == "" {
		opt.Prefix = "drv"
	}
	if opt.Dir == "" {
		opt.Dir = "/var/lib/" + opt.Prefix + "-sandbox"
	}
	// An unset shape means "the one that is up", else the default.
	if st, ok := (&Sandbox{opt: opt}).readState(); ok {
		if opt.Hosts == 0 {
			opt.Hosts = st.Hosts
		}
		if opt.ConsulServers == 0 {
			opt.ConsulServers = st.ConsulServers
		}
		if opt.LB == "" {
			opt.LB = st.LB
		}
	}
	if opt.LB == "none" {
		opt.LB = ""
	}
	if opt.Hosts == 0 {
		opt.Hosts = 3
	}
	if opt.ConsulServers == 0 {
		opt.ConsulServers = 1
	}
	if opt.RunDir == "" {
		opt.RunDir = "/run/" + opt.Prefix + "-sandbox"
	}
	if opt.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the binary directory: %w", err)
		}
		opt.BinDir = filepath.Dir(exe)
	}
	var errs []error
	if !prefixRE.MatchString(opt.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q: want 2-8 lower-case letters or digits, starting with a letter", opt.Prefix))
	}
	if opt.Hosts < 1 || opt.Hosts > MaxHosts {
		errs = append(errs, fmt.Errorf("hosts %d: want 1..%d", opt.Hosts, MaxHosts))
	}
	if opt.ConsulServers != 1 && opt.ConsulServers != 3 {
		errs = append(errs, fmt.Errorf("consul servers %d: want 1 or 3", opt.ConsulServers))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("sandbox options: %w", err)
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Sandbox{opt: opt, log: log}, nil
}

// Options returns the sandbox's options with defaults filled in.
func (s *Sandbox) Options() Options { return s.opt }

// Host describes one simulated host.
type Host struct {
	Name       string     // "h1"
	NetNS      string     // "drv-h1", under /run/netns
	MountNS    string     // file holding the host's mount namespace
	Addr       netip.Addr // underlay address
	Dir        string     // persistent data of this host
	Run        string     // sockets and pid files of this host
	DockerSock string     // dockerd's unix socket
	ConsulHTTP string     // Consul client agent's HTTPS API URL inside the host
	Security   string     // the sandbox's CA, gossip key and management token
}

// Env returns the environment a command inside the host gets: DOCKER_HOST
// points at the host's dockerd; CONSUL_HTTP_ADDR, CONSUL_CACERT and
// CONSUL_HTTP_TOKEN_FILE (the management token: an operator's shell) make
// `consul ...` talk to the host's agent over verified HTTPS, and CURL_HOME's
// .curlrc does the same for `curl https://127.0.0.1:8501/...`.
func (h Host) Env() []string {
	return append([]string{
		"DOCKER_HOST=unix://" + h.DockerSock,
		"DROVER_SANDBOX_HOST=" + h.Name,
		"DROVER_STATUS_SOCKET=" + h.StatusSocket(),
	}, consulEnv(h.Security)...)
}

// StatusSocket is the drover agent's status API socket on host h.
func (h Host) StatusSocket() string { return filepath.Join(h.Run, "drover.sock") }

// Server describes one Consul server node.
type Server struct {
	Name  string // "c1"
	NetNS string
	Addr  netip.Addr
	Dir   string
	Run   string
}

// Host returns host i (1-based) of the sandbox, whether or not it exists.
func (s *Sandbox) Host(i int) Host {
	name := "h" + strconv.Itoa(i)
	run := filepath.Join(s.opt.RunDir, name)
	return Host{
		Name:       name,
		NetNS:      s.opt.Prefix + "-" + name,
		MountNS:    filepath.Join(s.opt.RunDir, "mnt", name),
		Addr:       underlayAddr(10 + i),
		Dir:        filepath.Join(s.opt.Dir, name),
		Run:        run,
		DockerSock: filepath.Join(run, "docker.sock"),
		ConsulHTTP: ConsulURL,
		Security:   filepath.Join(s.opt.Dir, "security"),
	}
}

// Hosts returns every host of the sandbox's shape.
func (s *Sandbox) Hosts() []Host {
	hs := make([]Host, 0, s.opt.Hosts)
	for i := 1; i <= s.opt.Hosts; i++ {
		hs = append(hs, s.Host(i))
	}
	return hs
}

// HostByName finds "hN" among the sandbox's hosts.
func (s *Sandbox) HostByName(name string) (Host, error) {
	for _, h := range s.Hosts() {
		if h.Name == name {
			return h, nil
		}
	}
	return Host{}, fmt.Errorf("no host %q in this sandbox (hosts are h1..h%d)", name, s.opt.Hosts)
}

// Server returns Consul server i (1-based).
func (s *Sandbox) Server(i int) Server {
	name := "c" + strconv.Itoa(i)
	return Server{
		Name:  name,
		NetNS: s.opt.Prefix + "-" + name,
		Addr:  underlayAddr(1 + i),
		Dir:   filepath.Join(s.opt.Dir, name),
		Run:   filepath.Join(s.opt.RunDir, name),
	}
}

// Servers returns every Consul server of the sandbox's shape.
func (s *Sandbox) Servers() []Server {
	ss := make([]Server, 0, s.opt.ConsulServers)
	for i := 1; i <= s.opt.ConsulServers; i++ {
		ss = append(ss, s.Server(i))
	}
	return ss
}

// SwitchNS is the namespace holding the underlay bridge.
func (s *Sandbox) SwitchNS() string { return s.opt.Prefix + "-sw" }

func underlayAddr(last int) netip.Addr {
	b := Underlay.Addr().As4()
	b[3] = byte(last)
	return netip.AddrFrom4(b)
}

func (s *Sandbox) bin(name string) string { return filepath.Join(s.opt.BinDir, name) }
