package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// run runs a command to completion and returns its combined output; the
// error names the command and carries its output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// nsArgs returns the nsenter arguments that enter a namespace set: the
// network namespace always, the mount namespace when mnt is not empty.
func nsArgs(netns, mnt string) []string {
	a := []string{"--net=/run/netns/" + netns}
	if mnt != "" {
		a = append(a, "--mount="+mnt)
	}
	return append(a, "--")
}

// daemon is one long-running process the sandbox starts and owns.
type daemon struct {
	name    string   // consul, dockerd, agent, haproxy
	netns   string   // network namespace to run in
	mnt     string   // mount namespace file, or "" to stay in the root one
	argv    []string // program and arguments
	env     []string // extra environment
	logFile string
	pidFile string
}

// start launches d in its own session, detached from the caller, logging to
// d.logFile, and records its PID. The PID is the daemon's own: nsenter execs
// it without forking.
func start(d daemon) error {
	if err := os.MkdirAll(filepath.Dir(d.logFile), 0o755); err != nil {
		return fmt.Errorf("starting %s: %w", d.name, err)
	}
	if err := os.MkdirAll(filepath.Dir(d.pidFile), 0o755); err != nil {
		return fmt.Errorf("starting %s: %w", d.name, err)
	}
	logf, err := os.OpenFile(d.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("starting %s: %w", d.name, err)
	}
	defer logf.Close()
	args := append(nsArgs(d.netns, d.mnt), d.argv...)
	cmd := exec.Command("nsenter", args...)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s in %s: %w", d.name, d.netns, err)
	}
	// Reap it if it dies while we live (tests); a CLI caller exits and init
	// adopts it.
	go func() { _ = cmd.Wait() }()
	pid := strconv.Itoa(cmd.Process.Pid)
	if err := os.WriteFile(d.pidFile, []byte(pid+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("recording pid of %s: %w", d.name, err)
	}
	return nil
}

// pidOf reads a pid file and returns the PID if that process is alive, not a
// zombie, and still runs a program whose path contains want (guarding
// against PID reuse). It returns 0 otherwise.
func pidOf(pidFile, want string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	if !alive(pid) {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(want)) {
		return 0
	}
	return pid
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3, after the parenthesised command name, is the state.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	return stat[i+2] != 'Z' && stat[i+2] != 'X'
}

// stop sends SIGTERM to pid, waits up to grace for it to exit, then sends
// SIGKILL and waits briefly again.
func stop(pid int, grace time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("stopping pid %d: %w", pid, err)
	}
	if waitGone(pid, grace) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("pid %d did not exit after SIGKILL", pid)
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return !alive(pid)
}

// nsInode returns the inode of a namespace file ("" when it cannot be read).
func nsInode(path string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return ""
	}
	return strconv.FormatUint(st.Ino, 10)
}

// pidsIn lists every process whose network namespace is one of netInodes or
// whose mount namespace is one of mntInodes.
func pidsIn(netInodes, mntInodes map[string]bool) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && netInodes[linkInode(l)] {
			pids = append(pids, pid)
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && mntInodes[linkInode(l)] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// linkInode turns "net:[4026532]" into "4026532".
func linkInode(l string) string {
	i, j := strings.IndexByte(l, '['), strings.IndexByte(l, ']')
	if i < 0 || j < i {
		return ""
	}
	return l[i+1 : j]
}

// killReferencing kills (SIGKILL) every process whose command line contains
// path, an absolute path inside the sandbox's own directories.
func killReferencing(path string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(path)) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, 5*time.Second)
		}
	}
}
