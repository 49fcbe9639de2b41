// Package overlay owns the encrypted WireGuard mesh between hosts: the
// host's key pair, its container subnet leased from the cluster CIDR in
// Consul, the drover0 interface, its peers, addresses and routes, and the
// decision of which Docker bridge network carries the host's subnet.
//
// Desired peers and routes are computed by pure functions from the
// drover-node instances that discovery watches; adapters (overlay/wg,
// overlay/netlink) apply the smallest change to the kernel or to the
// embedded wireguard-go. It does not register containers (discovery), probe
// peers (healthcheck) or touch HAProxy (lb).
package overlay
