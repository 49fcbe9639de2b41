// Package haproxy is lb's adapter to a real HAProxy (2.6+) in master-worker
// mode: it starts and supervises the process (managed mode) or attaches to
// one run by someone else (external mode), applies server changes through
// the runtime API (client-native), and swaps configs: stage, `haproxy -c`
// on the exact staged bytes, atomic rename, one reload through the master
// socket, `show proc` check, and the last-known-good config restored when
// anything fails.
//
// It holds no desired-state logic: lb computes what to do, this package
// does it.
package haproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cnruntime "github.com/haproxytech/client-native/v5/runtime"
	cnoptions "github.com/haproxytech/client-native/v5/runtime/options"

	"github.com/drover-net/drover/internal/atomicfile"
	"github.com/drover-net/drover/lb"
)

// Modes.
const (
	ModeManaged  = "managed"  // drover starts HAProxy and restarts it if it dies
	ModeExternal = "external" // someone else runs HAProxy; drover writes its config and uses its master socket
)

// Options configure an HAProxy.
type Options struct {
	Mode         string // managed or external
	Bin          string // the haproxy binary (validation, and managed mode's process)
	Dir          string // drover's lb directory: staged and last-known-good configs, server state, running state
	ConfigPath   string // the config file HAProxy reads; default Dir/haproxy.cfg
	MasterSocket string // HAProxy's master CLI socket; default Dir/master.sock
	LogAddr      string // UDP address HAProxy sends its access log to ("": none)
	// AttachWait is how long Start waits for a live master that does not
	// answer on its socket before it gives up (its caller retries);
	// default 15s.
	AttachWait time.Duration
	Log        *slog.Logger
}

// HAProxy is one HAProxy process seen through its config file and master
// socket. Methods are safe for one reconcile loop plus concurrent readers
// of Servers and Procs.
type HAProxy struct {
	opt Options

	mu sync.Mutex // guards rt
	rt cnruntime.Runtime
}

// New checks the options and returns an HAProxy; it starts nothing.
func New(opt Options) (*HAProxy, error) {
	switch opt.Mode {
	case ModeManaged, ModeExternal:
	default:
		return nil, fmt.Errorf("haproxy mode %q: want managed or external", opt.Mode)
	}
	if opt.Bin == "" {
		opt.Bin = "haproxy"
	}
	if opt.Dir == "" {
		return nil, errors.New("haproxy: no lb directory")
	}
	if opt.ConfigPath == "" {
		opt.ConfigPath = filepath.Join(opt.Dir, "haproxy.cfg")
	}
	if opt.MasterSocket == "" {
		opt.MasterSocket = filepath.Join(opt.Dir, "master.sock")
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.AttachWait <= 0 {
		opt.AttachWait = 15 * time.Second
	}
	h := &HAProxy{opt: opt}
	if err := h.ensureCerts(); err != nil {
		return nil, fmt.Errorf("haproxy: %w", err)
	}
	h.removeStale()
	return h, nil
}

// removeStale removes what an agent killed while writing left behind: the
// stage files of atomic writes and the copies staged for `haproxy -c`
// (issue 12, T2). Only this agent writes into these directories.
func (h *HAProxy) removeStale() {
	n := 0
	for _, d := range []string{h.opt.Dir, filepath.Dir(h.opt.ConfigPath), h.certDir()} {
		k, _ := atomicfile.RemoveStaleIn(d)
		n += k
	}
	if ms, err := filepath.Glob(filepath.Join(h.opt.Dir, checkPrefix+"*")); err == nil {
		for _, m := range ms {
			if os.Remove(m) == nil {
				n++
			}
		}
	}
	if n > 0 {
		h.opt.Log.Info("removed files a killed agent left while writing", "count", n)
	}
}

// checkPrefix starts the name of a config staged for validation.
const checkPrefix = ".haproxy.cfg.check-"

// Globals are the paths the rendered config must name.
//
// A managed HAProxy started as root runs its workers as the "haproxy" user
// and group when they exist (Debian's package and the haproxy image make
// them): once the ports are bound, a worker compromised by a request holds
// no root rights. An external HAProxy's user is its operator's business.
func (h *HAProxy) Globals() lb.Globals {
	g := lb.Globals{StatsSocket: filepath.Join(h.opt.Dir, "haproxy.sock"), StateFile: filepath.Join(h.opt.Dir, "haproxy.state"),
		CertList: h.certList(), LogAddr: h.opt.LogAddr}
	if h.opt.Mode == ModeManaged && os.Geteuid() == 0 {
		if _, err := user.Lookup(workerUser); err == nil {
			g.User = workerUser
		}
		if _, err := user.LookupGroup(workerUser); err == nil {
			g.Group = workerUser
		}
	}
	return g
}

// workerUser is the unprivileged user and group HAProxy's workers run as.
const workerUser = "haproxy"

// ConfigPath is the file HAProxy runs from.
func (h *HAProxy) ConfigPath() string { return h.opt.ConfigPath }

func (h *HAProxy) runningPath() string { return filepath.Join(h.opt.Dir, "running.json") }
func (h *HAProxy) lkgPath() string     { return h.opt.ConfigPath + ".lkg" }
func (h *HAProxy) pidPath() string     { return filepath.Join(h.opt.Dir, "haproxy.pid") }

// Running returns the State drover last applied to this HAProxy, as saved
// next to its config, and whether there is one.
func (h *HAProxy) Running() (lb.State, bool) {
	b, err := os.ReadFile(h.runningPath())
	if err != nil {
		return lb.State{}, false
	}
	var st lb.State
	if err := json.Unmarshal(b, &st); err != nil {
		h.opt.Log.Warn("ignoring unreadable running state; the next change reloads HAProxy", "file", h.runningPath(), "err", err)
		return lb.State{}, false
	}
	return st, true
}

// Alive reports whether the master socket answers.
func (h *HAProxy) Alive(ctx context.Context) bool {
	_, err := h.master(ctx, "show proc")
	return err == nil
}

// Start makes sure an HAProxy runs. In managed mode a running master
// (found by its socket) is adopted; otherwise the config on disk (or, when
// there is none or it fails validation, initial) is started in its own
// session, so that it outlives the agent. In external mode Start waits up
// to a minute for the master socket, writing initial as the config first
// when there is no valid one, so that HAProxy can start from it.
func (h *HAProxy) Start(ctx context.Context, initial lb.State) error {
	if err := os.MkdirAll(h.opt.Dir, 0o700); err != nil {
		return fmt.Errorf("creating lb directory: %w", err)
	}
	if _, err := os.Stat(h.Globals().StateFile); err != nil {
		// A state file with only its version line: nothing to restore.
		if err := writeAtomic(h.Globals().StateFile, []byte("1\n")); err != nil {
			return fmt.Errorf("creating server state file: %w", err)
		}
	}
	if h.Alive(ctx) {
		h.opt.Log.Info("attached to running haproxy", "master_socket", h.opt.MasterSocket, "config", h.opt.ConfigPath)
		return nil
	}
	if pid := h.masterPID(); pid != 0 && h.opt.Mode == ModeManaged {
		// The master lives but does not answer: re-executing for a reload
		// that an agent killed mid-way asked for, or busy. Wait for it and
		// never start a second one beside it: two masters would share the
		// ports (SO_REUSEPORT) and one of them would serve a config that
		// nobody updates any more.
		if err := h.waitAlive(ctx, h.opt.AttachWait, fmt.Sprintf("haproxy master (pid %d, alive)", pid)); err != nil {
			return fmt.Errorf("not starting a second haproxy beside a live master: %w", err)
		}
		h.opt.Log.Info("attached to running haproxy after it answered", "pid", pid, "master_socket", h.opt.MasterSocket)
		return nil
	}
	if cur, err := os.ReadFile(h.opt.ConfigPath); err != nil || h.Validate(ctx, cur) != nil {
		cfg := lb.Render(initial, h.Globals())
		if err := h.Validate(ctx, cfg); err != nil {
			return fmt.Errorf("initial haproxy config: %w", err)
		}
		if err := h.swap(cfg); err != nil {
			return err
		}
		if err := h.saveRunning(initial); err != nil {
			return err
		}
	}
	if h.opt.Mode == ModeExternal {
		return h.waitAlive(ctx, time.Minute, "external haproxy (start it with -W -S "+h.opt.MasterSocket+" -f "+h.opt.ConfigPath+")")
	}
	return h.startProcess(ctx)
}

func (h *HAProxy) startProcess(ctx context.Context) error {
	_ = os.Remove(h.opt.MasterSocket)
	logf, err := os.OpenFile(filepath.Join(h.opt.Dir, "haproxy.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("starting haproxy: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(h.opt.Bin, "-W", "-S", h.opt.MasterSocket+",mode,600", "-f", h.opt.ConfigPath, "-p", h.pidPath())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting haproxy (%s): %w", h.opt.Bin, err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it dies while we live
	if err := h.waitAlive(ctx, 10*time.Second, "haproxy (see "+logf.Name()+")"); err != nil {
		return err
	}
	h.opt.Log.Info("started haproxy", "pid", cmd.Process.Pid, "config", h.opt.ConfigPath)
	return nil
}

func (h *HAProxy) waitAlive(ctx context.Context, d time.Duration, what string) error {
	deadline := time.Now().Add(d)
	for !h.Alive(ctx) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: master socket %s did not answer within %s", what, h.opt.MasterSocket, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Ensure restarts a managed HAProxy whose master died (from the config on
// disk, which is always a validated one) and reports whether it did. In
// external mode it only reports.
func (h *HAProxy) Ensure(ctx context.Context) (bool, error) {
	if h.Alive(ctx) {
		return false, nil
	}
	h.resetRuntime()
	if h.opt.Mode == ModeExternal {
		return false, fmt.Errorf("external haproxy master socket %s does not answer", h.opt.MasterSocket)
	}
	if pid := h.masterPID(); pid != 0 {
		// The master lives but does not answer (busy, or re-executing for
		// a reload): never start a second one beside it.
		return false, fmt.Errorf("haproxy master (pid %d) does not answer on %s", pid, h.opt.MasterSocket)
	}
	h.opt.Log.Warn("haproxy is not running; restarting it", "config", h.opt.ConfigPath)
	if err := h.startProcess(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// masterPID returns the PID in the pid file when that process is alive and
// is an haproxy, else 0.
func (h *HAProxy) masterPID() int {
	b, err := os.ReadFile(h.pidPath())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cl, []byte("haproxy")) {
		return 0
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// A zombie is not alive.
		if f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return 0
		}
	}
	return pid
}

// Stop stops a managed HAProxy (`drover leave`, benchmarks); running
// connections are closed.
func (h *HAProxy) Stop() {
	if h.opt.Mode != ModeManaged {
		return
	}
	if pid := h.masterPID(); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
}

// Validate runs `haproxy -c` on cfg exactly as it would be installed.
func (h *HAProxy) Validate(ctx context.Context, cfg []byte) error {
	f, err := os.CreateTemp(h.opt.Dir, checkPrefix+"*")
	if err != nil {
		return fmt.Errorf("staging config for validation: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(cfg); err != nil {
		f.Close()
		return fmt.Errorf("staging config for validation: %w", err)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, h.opt.Bin, "-c", "-q", "-f", f.Name()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("haproxy -c rejected the config: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// swap installs cfg as the config atomically (write, fsync, rename, fsync
// the directory), keeping the previous one as the last-known-good.
func (h *HAProxy) swap(cfg []byte) error {
	if cur, err := os.ReadFile(h.opt.ConfigPath); err == nil {
		if err := writeAtomic(h.lkgPath(), cur); err != nil {
			return fmt.Errorf("keeping last-known-good config: %w", err)
		}
	}
	if err := writeAtomic(h.opt.ConfigPath, cfg); err != nil {
		return fmt.Errorf("installing haproxy config: %w", err)
	}
	return nil
}

// writeAtomic replaces path with data (mode 0644: HAProxy may run as
// another user).
func writeAtomic(path string, data []byte) error { return atomicfile.Write(path, data, 0o644) }

func (h *HAProxy) saveRunning(st lb.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("saving running state: %w", err)
	}
	if err := writeAtomic(h.runningPath(), b); err != nil {
		return fmt.Errorf("saving running state: %w", err)
	}
	return nil
}

// Reload installs the config for next and reloads HAProxy seamlessly:
// render, validate the exact bytes, save the health of servers that stay
// (server-state-file), swap atomically, `reload` on the master socket,
// then check `show proc` for a new worker and no new failed reload. If the
// reload fails, the last-known-good config is put back and reloaded, and
// the error is returned; the running state is saved only on success.
func (h *HAProxy) Reload(ctx context.Context, next lb.State) error {
	cfg := lb.Render(next, h.Globals())
	if err := h.Validate(ctx, cfg); err != nil {
		return fmt.Errorf("validating new config: %w", err)
	}
	if err := h.saveServerState(ctx, next); err != nil {
		h.opt.Log.Warn("could not save server state; health restarts after this reload", "err", err)
	}
	before, err := h.Procs(ctx)
	if err != nil {
		return fmt.Errorf("reading haproxy processes before reload: %w", err)
	}
	if err := h.swap(cfg); err != nil {
		return err
	}
	rerr := h.reloadAndCheck(ctx, before)
	if rerr == nil {
		return h.saveRunning(next)
	}
	// Put the last-known-good config back and reload it.
	if lkg, err := os.ReadFile(h.lkgPath()); err == nil {
		if err := writeAtomic(h.opt.ConfigPath, lkg); err != nil {
			return fmt.Errorf("%w; restoring last-known-good config also failed: %v", rerr, err)
		}
		if cur, err := h.Procs(ctx); err == nil {
			if err := h.reloadAndCheck(ctx, cur); err != nil {
				return fmt.Errorf("%w; reloading the last-known-good config also failed: %v", rerr, err)
			}
		}
	}
	return fmt.Errorf("%w (last-known-good config restored)", rerr)
}

func (h *HAProxy) reloadAndCheck(ctx context.Context, before Procs) error {
	h.resetRuntime()
	if _, err := h.master(ctx, "reload"); err != nil && !errors.Is(err, errClosed) {
		return fmt.Errorf("sending reload to the master socket: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(20 * time.Millisecond)
		p, err := h.Procs(ctx)
		if err == nil {
			if p.FailedReloads > before.FailedReloads {
				return fmt.Errorf("haproxy refused the new config (failed reloads %d → %d; see %s)", before.FailedReloads, p.FailedReloads, filepath.Join(h.opt.Dir, "haproxy.log"))
			}
			if p.Reloads > before.Reloads && p.Worker != 0 && p.Worker != before.Worker {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no new haproxy worker within 10s of the reload (last show proc error: %v)", err)
		}
	}
}

// Procs is what `show proc` on the master says.
type Procs struct {
	Master        int
	Reloads       int // master's reload count
	FailedReloads int
	Worker        int   // the current worker's PID
	OldWorkers    []int // workers still finishing connections from before a reload
}

// Procs reads `show proc` from the master socket.
func (h *HAProxy) Procs(ctx context.Context) (Procs, error) {
	out, err := h.master(ctx, "show proc")
	if err != nil {
		return Procs{}, err
	}
	return ParseProcs(out)
}

// ParseProcs parses HAProxy 2.6's `show proc` output.
func ParseProcs(out string) (Procs, error) {
	var p Procs
	section := "master"
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "# workers"):
			section = "workers"
			continue
		case strings.HasPrefix(line, "# old workers"):
			section = "old"
			continue
		case strings.HasPrefix(line, "# programs"):
			section = "programs"
			continue
		case strings.HasPrefix(line, "#"):
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		switch {
		case f[1] == "master":
			p.Master = pid
			p.Reloads, _ = strconv.Atoi(f[2])
			if i := strings.Index(line, "[failed: "); i >= 0 {
				rest := line[i+len("[failed: "):]
				if j := strings.Index(rest, "]"); j >= 0 {
					p.FailedReloads, _ = strconv.Atoi(rest[:j])
				}
			}
		case section == "workers" && f[1] == "worker":
			if p.Worker == 0 {
				p.Worker = pid
			} else {
				p.OldWorkers = append(p.OldWorkers, pid)
			}
		case section == "old" && f[1] == "worker":
			p.OldWorkers = append(p.OldWorkers, pid)
		}
	}
	if p.Master == 0 {
		return p, fmt.Errorf("show proc: no master line in %q", out)
	}
	return p, nil
}

var errClosed = errors.New("connection closed")

// master sends one command to the master CLI and returns its answer.
func (h *HAProxy) master(ctx context.Context, cmd string) (string, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "unix", h.opt.MasterSocket)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// The master CLI keeps a connection open for more commands: quit and
	// half-close so that it answers and closes at once.
	if _, err := c.Write([]byte(cmd + ";quit\n")); err != nil {
		return "", err
	}
	if uc, ok := c.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
	var b bytes.Buffer
	_, err = b.ReadFrom(c)
	if err != nil && b.Len() == 0 {
		return "", errClosed
	}
	return b.String(), nil
}

// worker sends one command to the current worker through the master.
func (h *HAProxy) worker(ctx context.Context, cmd string) (string, error) {
	return h.master(ctx, "@1 "+cmd)
}

func (h *HAProxy) runtime(ctx context.Context) (cnruntime.Runtime, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rt != nil {
		return h.rt, nil
	}
	rt, err := cnruntime.New(ctx, cnoptions.MasterSocket(h.opt.MasterSocket, 1))
	if err != nil {
		return nil, fmt.Errorf("connecting to haproxy runtime API at %s: %w", h.opt.MasterSocket, err)
	}
	h.rt = rt
	return rt, nil
}

func (h *HAProxy) resetRuntime() {
	h.mu.Lock()
	h.rt = nil
	h.mu.Unlock()
}

// Apply runs runtime operations (from lb.Diff) through the runtime API and
// touches no file: Persist brings the files up to date afterwards. A
// drained server is first set to drain (no new connections) and then to
// maintenance; HAProxy lets the requests it is serving finish.
func (h *HAProxy) Apply(ctx context.Context, ops []lb.Op) error {
	rt, err := h.runtime(ctx)
	if err != nil {
		return err
	}
	for _, op := range ops {
		if err := applyOp(rt, op); err != nil {
			h.resetRuntime()
			return fmt.Errorf("runtime %s: %w", op, err)
		}
	}
	return nil
}

// Persist writes the files for st, the state runtime operations led to, so
// that the file always matches what runs and a restart or the next reload
// starts from it: the config (rendered, validated as installed, swapped
// atomically), the server-state file (`show servers state` kept only where
// it agrees with st, so that a restarted HAProxy brings back no older
// address, port or admin state) and the running record. It is safe to call
// concurrently with Apply, not with itself or Reload.
func (h *HAProxy) Persist(ctx context.Context, st lb.State) error {
	cfg := lb.Render(st, h.Globals())
	if err := h.Validate(ctx, cfg); err != nil {
		// The runtime already runs it; the file keeps the previous valid
		// config and the next reload renders again.
		return fmt.Errorf("config for the runtime changes does not validate (not written): %w", err)
	}
	serr := h.saveServerState(ctx, st)
	if err := h.swap(cfg); err != nil {
		return err
	}
	if err := h.saveRunning(st); err != nil {
		return err
	}
	if serr != nil {
		h.opt.Log.Warn("server state not saved; health restarts on the next HAProxy start", "err", serr)
	}
	return nil
}

// saveServerState writes the server-state file from the current worker's
// `show servers state`, keeping only the lines that agree with st. When
// the worker cannot be read, the file is emptied (its version line only):
// losing saved health is better than a start bringing back an older state.
func (h *HAProxy) saveServerState(ctx context.Context, st lb.State) error {
	state := "1\n"
	dump, derr := h.worker(ctx, "show servers state")
	if derr == nil {
		state = lb.KeepServerState(dump, st)
	}
	if err := writeAtomic(h.Globals().StateFile, []byte(state)); err != nil {
		return fmt.Errorf("saving server state: %w", err)
	}
	if derr != nil {
		return fmt.Errorf("reading server state (state file emptied): %w", derr)
	}
	return nil
}

func applyOp(rt cnruntime.Runtime, op lb.Op) error {
	switch op.Kind {
	case "set-addr":
		host, port, err := net.SplitHostPort(op.Addr)
		if err != nil {
			return err
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return err
		}
		return rt.SetServerAddr(op.Backend, op.Server, host, p)
	case "set-weight":
		return rt.SetServerWeight(op.Backend, op.Server, strconv.Itoa(op.Weight))
	case "enable":
		return rt.SetServerState(op.Backend, op.Server, "ready")
	case "drain-disable":
		if err := rt.SetServerState(op.Backend, op.Server, "drain"); err != nil {
			return err
		}
		return rt.SetServerState(op.Backend, op.Server, "maint")
	default:
		return fmt.Errorf("unknown op kind %q", op.Kind)
	}
}

// ServerStatus is one server as HAProxy's stats see it.
type ServerStatus struct {
	Backend, Server, Addr, Status string
	Sessions                      int // current sessions
	Total                         int // sessions since start of this worker
}

// Servers reads `show stat` from the current worker: every server line
// (placeholders included; callers filter).
func (h *HAProxy) Servers(ctx context.Context) ([]ServerStatus, error) {
	out, err := h.worker(ctx, "show stat")
	if err != nil {
		return nil, err
	}
	return ParseStat(out), nil
}

// ParseStat parses `show stat` CSV into server lines (ParseStats' server
// rows).
func ParseStat(out string) []ServerStatus {
	var res []ServerStatus
	for _, r := range ParseStats(out) {
		if r.Kind == "server" {
			res = append(res, ServerStatus{Backend: r.Proxy, Server: r.Server, Addr: r.Addr, Status: r.Status,
				Sessions: int(r.Sessions), Total: int(r.Total)})
		}
	}
	return res
}
