// Package webui is the agent's read-only picture of the cluster: the rows
// every agent publishes to Consul KV (its mesh row with its refused
// containers and recent events under MeshPrefix, its load balancer summary
// under LBPrefix), the pure decisions over them (when to write a row, when
// a row is stale, who reaches whom, which events happened), and the HTTP
// handlers that serve them as a versioned JSON API (/api/v1/) and as a page
// (/ui/) whose assets are embedded in the binary.
//
// Out of scope: reading or writing Consul (the agent's wiring does it
// through its watch hub and Consul adapter and hands the rows in through
// Source), and anything that changes the cluster: every handler is
// read-only. Nothing secret is part of any type here (no private key,
// token or certificate key), so nothing secret can be served.
//
// It imports nothing of drover's (the internal/ rule): its schema is its
// own, and cmd/drover converts the agent's status into it.
package webui
