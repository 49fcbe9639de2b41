package haproxy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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
func (h *HAProxy) Start(ctx context.Context, initial Config) error {
	if err := os.MkdirAll(h.opt.Dir, 0o700); err != nil {
		return fmt.Errorf("creating lb directory: %w", err)
	}
	if _, err := os.Stat(h.stateFile()); err != nil {
		// A state file with only its version line: nothing to restore.
		if err := writeAtomic(h.stateFile(), []byte("1\n")); err != nil {
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
		if err := h.Validate(ctx, initial.Bytes); err != nil {
			return fmt.Errorf("initial haproxy config: %w", err)
		}
		if err := h.swap(initial.Bytes); err != nil {
			return err
		}
		if err := h.saveRecord(initial.Record); err != nil {
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
	logf, err := os.OpenFile(h.logPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
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
