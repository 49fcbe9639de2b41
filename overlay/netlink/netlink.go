// Package netlink is the kernel routing adapter of the overlay: routes to
// peer subnets on the WireGuard interface, marked with drover's routing
// protocol number so that only drover's own routes are ever listed or
// removed, plus the few address and MTU lookups the overlay needs. It knows
// nothing of peers.
package netlink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	nl "github.com/vishvananda/netlink"
)

// Protocol marks drover's routes (`ip route` shows "proto 98").
const Protocol = 98

// Route is a route on the interface: destination and preferred source.
type Route struct {
	Dst netip.Prefix
	Src netip.Addr
}

// Routes manages drover's routes on one interface in the caller's network
// namespace.
type Routes struct{ Interface string }

// List returns drover's routes on the interface.
func (r Routes) List() ([]Route, error) {
	link, err := nl.LinkByName(r.Interface)
	if err != nil {
		return nil, fmt.Errorf("listing routes: finding %s: %w", r.Interface, err)
	}
	rs, err := nl.RouteListFiltered(nl.FAMILY_V4, &nl.Route{LinkIndex: link.Attrs().Index, Protocol: Protocol},
		nl.RT_FILTER_OIF|nl.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("listing routes on %s: %w", r.Interface, err)
	}
	out := make([]Route, 0, len(rs))
	for _, x := range rs {
		if x.Dst == nil {
			continue
		}
		ones, _ := x.Dst.Mask.Size()
		a, _ := netip.AddrFromSlice(x.Dst.IP)
		var src netip.Addr
		if x.Src != nil {
			src, _ = netip.AddrFromSlice(x.Src)
		}
		out = append(out, Route{Dst: netip.PrefixFrom(a.Unmap(), ones), Src: src.Unmap()})
	}
	return out, nil
}

// Replace adds the route or replaces the one with the same destination.
func (r Routes) Replace(rt Route) error {
	link, err := nl.LinkByName(r.Interface)
	if err != nil {
		return fmt.Errorf("adding route %s: finding %s: %w", rt.Dst, r.Interface, err)
	}
	x := &nl.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(rt.Dst), Protocol: Protocol, Scope: nl.SCOPE_LINK}
	if rt.Src.IsValid() {
		x.Src = rt.Src.AsSlice()
	}
	if err := nl.RouteReplace(x); err != nil {
		return fmt.Errorf("adding route %s dev %s: %w", rt.Dst, r.Interface, err)
	}
	return nil
}

// Delete removes the route; a route that is already gone is not an error.
func (r Routes) Delete(rt Route) error {
	link, err := nl.LinkByName(r.Interface)
	if err != nil {
		return fmt.Errorf("deleting route %s: finding %s: %w", rt.Dst, r.Interface, err)
	}
	// The scope must match the one we added with, or the kernel finds no
	// route to delete.
	err = nl.RouteDel(&nl.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(rt.Dst), Protocol: Protocol, Scope: nl.SCOPE_LINK})
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("deleting route %s dev %s: %w", rt.Dst, r.Interface, err)
	}
	return nil
}

// HasAddr reports whether a is assigned to some interface here.
func HasAddr(a netip.Addr) bool {
	addrs, err := nl.AddrList(nil, nl.FAMILY_V4)
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if b, ok := netip.AddrFromSlice(x.IP); ok && b.Unmap() == a {
			return true
		}
	}
	return false
}

// LinkOf returns the name and MTU of the interface that holds address a.
func LinkOf(a netip.Addr) (string, int, error) {
	addrs, err := nl.AddrList(nil, nl.FAMILY_ALL)
	if err != nil {
		return "", 0, fmt.Errorf("listing addresses: %w", err)
	}
	for _, x := range addrs {
		if b, ok := netip.AddrFromSlice(x.IP); ok && b.Unmap() == a {
			link, err := nl.LinkByIndex(x.LinkIndex)
			if err != nil {
				return "", 0, fmt.Errorf("finding the link of %s: %w", a, err)
			}
			return link.Attrs().Name, link.Attrs().MTU, nil
		}
	}
	return "", 0, fmt.Errorf("no interface holds %s", a)
}

// Underlay reads one interface by name: its MTU and global unicast
// addresses. It satisfies overlay.Underlay (as a shim in cmd).
type Underlay struct{ Name string }

// Probe reads the interface's MTU and addresses.
func (u Underlay) Probe() (name string, mtu int, addrs []netip.Addr, err error) {
	link, err := nl.LinkByName(u.Name)
	if err != nil {
		return u.Name, 0, nil, fmt.Errorf("reading underlay interface %s: %w", u.Name, err)
	}
	list, err := nl.AddrList(link, nl.FAMILY_ALL)
	if err != nil {
		return u.Name, 0, nil, fmt.Errorf("listing addresses of %s: %w", u.Name, err)
	}
	for _, x := range list {
		if b, ok := netip.AddrFromSlice(x.IP); ok && b.Unmap().IsGlobalUnicast() {
			addrs = append(addrs, b.Unmap())
		}
	}
	return u.Name, link.Attrs().MTU, addrs, nil
}

// EnableForwarding turns on IPv4 forwarding, which container traffic between
// the bridge and the WireGuard interface needs.
func EnableForwarding() error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling IPv4 forwarding: %w", err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}
