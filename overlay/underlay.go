package overlay

import (
	"context"
	"net/netip"
	"slices"
)

// Underlay reads the host's underlay link, the interface that carries the
// WireGuard UDP (found at start by the endpoint's address). Probe is a few
// netlink reads, cheap enough for the 2 s local check; it never calls
// Consul.
type Underlay interface {
	Probe() (UnderlayLink, error)
}

// UnderlayLink is what Probe found on the underlay interface.
type UnderlayLink struct {
	Name  string
	MTU   int
	Addrs []netip.Addr // its global unicast addresses
}

// WireGuardOverhead is what WireGuard adds to a packet on an IPv6-capable
// underlay (40 IPv6 + 8 UDP + 32 WireGuard), the margin the kernel's
// and wireguard-go's default of 1420 on a 1500 link leaves.
const WireGuardOverhead = 80

// MinMTU is the smallest MTU drover0 is given (IPv4's minimum; the mesh
// carries IPv4 only, so a small underlay is followed below IPv6's 1280:
// anything larger than underlay − overhead would not fit).
const MinMTU = 576

// WantMTU is drover0's MTU on an underlay of MTU underlay: the underlay
// less WireGuard's overhead, never below MinMTU; 0 when the underlay MTU is
// unknown. It is pure.
func WantMTU(underlay int) int {
	if underlay <= 0 {
		return 0
	}
	return max(underlay-WireGuardOverhead, MinMTU)
}

// WantEndpoint returns the endpoint to publish now that the underlay
// interface has link's addresses, and whether it differs from cur: cur
// while its address is still on the interface (or the interface has none
// of cur's family); otherwise the interface's first address of that family,
// with cur's port. It is pure.
func WantEndpoint(cur netip.AddrPort, link UnderlayLink) (netip.AddrPort, bool) {
	if slices.Contains(link.Addrs, cur.Addr()) {
		return cur, false
	}
	cands := make([]netip.Addr, 0, len(link.Addrs))
	for _, a := range link.Addrs {
		if a.Is4() == cur.Addr().Is4() && a.IsGlobalUnicast() {
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		return cur, false
	}
	slices.SortFunc(cands, func(a, b netip.Addr) int { return a.Compare(b) })
	return netip.AddrPortFrom(cands[0], cur.Port()), true
}

// MTU returns drover0's MTU as the controller keeps it.
func (c *Controller) MTU() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mtu
}

// Endpoint returns the underlay endpoint this host publishes.
func (c *Controller) Endpoint() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endpoint
}

// checkUnderlay follows the underlay link (issue 12 defects 12, 14 and
// 18): an MTU that changed gives drover0 the matching MTU (the reconcile
// pass sets it on the device, repairHost the container network and the MSS
// clamp); an endpoint address that left the interface is replaced by the
// interface's current one and published in this host's drover-node
// record, which every peer applies. Pinned values (--mtu, --endpoint) are
// never changed. It runs on the 2 s local check, before repairHost.
func (c *Controller) checkUnderlay(ctx context.Context) {
	if c.under == nil || (c.opt.MTUPinned && c.opt.EndpointPinned) {
		return
	}
	link, err := c.under.Probe()
	c.mu.Lock()
	prevErr := c.underErr
	c.underErr = ""
	if err != nil {
		c.underErr = err.Error()
	}
	mtu, ep := c.mtu, c.endpoint
	c.mu.Unlock()
	if err != nil {
		if err.Error() != prevErr {
			c.opt.Log.Warn("cannot read the underlay link; MTU and endpoint kept", "err", err)
		}
		return
	}
	if want := WantMTU(link.MTU); !c.opt.MTUPinned && want > 0 && want != mtu {
		c.opt.Log.Info("underlay MTU changed; drover0 follows", "underlay", link.Name, "underlay_mtu", link.MTU, "from", mtu, "to", want)
		c.wg.SetMTU(want)
		c.mu.Lock()
		c.mtu = want
		c.mu.Unlock()
	}
	if c.opt.EndpointPinned {
		return
	}
	next, moved := WantEndpoint(ep, link)
	if !moved {
		return
	}
	c.opt.Log.Info("underlay address changed; publishing the new endpoint", "underlay", link.Name, "from", ep, "to", next)
	c.mu.Lock()
	c.endpoint = next
	c.mu.Unlock()
	if _, err := c.announceUnlessLeaving(ctx); err != nil {
		// Tried again on the next check: the endpoint counts as published
		// only once the record carries it.
		c.mu.Lock()
		c.endpoint = ep
		c.mu.Unlock()
		c.opt.Log.Warn("publishing the new endpoint failed; retrying", "endpoint", next, "err", err)
	}
}
