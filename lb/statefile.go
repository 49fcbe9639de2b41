package lb

import (
	"net"
	"strconv"
	"strings"
)

// KeepServerState filters a `show servers state` dump before a reload so
// that HAProxy's server-state-file carries over only what is still true:
// the health of servers that keep their backend, name, address and port
// and stay enabled in next. Lines of servers that change address, are
// disabled or removed in next are dropped, so that a stale address or
// admin state saved from the running process can never override the new
// config. Header and version lines are kept. It is pure.
func KeepServerState(dump string, next State) string {
	type key struct{ be, srv string }
	want := map[key]string{}
	for _, b := range next.Backends {
		for _, s := range b.Servers {
			if s.Enabled {
				want[key{b.Name, s.Name}] = s.Addr
			}
		}
	}
	var out strings.Builder
	for _, line := range strings.Split(dump, "\n") {
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		f := strings.Fields(t)
		if strings.HasPrefix(t, "#") || len(f) == 1 {
			out.WriteString(t + "\n")
			continue
		}
		if len(f) < 19 {
			continue
		}
		addr, ok := want[key{f[1], f[3]}]
		if !ok || addr != net.JoinHostPort(f[4], f[18]) {
			continue
		}
		if _, err := strconv.Atoi(f[18]); err != nil {
			continue
		}
		out.WriteString(t + "\n")
	}
	return out.String()
}
