// Package haproxy is lb's adapter to a real HAProxy (2.6+) in master-worker
// mode. It speaks HAProxy only and imports no drover core package: it
// takes config bytes and its own operation types, and knows nothing of
// desired state, plans or rendering (lb computes what to do, cmd/drover
// converts, this package does it).
//
// By concern:
//   - haproxy.go: options, paths, what the rendered config must name
//     (Globals).
//   - process.go: starting and supervising `haproxy -W -S` (managed
//     mode) or attaching to one run by someone else (external mode).
//   - install.go: files: `haproxy -c` on the exact staged bytes, atomic
//     swap keeping the last-known-good config, the server-state file and
//     the caller's record of what runs.
//   - reload.go: the reload protocol: `reload` on the master socket, then
//     `show proc` must show a new worker and no new failed reload, else
//     the last-known-good config is put back and reloaded.
//   - master.go: the master CLI (one command per connection) and its
//     `show proc` parser.
//   - runtime.go, certops.go: client-native's runtime API over the master
//     socket: server address, state and weight; ssl certificates and the
//     crt-list.
//   - certs.go: the certificate directory and its crt-list.
//   - stats.go, accesslog.go: `show stat` and the access log, parsed.
package haproxy
