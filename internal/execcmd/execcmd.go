// Package execcmd runs operator-given command lines (check_cmd, reload_cmd)
// with `sh -c` and a timeout, capturing their output. It owns nothing else.
package execcmd

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// Shell runs command lines through /bin/sh.
type Shell struct {
	Timeout time.Duration // default 60 s
}

// Run runs command and returns its combined output.
func (s Shell) Run(ctx context.Context, command string) ([]byte, error) {
	t := s.Timeout
	if t == 0 {
		t = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", command).CombinedOutput()
	if ctx.Err() == context.DeadlineExceeded {
		return out, fmt.Errorf("timed out after %s", t)
	}
	return out, err
}
