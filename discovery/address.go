package discovery

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// AddressMode is how a registration's address is chosen.
type AddressMode string

// The address modes.
const (
	// AddressAuto: overlay for containers on drover's network, else host
	// for a published port.
	AddressAuto AddressMode = "auto"
	// AddressOverlay: the container's address on drover's network and the
	// container port (reachable from every host through the mesh).
	AddressOverlay AddressMode = "overlay"
	// AddressHost: the host's address and the published port
	// (registrator's default).
	AddressHost AddressMode = "host"
	// AddressContainer: the container's own address on another network and
	// the container port (registrator's -internal).
	AddressContainer AddressMode = "container"
)

// ParseAddressMode reads a mode as the flag and label spell it.
func ParseAddressMode(s string) (AddressMode, error) {
	switch m := AddressMode(s); m {
	case AddressAuto, AddressOverlay, AddressHost, AddressContainer:
		return m, nil
	}
	return "", fmt.Errorf("address mode %q: want auto, overlay, host or container", s)
}

// Placement is where this agent registers containers: its node, drover's
// network, the agent's address mode and the host's address.
type Placement struct {
	Node    string
	Network string      // the overlay network ("drover")
	Mode    AddressMode // the agent's default; "" is auto
	// All registers every running container, labelled or not, as
	// registrator does by default (--register all); an unlabelled one with
	// nothing to register is skipped without a problem.
	All bool
	// HostAddr is the host's address for published ports (--advertise-addr,
	// else the address other hosts reach this one at); invalid: unknown.
	HostAddr netip.Addr
}

// address is where one port of a container is registered, and why there.
type address struct {
	addr netip.AddrPort
	mode AddressMode
	why  string
}

// unpublished is the reason for a port registrator would skip silently: in
// host mode, a port that is not published.
const unpublished = "not published on the host"

// address resolves the address of one container port. A fault's perPort
// says whether only this port is skipped.
func (r *labelReader) address(p Placement, port int) (address, *fault) {
	c := r.c
	mode := p.Mode
	if mode == "" {
		mode = AddressAuto
	}
	from := "--address-mode"
	if s, ok := r.lookup(port, "address"); ok {
		m, err := ParseAddressMode(s.value)
		if err != nil {
			return address{}, badf(s, "want auto, overlay, host or container")
		}
		mode, from = m, s.key
	}
	overlay, onOverlay := c.Networks[p.Network]
	onOverlay = onOverlay && overlay.IsValid()
	if mode == AddressAuto {
		switch _, published := c.Published[port]; {
		case onOverlay:
			return address{netip.AddrPortFrom(overlay, uint16(port)), AddressOverlay, "on the " + p.Network + " network"}, nil
		case published:
			mode, from = AddressHost, "auto: not on the "+p.Network+" network"
		case len(c.Published) == 0:
			return address{}, &fault{quiet: true, reason: fmt.Sprintf("not attached to the %s network, and no port is published (see drover.address)", p.Network)}
		default:
			return address{}, &fault{perPort: true, quiet: true, reason: fmt.Sprintf("not attached to the %s network, and port %d is %s: attach it, publish the port, or set drover.address=container", p.Network, port, unpublished)}
		}
	}
	switch mode {
	case AddressOverlay:
		if !onOverlay {
			return address{}, &fault{reason: fmt.Sprintf("not attached to the %s network (%s is overlay)", p.Network, from)}
		}
		return address{netip.AddrPortFrom(overlay, uint16(port)), AddressOverlay, from}, nil
	case AddressHost:
		b, ok := c.Published[port]
		if !ok {
			return address{}, &fault{perPort: true, quiet: true, reason: fmt.Sprintf("port %d is %s (%s is host): publish it with -p", port, unpublished, from)}
		}
		ip := b.IP
		switch {
		case ip.IsValid() && ip.IsLoopback():
			return address{}, &fault{perPort: true, quiet: true, reason: fmt.Sprintf("port %d is published on %s only, which other hosts cannot reach", port, ip)}
		case !ip.IsValid():
			if !p.HostAddr.IsValid() {
				return address{}, &fault{perPort: true, reason: "the host's address is not known yet (set --advertise-addr)"}
			}
			ip = p.HostAddr
		}
		why := fmt.Sprintf("%s; port %d published as %d", from, port, b.Port)
		return address{netip.AddrPortFrom(ip, uint16(b.Port)), AddressHost, why}, nil
	case AddressContainer:
		name, f := r.otherNetwork(p, port)
		if f != nil {
			return address{}, f
		}
		return address{netip.AddrPortFrom(c.Networks[name], uint16(port)), AddressContainer, from + "; network " + name}, nil
	}
	return address{}, &fault{reason: fmt.Sprintf("address mode %q: want auto, overlay, host or container", mode)}
}

// otherNetwork is the network whose address container mode registers:
// drover.address.network, else the container's only network.
func (r *labelReader) otherNetwork(p Placement, port int) (string, *fault) {
	c := r.c
	if s, ok := r.lookup(port, "address.network"); ok {
		if a, on := c.Networks[s.value]; !on || !a.IsValid() {
			return "", badf(s, "the container has no address on that network")
		}
		return s.value, nil
	}
	var names []string
	for n, a := range c.Networks {
		if a.IsValid() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	switch len(names) {
	case 1:
		return names[0], nil
	case 0:
		return "", &fault{reason: "container mode: the container has no address on any network"}
	}
	return "", &fault{reason: fmt.Sprintf("container mode: the container is on several networks (%s): set drover.address.network", strings.Join(names, ", "))}
}
