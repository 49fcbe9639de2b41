// Package lb owns HAProxy: the desired frontends, backends and servers
// computed from healthy Consul instances and their lb settings, the plan
// that splits a change into runtime-API operations and structural config
// changes, validated configs, seamless reloads and the supervised HAProxy
// process.
//
// It does not watch Consul itself (discovery does), define health checks
// (healthcheck does; lb only writes them into HAProxy's server lines) or
// render arbitrary files (confgen).
package lb
