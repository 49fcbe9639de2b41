package haproxy

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-net/drover/test/procs"
)

// An agent that starts while its HAProxy master lives but does not answer
// (here: stopped; in the field: re-executing for a reload the previous
// agent asked for just before it was killed) waits for it and never starts
// a second master beside it (issue 12, T2/T18: two masters shared port 80
// and one served a config nobody updated, failing half the requests).
func TestStartNeverStartsASecondMaster(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not installed")
	}
	dir := t.TempDir()
	opt := Options{Mode: ModeManaged, Bin: bin, Dir: dir}
	h, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Start(ctx, minimalConfig(h)); err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	pid := h.masterPID()
	if pid == 0 {
		t.Fatal("no master pid after start")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(pid, syscall.SIGCONT) }()

	opt.AttachWait = 500 * time.Millisecond
	h2, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	err = h2.Start(ctx, minimalConfig(h2))
	if err == nil || !strings.Contains(err.Error(), "not starting a second haproxy") {
		t.Fatalf("Start beside a stopped master: %v, want a refusal", err)
	}
	if got := procs.HAProxyMasters(h.ConfigPath()); len(got) != 1 || got[0] != pid {
		t.Fatalf("masters running %v, want only %d", got, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := h2.Start(ctx, minimalConfig(h2)); err != nil {
		t.Fatalf("Start once the master answers: %v", err)
	}
	if got := procs.HAProxyMasters(h.ConfigPath()); len(got) != 1 || got[0] != pid {
		t.Fatalf("masters running %v after attaching, want only %d", got, pid)
	}
}

// minimalConfig is a config with no frontend that HAProxy runs in
// master-worker mode.
func minimalConfig(h *HAProxy) Config {
	g := h.Globals()
	return Config{Bytes: []byte(fmt.Sprintf(`global
    master-worker
    stats socket %s mode 600 level admin expose-fd listeners

defaults
    mode http
    timeout connect 1s
    timeout client 1s
    timeout server 1s
`, g.StatsSocket))}
}
