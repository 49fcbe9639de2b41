package webui

import "time"

// Schema is the version of every document this package writes to Consul
// and serves under /api/v1/. A reader skips KV rows of another schema.
const Schema = 1

// KV prefixes of the published rows; the key is the prefix and the node
// name. Each agent writes only its own keys (its ACL policy grants exactly
// those).
const (
	MeshPrefix = "drover/v1/mesh/"
	LBPrefix   = "drover/v1/lb/"
)

// Row is what one agent publishes at MeshPrefix+node: itself, its row of
// the mesh matrix, the containers it refused and its recent events.
type Row struct {
	Schema   int    `json:"schema"`
	Node     string `json:"node"`
	Version  string `json:"version"`
	Subnet   string `json:"subnet"`
	Endpoint string `json:"endpoint"`
	// UptimeS is the agent's uptime in seconds when the row was written;
	// a reader adds how long ago it saw the row change (on its own clock).
	UptimeS int64 `json:"uptime_s"`
	// Seq grows with every write, heartbeats included.
	Seq     uint64    `json:"seq"`
	Peers   []Peer    `json:"peers"`
	Refused []Refusal `json:"refused"`
	// OmittedRefused is how many refusals were left out (over MaxRefused).
	OmittedRefused int     `json:"omitted_refused,omitempty"`
	Events         []Event `json:"events"`
}

// Peer is one cell of a row: how this host sees one peer.
type Peer struct {
	Node string `json:"node"`
	// Probed is whether the end-to-end probe has judged the peer yet;
	// Reachable is its verdict (the peer's responder answered through the
	// tunnel).
	Probed    bool    `json:"probed"`
	Reachable bool    `json:"reachable"`
	RTTMs     float64 `json:"rtt_ms"`
	// HandshakeAgeS is the age of the last WireGuard handshake when the
	// row was written (-1: never).
	HandshakeAgeS float64 `json:"handshake_age_s"`
	RxBytes       int64   `json:"rx_bytes"`
	TxBytes       int64   `json:"tx_bytes"`
	// Health is the peer's drover-node health in Consul as this host
	// reads it (passing, warning, critical or absent).
	Health    string `json:"consul_health"`
	LastError string `json:"last_error,omitempty"`
}

// Refusal is one container (or one of its ports) the agent did not
// register, with the reason.
type Refusal struct {
	Container   string `json:"container"`
	ContainerID string `json:"container_id"`
	Port        int    `json:"port,omitempty"`
	Reason      string `json:"reason"`
}

// Event kinds.
const (
	EventPeerAdded   = "peer-added"
	EventPeerRemoved = "peer-removed"
	EventPeerDown    = "peer-unreachable"
	EventPeerUp      = "peer-reachable"
	EventLease       = "lease"
	EventReload      = "reload"
	EventRuntime     = "runtime-ops"
	EventRefused     = "refused"
	EventRepair      = "repair"
	EventLBError     = "lb-error"
)

// Event is one thing that happened on a host. At is the host's wall clock:
// it orders events for reading, nothing decides on it.
type Event struct {
	At   time.Time `json:"at"`
	Node string    `json:"node"`
	Kind string    `json:"kind"`
	Text string    `json:"text"`
}

// LBSummary is what an lb host publishes at LBPrefix+node: HAProxy as it
// runs there. Never certificates or keys: only their names.
type LBSummary struct {
	Schema        int          `json:"schema"`
	Node          string       `json:"node"`
	Seq           uint64       `json:"seq"`
	Stale         bool         `json:"stale"`
	StaleReason   string       `json:"stale_reason,omitempty"`
	LastError     string       `json:"last_error,omitempty"`
	Reloads       int64        `json:"reloads"`
	FailedReloads int64        `json:"failed_reloads"`
	RuntimeOps    int64        `json:"runtime_ops"`
	Problems      []string     `json:"problems,omitempty"`
	Frontends     []LBFrontend `json:"frontends"`
	Backends      []LBBackend  `json:"backends"`
	// OmittedBackends is how many backends (the last by name) were left
	// out to keep the published document under MaxPublished.
	OmittedBackends int `json:"omitted_backends,omitempty"`
	// History is the last reloads and runtime operations with their
	// causes, newest first.
	History []Event `json:"history"`
}

// LBFrontend is one listening port and its routes.
type LBFrontend struct {
	Name           string    `json:"name"`
	Mode           string    `json:"mode"`
	Port           int       `json:"port"`
	TLS            bool      `json:"tls,omitempty"`
	Routes         []LBRoute `json:"routes,omitempty"`
	DefaultBackend string    `json:"default_backend,omitempty"`
	Stats          LBStats   `json:"stats"`
}

// LBRoute sends a host and path prefix to a backend (or redirects).
type LBRoute struct {
	Host     string `json:"host"`
	Path     string `json:"path"`
	Backend  string `json:"backend"`
	Redirect int    `json:"redirect,omitempty"`
}

// LBBackend is one backend and its servers in use.
type LBBackend struct {
	Name    string     `json:"name"`
	Mode    string     `json:"mode"`
	Balance string     `json:"balance"`
	Slots   int        `json:"slots"`
	Stats   LBStats    `json:"stats"`
	Servers []LBServer `json:"servers"`
}

// LBServer is one server slot in use.
type LBServer struct {
	Slot   string  `json:"slot"`
	Addr   string  `json:"addr"`
	Weight int     `json:"weight"`
	Stats  LBStats `json:"stats"`
}

// LBStats are HAProxy's own figures for a frontend, backend or server.
type LBStats struct {
	Status   string `json:"status"` // UP, DOWN, MAINT, DRAIN, OPEN, …
	Sessions int64  `json:"sessions"`
	Total    int64  `json:"total"`
	Rate     int64  `json:"rate"` // sessions per second over the last second
	Requests int64  `json:"requests"`
	Errors   int64  `json:"errors"` // request + connection + response errors
}
