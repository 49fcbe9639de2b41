package haproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// AccessEntry is one request (http) or connection (tcp) as HAProxy logged
// it in lb's AccessLogHTTP/AccessLogTCP formats. Timers are milliseconds;
// -1 means the step was not reached.
type AccessEntry struct {
	Client, Frontend, Backend, Server string
	Status                            int // http status; 0 for tcp
	Bytes                             int64
	QueueMs, ConnectMs, ResponseMs    int
	TotalMs                           int
	Termination                       string // HAProxy's termination state, e.g. "--" or "CD"
	Method, Path                      string // http only
}

// ParseAccessLine reads one line. It is pure; ok is false for a line of
// another format.
func ParseAccessLine(line string) (AccessEntry, bool) {
	f := strings.Fields(strings.TrimSpace(line))
	if len(f) != 13 {
		return AccessEntry{}, false
	}
	atoi := func(s string) int {
		if s == "-" {
			return -1
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return -1
		}
		return n
	}
	e := AccessEntry{Client: f[0], Frontend: strings.TrimSuffix(f[1], "~"), Backend: f[2], Server: f[3],
		QueueMs: atoi(f[6]), ConnectMs: atoi(f[7]), ResponseMs: atoi(f[8]), TotalMs: atoi(f[9]), Termination: f[10]}
	if f[4] != "-" {
		e.Status = atoi(f[4])
	}
	e.Bytes, _ = strconv.ParseInt(f[5], 10, 64)
	if f[11] != "-" {
		e.Method, e.Path = f[11], f[12]
	}
	return e, true
}

// ListenAccessLog receives HAProxy's access log datagrams on addr (UDP,
// loopback) and calls fn for each parsed line until ctx ends. Lines of
// another format are counted in the returned error only if nothing
// parsed.
func ListenAccessLog(ctx context.Context, addr string, fn func(AccessEntry)) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("access log: listening on %s: %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		pc.Close()
	}()
	buf := make([]byte, 8192)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("access log: reading %s: %w", addr, err)
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if e, ok := ParseAccessLine(line); ok {
				fn(e)
			}
		}
	}
}
