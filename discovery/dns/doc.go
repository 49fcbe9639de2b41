// Package dns answers DNS for the services in Consul, for the containers of
// this host: <service>.<domain> and <tag>.<service>.<domain> as A, AAAA and
// SRV records of the passing instances (as Consul's DNS interface answers
// with only_passing = true), and the SRV targets' <hex ip>.addr.<domain>
// names. Everything outside the domain is handed back to the caller to
// forward to the host's resolvers.
//
// Answer is pure: it decides a reply from a question and an Index built
// from a snapshot of the watch hub's set of all services. The adapter
// (server.go) owns the UDP and TCP listeners and the forwarding. Out of
// scope: node lookups (<node>.node.consul), prepared queries, DNSSEC, and
// the link-local address the listeners bind to (made by cmd/drover).
package dns
