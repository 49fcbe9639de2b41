package consul

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// RequestStats counts what this client asked of Consul: requests by kind
// (blocking: a query with an index or hash to wait on; read: any other GET;
// write: PUT, POST, DELETE), those in flight now (each holds one
// connection), the blocking ones among them, and the answers Consul
// throttled (HTTP 429: http_max_conns_per_client reached). MaxInFlight is
// the most requests ever in flight at once: over HTTPS the Go client
// multiplexes them on one HTTP/2 connection (Consul's HTTPS API speaks h2),
// over plain HTTP each one is a connection, so this is the bound that
// holds for both.
type RequestStats struct {
	Total       map[string]int64 `json:"total"`
	InFlight    int64            `json:"in_flight"`
	MaxInFlight int64            `json:"max_in_flight"`
	Blocking    int64            `json:"blocking"`
	Throttled   int64            `json:"throttled"`
}

// requests is the counting side of countingTransport.
type requests struct {
	mu        sync.Mutex
	total     map[string]int64
	inFlight  atomic.Int64
	maxFlight atomic.Int64
	blocking  atomic.Int64
	throttled atomic.Int64
}

func (r *requests) stats() RequestStats {
	r.mu.Lock()
	t := make(map[string]int64, len(r.total))
	for k, v := range r.total {
		t[k] = v
	}
	r.mu.Unlock()
	return RequestStats{Total: t, InFlight: r.inFlight.Load(), MaxInFlight: r.maxFlight.Load(), Blocking: r.blocking.Load(), Throttled: r.throttled.Load()}
}

// countingTransport counts every request the SDK sends.
type countingTransport struct {
	base http.RoundTripper
	r    *requests
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	kind := requestKind(req)
	t.r.mu.Lock()
	if t.r.total == nil {
		t.r.total = map[string]int64{}
	}
	t.r.total[kind]++
	t.r.mu.Unlock()
	n := t.r.inFlight.Add(1)
	defer t.r.inFlight.Add(-1)
	for m := t.r.maxFlight.Load(); n > m && !t.r.maxFlight.CompareAndSwap(m, n); m = t.r.maxFlight.Load() {
	}
	if kind == "blocking" {
		// Consul answers a blocking query's headers only when it returns,
		// so RoundTrip lasts as long as the wait.
		t.r.blocking.Add(1)
		defer t.r.blocking.Add(-1)
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		t.r.throttled.Add(1)
	}
	return resp, err
}

// requestKind is "blocking", "read" or "write".
func requestKind(req *http.Request) string {
	if req.Method != http.MethodGet {
		return "write"
	}
	q := req.URL.Query()
	if i := q.Get("index"); (i != "" && i != "0") || q.Get("hash") != "" {
		return "blocking"
	}
	return "read"
}
