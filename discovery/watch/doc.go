// Package watch is the one place that reads Consul with blocking queries,
// and the number of those queries is fixed by what is asked, never by the
// number of services or instances watched.
//
// A Hub owns the queries; the agent makes one (cmd/drover) and hands it to
// every consumer, which all use it the same way: take a snapshot holder
// (Latest, or a Set) and a kick channel; on a kick, read the latest
// snapshot (a slow consumer sees fewer, newer snapshots, never a queue).
//
//   - Services(filter) is a Set: the instances, with aggregated health, of
//     every service one of whose instances matches a Consul filter. lb reads
//     the set of contract.LBFilter (instances with lb settings) through
//     cmd/drover's lbSource.
//   - Service(name) is one service's instances; every name asked for this
//     way is a member of one shared set (filter ""). overlay reads
//     drover-node this way, confgen every service a template names.
//   - KV(prefix) is one blocking query per prefix (overlay's lease folder,
//     confgen's keys).
//
// Every set is kept current by two kinds of blocking query: one
// /v1/catalog/services per distinct filter (its index moves on any service
// change) and one /v1/health/state/any for the whole hub (its index moves
// on any check change). When they move, PlanSet (pure) decides which
// services' /v1/health/service/<name> to fetch, without blocking and
// FetchConcurrency at a time across the hub; a service that leaves the
// catalog is dropped and nothing keeps reading it. So an agent holds
// 2 + filters + prefixes blocking queries plus at most FetchConcurrency
// fetches, whatever the cluster's size.
//
// Every loop follows consul-template's rules (Watch): an index that went
// backwards resets to 0, never index 0 twice, at least 100 ms plus jitter
// between queries, results compared by content, capped jittered backoff
// reset on success, contexts throughout; every goroutine ends with the
// hub's context, and Run (started with the agent's errgroup) returns only
// once they all have.
//
// Out of scope: writes to Consul (discovery and overlay do those through
// the adapter), the local agent's own endpoints (overlay's record watch),
// and deciding anything from the data.
package watch
