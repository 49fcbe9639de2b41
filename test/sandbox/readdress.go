package sandbox

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// SetUnderlayMTU sets the MTU of host name's underlay interface (eth0 in
// its namespace), as a changed link or VPN underneath would.
func (s *Sandbox) SetUnderlayMTU(ctx context.Context, name string, mtu int) error {
	h, err := s.HostByName(name)
	if err != nil {
		return err
	}
	if _, err := run(ctx, "ip", "-n", h.NetNS, "link", "set", "eth0", "mtu", strconv.Itoa(mtu)); err != nil {
		return fmt.Errorf("setting %s's underlay MTU to %d: %w", name, mtu, err)
	}
	return nil
}

// Readdress moves host name's underlay address to addr (inside the
// underlay /24), as DHCP handing out a new lease would, and restarts its
// Consul agent bound to the new address (keeping its data dir). Later
// restarts through Start bind the original address again.
func (s *Sandbox) Readdress(ctx context.Context, name string, addr netip.Addr) error {
	h, err := s.HostByName(name)
	if err != nil {
		return err
	}
	if !Underlay.Contains(addr) {
		return fmt.Errorf("readdressing %s: %s is outside the underlay %s", name, addr, Underlay)
	}
	old := h.Addr.String() + "/" + strconv.Itoa(Underlay.Bits())
	// Old one first: deleting a primary address deletes the secondaries of
	// its subnet with it (promote_secondaries is off by default).
	steps := [][]string{
		{"-n", h.NetNS, "addr", "del", old, "dev", "eth0"},
		{"-n", h.NetNS, "addr", "add", addr.String() + "/" + strconv.Itoa(Underlay.Bits()), "dev", "eth0"},
	}
	for _, st := range steps {
		if _, err := run(ctx, "ip", st...); err != nil {
			return fmt.Errorf("readdressing %s: %w", name, err)
		}
	}
	if pid := pidOf(pidFile(h.Run, ProcConsul), "consul"); pid != 0 {
		if err := killPID(pid); err != nil {
			return fmt.Errorf("stopping consul on %s: %w", name, err)
		}
		waitGone(pid, 5*time.Second)
	}
	d, err := s.consulDaemon(h.Name, h.NetNS, h.MountNS, addr.String(), h.Dir, h.Run, false)
	if err != nil {
		return err
	}
	if err := start(d); err != nil {
		return fmt.Errorf("starting consul on %s at %s: %w", name, addr, err)
	}
	return s.waitConsul(ctx)
}
