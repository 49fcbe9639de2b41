// Package execcmd runs operator-given command lines (check_cmd, reload_cmd)
// with `sh -c` and a timeout, capturing their output. It owns nothing else.
package execcmd

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// Shell runs command lines through /bin/sh.
type Shell struct {
	Timeout time.Duration // default 60 s
}

// waitDelay bounds how long Run waits for the output pipes after the
// process group was killed (a grandchild that escaped the group and still
// holds them).
const waitDelay = 500 * time.Millisecond

// Run runs command and returns its combined output. The shell runs in a
// process group of its own; on timeout or cancellation the whole group is
// killed (not only sh, whose children would otherwise keep running and hold
// the output pipe open), and the wait for the pipes is bounded.
func (s Shell) Run(ctx context.Context, command string) ([]byte, error) {
	t := s.Timeout
	if t == 0 {
		t = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	out, err := cmd.CombinedOutput()
	if ctx.Err() == context.DeadlineExceeded {
		return out, fmt.Errorf("timed out after %s", t)
	}
	return out, err
}
