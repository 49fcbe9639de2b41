// Package discovery owns the bridge between Docker and Consul: parsing
// container labels, turning running containers into Consul service
// registrations owned by this node, reaping only what this node registered,
// and every Consul blocking-query watch the other packages read (nodes,
// service instances with health, KV prefixes), published as latest
// snapshots.
//
// It does not decide peers, HAProxy state or file contents; those packages
// consume its snapshots. Adapters for the Consul and Docker SDKs live in
// discovery/consul and discovery/docker.
package discovery
