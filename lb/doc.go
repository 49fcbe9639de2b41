// Package lb owns HAProxy: the desired frontends, backends and servers
// computed from healthy Consul instances and their lb settings, the plan
// that splits a change into runtime-API operations and structural config
// changes, validated configs, seamless reloads and the supervised HAProxy
// process.
//
// It does not watch Consul itself (discovery does), define health checks
// (healthcheck does; lb only writes them into HAProxy's server lines) or
// render arbitrary files (confgen).
//
// The pure core is Desired (instances → State, with Problems for what was
// refused), Diff (running State → desired State as a Plan: either a reload
// with reasons or runtime operations on server slots, never both), After
// (the running State once a Plan is applied) and Render (State →
// haproxy.cfg bytes). Each backend has a power-of-two pool of server
// slots declared in the file, so that membership changes are runtime
// set-addr/enable/drain operations that keep connection reuse; the pool
// grows with one reload when it runs out. The controller's decisions
// (fail-static, shrink confirmation, reload coalescing and backoff) are
// the pure step function of step.go; Controller.Run only carries them out.
package lb
