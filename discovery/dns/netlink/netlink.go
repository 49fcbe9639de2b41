// Package netlink is the DNS server's kernel adapter: the dummy link that
// holds the stable link-local address containers reach the server at, or,
// on a kernel without dummy links, that address on the loopback device
// under the label lo:<name>. It touches that link or that labelled address
// and nothing else.
package netlink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Ensure makes link name a dummy link that is up and holds addr as a host
// address (/32 or /128), and only that; where the kernel has no dummy
// links, addr goes on lo with the label lo:<name> (the weak host model
// delivers it alike). It writes nothing when all is as it should be, so it
// is cheap to call on a timer; it returns the device holding addr and
// whether it had to change something.
func Ensure(name string, addr netip.Addr) (string, bool, error) {
	changed, err := ensureDummy(name, addr)
	if errors.Is(err, errNoDummy) {
		changed, err = ensureOnLo(name, addr)
		return "lo", changed, err
	}
	return name, changed, err
}

var errNoDummy = errors.New("no dummy links in this kernel")

func ensureDummy(name string, addr netip.Addr) (bool, error) {
	changed := false
	l, err := vnl.LinkByName(name)
	var nf vnl.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		d := &vnl.Dummy{LinkAttrs: vnl.LinkAttrs{Name: name}}
		if err := vnl.LinkAdd(d); errors.Is(err, unix.EOPNOTSUPP) {
			return false, errNoDummy
		} else if err != nil {
			return false, fmt.Errorf("creating dummy link %s: %w", name, err)
		}
		changed = true
		if l, err = vnl.LinkByName(name); err != nil {
			return true, fmt.Errorf("reading link %s: %w", name, err)
		}
	case err != nil:
		return false, fmt.Errorf("reading link %s: %w", name, err)
	}
	if l.Type() != "dummy" {
		return false, fmt.Errorf("link %s exists and is a %s, not a dummy link: refusing to take it", name, l.Type())
	}
	bits := 32
	if addr.Is6() {
		bits = 128
	}
	want := netip.PrefixFrom(addr, bits)
	addrs, err := vnl.AddrList(l, vnl.FAMILY_ALL)
	if err != nil {
		return changed, fmt.Errorf("listing addresses of %s: %w", name, err)
	}
	has := false
	for _, a := range addrs {
		p, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ok && p.Unmap() == addr && ones == bits {
			has = true
			continue
		}
		if a.IP.IsLinkLocalUnicast() && a.IP.To4() == nil {
			continue // the kernel's own fe80:: address
		}
		if err := vnl.AddrDel(l, &a); err != nil {
			return changed, fmt.Errorf("removing %s from %s: %w", a.IPNet, name, err)
		}
		changed = true
	}
	if !has {
		ipn := &net.IPNet{IP: net.IP(want.Addr().AsSlice()), Mask: net.CIDRMask(bits, bits)}
		if err := vnl.AddrAdd(l, &vnl.Addr{IPNet: ipn}); err != nil {
			return changed, fmt.Errorf("adding %s to %s: %w", want, name, err)
		}
		changed = true
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := vnl.LinkSetUp(l); err != nil {
			return changed, fmt.Errorf("setting %s up: %w", name, err)
		}
		changed = true
	}
	return changed, nil
}

// loLabel is the label of the address Ensure puts on lo.
func loLabel(name string) string { return "lo:" + name }

// ensureOnLo puts addr on lo under name's label, and removes any other
// address of that label.
func ensureOnLo(name string, addr netip.Addr) (bool, error) {
	lo, err := vnl.LinkByName("lo")
	if err != nil {
		return false, fmt.Errorf("reading link lo: %w", err)
	}
	bits := 32
	if addr.Is6() {
		bits = 128
	}
	addrs, err := vnl.AddrList(lo, vnl.FAMILY_ALL)
	if err != nil {
		return false, fmt.Errorf("listing addresses of lo: %w", err)
	}
	has, changed := false, false
	for _, a := range addrs {
		p, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ok && p.Unmap() == addr && ones == bits {
			has = true
			continue
		}
		if a.Label != loLabel(name) {
			continue
		}
		if err := vnl.AddrDel(lo, &a); err != nil {
			return false, fmt.Errorf("removing %s from lo: %w", a.IPNet, err)
		}
		changed = true
	}
	if !has {
		ipn := &net.IPNet{IP: net.IP(addr.AsSlice()), Mask: net.CIDRMask(bits, bits)}
		a := &vnl.Addr{IPNet: ipn}
		if addr.Is4() {
			a.Label = loLabel(name) // IPv6 addresses have no labels
		}
		if err := vnl.AddrAdd(lo, a); err != nil {
			return false, fmt.Errorf("adding %s to lo: %w", ipn, err)
		}
		changed = true
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := vnl.LinkSetUp(lo); err != nil {
			return changed, fmt.Errorf("setting lo up: %w", err)
		}
		changed = true
	}
	return changed, nil
}

// Remove deletes link name if it is a dummy link, and addr from lo when
// it is there (labelled lo:<name>, or any IPv6 addr: those have no
// labels); absent is fine.
func Remove(name string, addr netip.Addr) error {
	if lo, err := vnl.LinkByName("lo"); err == nil {
		addrs, _ := vnl.AddrList(lo, vnl.FAMILY_ALL)
		for _, a := range addrs {
			p, _ := netip.AddrFromSlice(a.IP)
			if a.Label == loLabel(name) || (addr.Is6() && p == addr) {
				if err := vnl.AddrDel(lo, &a); err != nil {
					return fmt.Errorf("removing %s from lo: %w", a.IPNet, err)
				}
			}
		}
	}
	l, err := vnl.LinkByName(name)
	var nf vnl.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading link %s: %w", name, err)
	}
	if l.Type() != "dummy" {
		return fmt.Errorf("link %s is a %s, not drover's dummy link: left alone", name, l.Type())
	}
	if err := vnl.LinkDel(l); err != nil {
		return fmt.Errorf("removing link %s: %w", name, err)
	}
	return nil
}
