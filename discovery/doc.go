// Package discovery owns the bridge between Docker and Consul: parsing
// container labels, turning running containers into Consul service
// registrations owned by this node, reaping only what this node registered,
// and the domain types the watches publish (Instance, KVPair). The Consul
// read loops themselves live in discovery/watch.
//
// It does not decide peers, HAProxy state or file contents; those packages
// consume its snapshots. Adapters for the Consul and Docker SDKs live in
// discovery/consul and discovery/docker.
package discovery
