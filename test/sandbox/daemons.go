package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process names accepted by Kill and Start.
const (
	ProcConsul  = "consul"
	ProcDockerd = "dockerd"
	ProcAgent   = "agent"
	ProcHAProxy = "haproxy"
)

// Processes lists the daemons a host may run, in start order.
var Processes = []string{ProcConsul, ProcDockerd, ProcAgent, ProcHAProxy}

func pidFile(run, name string) string { return filepath.Join(run, name+".pid") }

// retryJoin lists the servers' underlay addresses.
func (s *Sandbox) retryJoin() string {
	var q []string
	for _, sv := range s.Servers() {
		q = append(q, strconv.Quote(sv.Addr.String()))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// consulConfig is the HCL of one agent; server agents also bind their HTTP
// API to the underlay address so that hosts can reach the UI.
func (s *Sandbox) consulConfig(node, addr, dataDir string, server bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = %q\ndatacenter = \"sandbox\"\ndata_dir = %q\n", node, dataDir)
	// A persisted node ID: an agent restarted with an empty data dir comes
	// back with the same ID, so Consul does not refuse it ("Node name … is
	// reserved by node …") while the catalog still knows the old one.
	fmt.Fprintf(&b, "node_id = %q\n", s.NodeID(node))
	fmt.Fprintf(&b, "bind_addr = %q\nadvertise_addr = %q\n", addr, addr)
	fmt.Fprintf(&b, "retry_join = %s\nretry_interval = \"1s\"\n", s.retryJoin())
	b.WriteString("log_level = \"warn\"\ndisable_update_check = true\nenable_script_checks = false\n")
	b.WriteString("performance { raft_multiplier = 1 }\n")
	if server {
		fmt.Fprintf(&b, "server = true\nbootstrap_expect = %d\n", s.opt.ConsulServers)
		fmt.Fprintf(&b, "client_addr = \"127.0.0.1 %s\"\nui_config { enabled = true }\n", addr)
		// A server's own agent token: the management token (servers are
		// the operator's; hosts get least-privilege node identities).
		b.WriteString(s.consulSecurityConfig(node, true, s.ManagementToken()))
	} else {
		b.WriteString("client_addr = \"127.0.0.1\"\n")
		b.WriteString(s.consulSecurityConfig(node, false, s.agentToken(node)))
	}
	return b.String()
}

func (s *Sandbox) consulDaemon(node, netns, mnt, addr, dir, runDir string, server bool) (daemon, error) {
	data := filepath.Join(dir, "consul")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return daemon{}, fmt.Errorf("creating %s: %w", data, err)
	}
	cfg := filepath.Join(dir, "consul.hcl")
	hcl := s.consulConfig(node, addr, data, server)
	if extra, err := os.ReadFile(consulExtraFile(dir)); err == nil {
		hcl += "# from " + consulExtraFile(dir) + "\n" + string(extra)
	}
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		return daemon{}, fmt.Errorf("writing %s: %w", cfg, err)
	}
	return daemon{
		name:    ProcConsul,
		netns:   netns,
		mnt:     mnt,
		argv:    []string{s.bin("consul"), "agent", "-config-file=" + cfg},
		logFile: filepath.Join(dir, "consul.log"),
		pidFile: pidFile(runDir, ProcConsul),
	}, nil
}

// DNSAddr and DNSDomain are drover's defaults for --dns-addr and
// --dns-domain, given to every sandbox dockerd as "dns" and "dns-search".
const (
	DNSAddr   = "169.254.53.53"
	DNSDomain = "service.consul"
)

// dockerDaemon describes host h's dockerd. It runs in the host's network
// namespace only (its own mount namespace would hide cgroup mounts), with
// its own data and exec roots, socket and pid file, and a cgroup parent
// named after the host so that every container process can be found, and
// killed, by cgroup; and drover's DNS server as its containers' resolver,
// as docs/migrating.md tells operators. Everything else is Docker's
// default, as on a fresh production host: iptables rules on (its FORWARD chains, policy DROP), IP
// masquerade, the default docker0 bridge, the userland proxy.
func (s *Sandbox) dockerDaemon(h Host) (daemon, error) {
	cfg := filepath.Join(h.Dir, "daemon.json")
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return daemon{}, fmt.Errorf("creating %s: %w", h.Dir, err)
	}
	// What an operator puts into /etc/docker/daemon.json for drover's DNS
	// (docs/migrating.md): every container's resolver asks the agent at
	// its link-local address, bare names are tried in the service domain.
	daemonJSON := fmt.Sprintf(`{"dns": [%q], "dns-search": [%q]}`+"\n", DNSAddr, DNSDomain)
	if err := os.WriteFile(cfg, []byte(daemonJSON), 0o644); err != nil {
		return daemon{}, fmt.Errorf("writing %s: %w", cfg, err)
	}
	return daemon{
		name:  ProcDockerd,
		netns: h.NetNS,
		argv: []string{"dockerd",
			"--config-file", cfg,
			"--data-root", filepath.Join(h.Dir, "docker"),
			"--exec-root", filepath.Join(h.Run, "dx"),
			"-H", "unix://" + h.DockerSock,
			"--pidfile", filepath.Join(h.Run, "dockerd.self.pid"),
			"--cgroup-parent", "/" + s.cgroupName(h),
			"--log-level", "warn",
		},
		logFile: filepath.Join(h.Dir, "dockerd.log"),
		pidFile: pidFile(h.Run, ProcDockerd),
	}, nil
}

func (s *Sandbox) cgroupName(h Host) string { return s.opt.Prefix + "-sandbox-" + h.Name }

func consulExtraFile(dir string) string { return filepath.Join(dir, "consul-extra.hcl") }

// SetConsulExtra makes host (or server) name's Consul agent start with hcl
// appended to its configuration (empty: none), from its next start on;
// fault tests use it for limits such as http_max_conns_per_client.
func (s *Sandbox) SetConsulExtra(name, hcl string) error {
	dir := ""
	if sv, ok := s.serverByName(name); ok {
		dir = sv.Dir
	} else if h, err := s.HostByName(name); err == nil {
		dir = h.Dir
	} else {
		return err
	}
	if hcl == "" {
		if err := os.Remove(consulExtraFile(dir)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("removing the extra consul config of %s: %w", name, err)
		}
		return nil
	}
	if err := os.WriteFile(consulExtraFile(dir), []byte(hcl), 0o600); err != nil {
		return fmt.Errorf("writing the extra consul config of %s: %w", name, err)
	}
	return nil
}

// ensureServer starts Consul server sv unless it runs.
func (s *Sandbox) ensureServer(sv Server) error {
	d, err := s.consulDaemon(sv.Name, sv.NetNS, "", sv.Addr.String(), sv.Dir, sv.Run, true)
	if err != nil {
		return err
	}
	return ensure(d, "consul")
}

// ensureHost starts host h's Consul agent and dockerd unless they run.
func (s *Sandbox) ensureHost(h Host) error {
	d, err := s.consulDaemon(h.Name, h.NetNS, h.MountNS, h.Addr.String(), h.Dir, h.Run, false)
	if err != nil {
		return err
	}
	if err := ensure(d, "consul"); err != nil {
		return err
	}
	dd, err := s.dockerDaemon(h)
	if err != nil {
		return err
	}
	if pidOf(dd.pidFile, "dockerd") == 0 {
		s.resetDockerRuntime(h)
	}
	return ensure(dd, "dockerd")
}

func ensure(d daemon, match string) error {
	if pidOf(d.pidFile, match) != 0 {
		return nil
	}
	return start(d)
}

// Start starts one daemon of a host again (after Kill, say). It is a no-op
// when the daemon runs. extra arguments go to the agent.
func (s *Sandbox) Start(ctx context.Context, host, proc string, extra ...string) error {
	if sv, ok := s.serverByName(host); ok {
		if proc != ProcConsul {
			return fmt.Errorf("sandbox start: server %s runs only consul", host)
		}
		if err := s.ensureServer(sv); err != nil {
			return err
		}
		return s.waitConsul(ctx)
	}
	h, err := s.HostByName(host)
	if err != nil {
		return err
	}
	switch proc {
	case ProcConsul, ProcDockerd:
		if err := s.ensureHost(h); err != nil {
			return err
		}
		return s.waitHost(ctx, h)
	case ProcAgent:
		if err := s.ensureAgent(h, extra...); err != nil {
			return err
		}
		return s.waitAgent(ctx, h)
	default:
		return fmt.Errorf("sandbox start: %q is not started by the sandbox (want consul, dockerd or agent)", proc)
	}
}

// AgentArgs returns the command line of host h's drover agent.
func (s *Sandbox) AgentArgs(h Host) []string {
	args := []string{s.bin("drover"), "agent",
		"--node-name", h.Name,
		"--data-dir", filepath.Join(h.Dir, "drover"),
		"--consul-addr", h.ConsulHTTP,
		"--consul-ca", s.CAFile(),
		"--consul-token-file", s.DroverTokenFile(h),
		"--docker-host", "unix://" + h.DockerSock,
		"--status-socket", h.StatusSocket(),
	}
	if s.opt.LB == h.Name {
		args = append(args, "--lb", "--lb-dir", s.LBDir(h))
	}
	return args
}

// serverByName finds Consul server name (c1..cN).
func (s *Sandbox) serverByName(name string) (Server, bool) {
	for _, sv := range s.Servers() {
		if sv.Name == name {
			return sv, true
		}
	}
	return Server{}, false
}

// LBDir is the lb directory of host h's agent (haproxy.cfg, haproxy.pid,
// master.sock, haproxy.log).
func (s *Sandbox) LBDir(h Host) string { return filepath.Join(h.Dir, "lb") }

// procPIDFile is where a host's daemon records its PID.
func (s *Sandbox) procPIDFile(h Host, proc string) string {
	if proc == ProcHAProxy {
		return filepath.Join(s.LBDir(h), "haproxy.pid")
	}
	return pidFile(h.Run, proc)
}

// ensureAgent starts host h's drover agent unless it runs.
func (s *Sandbox) ensureAgent(h Host, extra ...string) error {
	return ensure(daemon{
		name:    ProcAgent,
		netns:   h.NetNS,
		mnt:     h.MountNS,
		argv:    append(s.AgentArgs(h), extra...),
		logFile: filepath.Join(h.Dir, "agent.log"),
		pidFile: pidFile(h.Run, ProcAgent),
	}, "drover")
}

// waitAgent waits until host h's agent answers on its status socket with a
// leased subnet.
func (s *Sandbox) waitAgent(ctx context.Context, h Host) error {
	var last string
	err := poll(ctx, 60*time.Second, func() bool {
		out, err := s.Output(ctx, h.Name, s.bin("drover"), "status", "--json")
		last = out
		if err != nil {
			last = err.Error()
		}
		return err == nil && strings.Contains(out, `"subnet": "10.`)
	})
	if err != nil {
		return fmt.Errorf("waiting for the drover agent on %s: %w (last: %s; log: %s)", h.Name, err, strings.TrimSpace(last), filepath.Join(h.Dir, "agent.log"))
	}
	return nil
}

// Kill sends SIGKILL to one daemon of a host, found by its pid file.
func (s *Sandbox) Kill(host, proc string) (int, error) {
	if sv, ok := s.serverByName(host); ok {
		if proc != ProcConsul {
			return 0, fmt.Errorf("sandbox kill: server %s runs only consul", host)
		}
		pid := pidOf(pidFile(sv.Run, ProcConsul), "consul")
		if pid == 0 {
			return 0, fmt.Errorf("sandbox kill: consul is not running on %s", host)
		}
		if err := killPID(pid); err != nil {
			return 0, fmt.Errorf("killing consul on %s: %w", host, err)
		}
		waitGone(pid, 5*time.Second)
		return pid, nil
	}
	h, err := s.HostByName(host)
	if err != nil {
		return 0, err
	}
	match := map[string]string{ProcConsul: "consul", ProcDockerd: "dockerd", ProcAgent: "drover", ProcHAProxy: "haproxy"}[proc]
	if match == "" {
		return 0, fmt.Errorf("sandbox kill: unknown process %q (want one of %s)", proc, strings.Join(Processes, ", "))
	}
	pid := pidOf(s.procPIDFile(h, proc), match)
	if pid == 0 {
		return 0, fmt.Errorf("sandbox kill: %s is not running on %s", proc, host)
	}
	if err := killPID(pid); err != nil {
		return 0, fmt.Errorf("killing %s on %s: %w", proc, host, err)
	}
	waitGone(pid, 5*time.Second)
	return pid, nil
}

// ProcessPID returns the PID of a host's daemon, or 0 when it is not running.
func (s *Sandbox) ProcessPID(h Host, proc string) int {
	match := map[string]string{ProcConsul: "consul", ProcDockerd: "dockerd", ProcAgent: "drover", ProcHAProxy: "haproxy"}[proc]
	return pidOf(s.procPIDFile(h, proc), match)
}

// waitServers waits until the Consul servers have a leader and every
// expected agent is an alive member.
func (s *Sandbox) waitConsul(ctx context.Context) error {
	want := s.opt.ConsulServers + s.opt.Hosts
	var last string
	err := poll(ctx, 60*time.Second, func() bool {
		out, err := s.serverCLI(ctx, "members")
		last = out
		if err != nil {
			return false
		}
		return strings.Count(out, " alive ") >= want
	})
	if err != nil {
		return fmt.Errorf("waiting for %d alive Consul members: %w (last: %s)", want, err, strings.TrimSpace(last))
	}
	return nil
}

// waitHost waits until host h's dockerd answers and its Consul agent has a
// leader.
func (s *Sandbox) waitHost(ctx context.Context, h Host) error {
	var last error
	err := poll(ctx, 60*time.Second, func() bool {
		_, last = s.Output(ctx, h.Name, "docker", "version", "--format", "{{.Server.Version}}")
		if last != nil {
			return false
		}
		var out string
		out, last = s.Output(ctx, h.Name, s.bin("consul"), "operator", "raft", "list-peers")
		return last == nil && strings.Contains(out, "leader")
	})
	if err != nil {
		return fmt.Errorf("waiting for dockerd and consul on %s: %w (last: %v)", h.Name, err, last)
	}
	return nil
}

// poll calls ok every 200 ms until it returns true or d has passed.
func poll(ctx context.Context, d time.Duration, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if ok() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s", d)
		case <-t.C:
		}
	}
}

// resetDockerRuntime clears what a dockerd killed with SIGKILL leaves behind
// on host h, as a reboot would: its managed containerd, shims and containers
// (without live-restore a restarted dockerd stops them anyway, and a new
// containerd hangs on orphaned shims), their mounts and runtime state under
// the exec root, and dockerd's own pid file (a killed daemon may linger as a
// zombie, and dockerd refuses to start while that PID exists).
func (s *Sandbox) resetDockerRuntime(h Host) {
	dx := filepath.Join(h.Run, "dx")
	killReferencing(filepath.Join(dx, "containerd", "containerd.toml"))
	killReferencing(filepath.Join(dx, "containerd", "containerd.sock"))
	s.killCgroup("/" + s.cgroupName(h))
	for _, m := range mountPoints() {
		if strings.HasPrefix(m, dx+"/") {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	_ = os.RemoveAll(dx)
	_ = os.Remove(filepath.Join(h.Run, "dockerd.self.pid"))
}
