package haproxy

import (
	"context"
	"strconv"
	"strings"
)

// StatRow is one line of HAProxy's `show stat`: a frontend, a backend or a
// server, with its request counters.
type StatRow struct {
	Proxy     string           // pxname
	Server    string           // svname: FRONTEND, BACKEND or the server's name
	Kind      string           // "frontend", "backend" or "server"
	Addr      string           // servers: ip:port
	Status    string           // UP, DOWN, MAINT, OPEN, …
	Sessions  int64            // scur: current sessions
	Total     int64            // stot: sessions since the worker started
	Rate      int64            // rate: sessions per second over the last second
	Requests  int64            // req_tot (http), else stot (sessions)
	Responses map[string]int64 // by class: 1xx … 5xx, other (http only)
	ErrReq    int64            // ereq: bad requests (frontends)
	ErrConn   int64            // econ: failed connections to servers
	ErrResp   int64            // eresp: bad or aborted responses
	RTimeMs   int64            // rtime: average response time of the last 1024 requests (ms)
}

// Stats returns every row of `show stat`.
func (h *HAProxy) Stats(ctx context.Context) ([]StatRow, error) {
	out, err := h.worker(ctx, "show stat")
	if err != nil {
		return nil, err
	}
	return ParseStats(out), nil
}

// ParseStats parses `show stat` CSV. It is pure.
func ParseStats(out string) []StatRow {
	var hdr map[string]int
	var rows []StatRow
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "# ") {
			hdr = map[string]int{}
			for i, h := range strings.Split(strings.TrimPrefix(line, "# "), ",") {
				hdr[h] = i
			}
			continue
		}
		f := strings.Split(line, ",")
		if hdr == nil || len(f) < len(hdr)-1 {
			continue
		}
		get := func(name string) string {
			if i, ok := hdr[name]; ok && i < len(f) {
				return f[i]
			}
			return ""
		}
		num := func(name string) int64 { n, _ := strconv.ParseInt(get(name), 10, 64); return n }
		r := StatRow{Proxy: get("pxname"), Server: get("svname"), Addr: get("addr"), Status: get("status"),
			Sessions: num("scur"), Total: num("stot"), Rate: num("rate"), ErrReq: num("ereq"), ErrConn: num("econ"),
			ErrResp: num("eresp"), RTimeMs: num("rtime")}
		switch r.Server {
		case "FRONTEND":
			r.Kind = "frontend"
		case "BACKEND":
			r.Kind = "backend"
		default:
			r.Kind = "server"
		}
		r.Requests = num("stot")
		if _, ok := hdr["req_tot"]; ok && get("req_tot") != "" {
			r.Requests = num("req_tot")
		}
		for _, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"} {
			if v := get("hrsp_" + c); v != "" {
				if r.Responses == nil {
					r.Responses = map[string]int64{}
				}
				r.Responses[c] = num("hrsp_" + c)
			}
		}
		rows = append(rows, r)
	}
	return rows
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
