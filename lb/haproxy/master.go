package haproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

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
