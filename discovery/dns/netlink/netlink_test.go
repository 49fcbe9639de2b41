package netlink

import (
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNetns runs f on a locked thread inside a fresh network namespace.
func inNetns(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // also switches this thread into it
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	defer ns.Close()
	defer netns.Set(orig)
	f()
}

func addrs(t *testing.T, name string) []string { // address/bits label
	t.Helper()
	l, err := vnl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	as, err := vnl.AddrList(l, vnl.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String()+" "+a.Label)
	}
	return out
}

func TestEnsure(t *testing.T) {
	a := netip.MustParseAddr("169.254.53.53")
	inNetns(t, func() {
		dev, changed, err := Ensure("drover-dns", a)
		if err != nil || !changed {
			t.Fatalf("first Ensure: changed %v, err %v", changed, err)
		}
		if _, changed, err := Ensure("drover-dns", a); err != nil || changed {
			t.Fatalf("second Ensure: changed %v, err %v; want nothing to do", changed, err)
		}
		if dev == "lo" {
			testOnLo(t, a)
			return
		}
		l, _ := vnl.LinkByName("drover-dns")
		if l.Attrs().OperState != vnl.OperUnknown && l.Attrs().Flags&1 == 0 {
			t.Errorf("link not up: %v", l.Attrs().Flags)
		}
		// Someone adds an address and takes ours away: put back, theirs removed.
		_ = vnl.AddrDel(l, &vnl.Addr{IPNet: vnl.NewIPNet(a.AsSlice())})
		other, _ := vnl.ParseAddr("192.0.2.9/32")
		if err := vnl.AddrAdd(l, other); err != nil {
			t.Fatal(err)
		}
		if _, changed, err := Ensure("drover-dns", a); err != nil || !changed {
			t.Fatalf("repair: changed %v, err %v", changed, err)
		}
		if got := addrs(t, "drover-dns"); len(got) != 1 || got[0] != "169.254.53.53/32 drover-dns" {
			t.Errorf("addresses after repair %v, want only 169.254.53.53/32", got)
		}
		// A link of that name that is not a dummy is not taken.
		if err := Remove("drover-dns", a); err != nil {
			t.Fatal(err)
		}
		if err := Remove("drover-dns", a); err != nil {
			t.Errorf("removing an absent link: %v", err)
		}
		if err := vnl.LinkAdd(&vnl.Bridge{LinkAttrs: vnl.LinkAttrs{Name: "drover-dns"}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Ensure("drover-dns", a); err == nil {
			t.Errorf("Ensure took a bridge named drover-dns")
		}
		if err := Remove("drover-dns", a); err == nil {
			t.Errorf("Remove deleted a bridge named drover-dns")
		}
	})
}

// testOnLo is TestEnsure on a kernel without dummy links: the address is
// on lo under the label lo:drover-dns, and only that address is touched.
func testOnLo(t *testing.T, a netip.Addr) {
	t.Log("no dummy links in this kernel: the address is on lo")
	ours := "169.254.53.53/32 lo:drover-dns"
	if got := addrs(t, "lo"); !slices.Equal(got, []string{"127.0.0.1/8 lo", ours}) {
		t.Fatalf("lo addresses %v, want 127.0.0.1 (lo up) and ours", got)
	}
	lo, _ := vnl.LinkByName("lo")
	mine, _ := vnl.ParseAddr("169.254.53.53/32")
	if err := vnl.AddrDel(lo, mine); err != nil {
		t.Fatal(err)
	}
	theirs, _ := vnl.ParseAddr("192.0.2.9/32")
	if err := vnl.AddrAdd(lo, theirs); err != nil {
		t.Fatal(err)
	}
	if _, changed, err := Ensure("drover-dns", a); err != nil || !changed {
		t.Fatalf("repair: changed %v, err %v", changed, err)
	}
	if got := addrs(t, "lo"); !slices.Equal(got, []string{"127.0.0.1/8 lo", "192.0.2.9/32 lo", ours}) {
		t.Errorf("lo addresses after repair %v, want theirs kept and ours back", got)
	}
	if err := Remove("drover-dns", a); err != nil {
		t.Fatal(err)
	}
	if got := addrs(t, "lo"); !slices.Equal(got, []string{"127.0.0.1/8 lo", "192.0.2.9/32 lo"}) {
		t.Errorf("lo addresses after Remove %v, want only ours gone", got)
	}
}

func TestEnsureIPv6(t *testing.T) {
	a := netip.MustParseAddr("fd00::53")
	inNetns(t, func() {
		dev, _, err := Ensure("drover-dns", a)
		if err != nil {
			t.Fatal(err)
		}
		has := func() bool {
			l, _ := vnl.LinkByName(dev)
			as, _ := vnl.AddrList(l, vnl.FAMILY_V6)
			for _, x := range as {
				if x.IPNet.String() == "fd00::53/128" {
					return true
				}
			}
			return false
		}
		if !has() {
			t.Fatalf("fd00::53/128 not on %s", dev)
		}
		if _, changed, err := Ensure("drover-dns", a); err != nil || changed {
			t.Errorf("second Ensure: changed %v, err %v", changed, err)
		}
		if err := Remove("drover-dns", a); err != nil {
			t.Fatal(err)
		}
		if dev == "lo" && has() {
			t.Errorf("fd00::53 still on lo after Remove")
		}
	})
}
