package overlay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestWantMTU(t *testing.T) {
	for _, tc := range []struct{ underlay, want int }{
		{1500, 1420}, {1400, 1320}, {1300, 1220}, {9000, 8920}, {600, MinMTU}, {0, 0},
	} {
		if got := WantMTU(tc.underlay); got != tc.want {
			t.Errorf("WantMTU(%d) = %d, want %d", tc.underlay, got, tc.want)
		}
	}
}

func TestWantEndpoint(t *testing.T) {
	cur := netip.MustParseAddrPort("10.99.0.12:51820")
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name  string
		addrs []netip.Addr
		want  string
		moved bool
	}{
		{"still there", []netip.Addr{a("10.99.0.12")}, "10.99.0.12:51820", false},
		{"still there beside a new one", []netip.Addr{a("10.99.0.112"), a("10.99.0.12")}, "10.99.0.12:51820", false},
		{"moved", []netip.Addr{a("10.99.0.112")}, "10.99.0.112:51820", true},
		{"moved, two new: the lowest", []netip.Addr{a("10.99.0.200"), a("10.99.0.112")}, "10.99.0.112:51820", true},
		{"only IPv6 left: kept", []netip.Addr{a("2001:db8::12")}, "10.99.0.12:51820", false},
		{"no address at all (link down): kept", nil, "10.99.0.12:51820", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, moved := WantEndpoint(cur, UnderlayLink{Name: "eth0", MTU: 1500, Addrs: tc.addrs})
			if got.String() != tc.want || moved != tc.moved {
				t.Errorf("WantEndpoint = %s, %v; want %s, %v", got, moved, tc.want, tc.moved)
			}
		})
	}
}

type fakeUnderlay struct {
	link UnderlayLink
	err  error
}

func (f *fakeUnderlay) Probe() (UnderlayLink, error) { return f.link, f.err }

type mtuWG struct {
	startWG
	mtu int
}

func (w *mtuWG) SetMTU(m int) { w.mtu = m }

type epAnn struct {
	eps  []netip.AddrPort
	fail error
}

func (a *epAnn) Announce(_ context.Context, _ Self, ep netip.AddrPort) (bool, error) {
	if a.fail != nil {
		return false, a.fail
	}
	a.eps = append(a.eps, ep)
	return true, nil
}
func (a *epAnn) Withdraw(context.Context) error { return nil }

// The 2 s check follows the underlay (issue 12 defects 18 and 14): a
// shrunk MTU reaches drover0 and status, a moved address is published, a
// failed publication is retried, and pinned values never move.
func TestCheckUnderlay(t *testing.T) {
	key, _ := wgtypes.GeneratePrivateKey()
	ep := netip.MustParseAddrPort("10.99.0.12:51820")
	newController := func(pinned bool, u *fakeUnderlay, w *mtuWG, ann *epAnn) *Controller {
		c := New(Options{Interface: "drover0", Endpoint: ep, MTU: 1420, MTUPinned: pinned, EndpointPinned: pinned,
			NodeName: "h2", PrivateKey: key, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
			Deps{WG: w, Ann: ann, Underlay: u})
		c.self = Self{Name: "h2", PublicKey: key.PublicKey(), Subnet: netip.MustParsePrefix("10.42.2.0/24")}
		return c
	}
	t.Run("mtu and address follow", func(t *testing.T) {
		u := &fakeUnderlay{link: UnderlayLink{Name: "eth0", MTU: 1500, Addrs: []netip.Addr{ep.Addr()}}}
		w, ann := &mtuWG{}, &epAnn{}
		c := newController(false, u, w, ann)
		c.checkUnderlay(context.Background())
		if w.mtu != 0 || len(ann.eps) != 0 {
			t.Fatalf("nothing changed, yet SetMTU(%d), announced %v", w.mtu, ann.eps)
		}
		u.link.MTU = 1300
		c.checkUnderlay(context.Background())
		if w.mtu != 1220 || c.MTU() != 1220 || c.Status().MTU != 1220 {
			t.Errorf("after the underlay went to 1300: device %d, controller %d, status %d; want 1220", w.mtu, c.MTU(), c.Status().MTU)
		}
		u.link.Addrs = []netip.Addr{netip.MustParseAddr("10.99.0.112")}
		ann.fail = errors.New("consul agent away")
		c.checkUnderlay(context.Background())
		if c.Endpoint() != ep {
			t.Errorf("endpoint %s counted as published though the announce failed", c.Endpoint())
		}
		ann.fail = nil
		c.checkUnderlay(context.Background())
		want := netip.MustParseAddrPort("10.99.0.112:51820")
		if c.Endpoint() != want || c.Status().Endpoint != want.String() || len(ann.eps) != 1 || ann.eps[0] != want {
			t.Errorf("after the move: endpoint %s, status %s, announced %v; want %s once", c.Endpoint(), c.Status().Endpoint, ann.eps, want)
		}
		c.checkUnderlay(context.Background())
		if len(ann.eps) != 1 {
			t.Errorf("announced again without a change: %v", ann.eps)
		}
	})
	t.Run("pinned", func(t *testing.T) {
		u := &fakeUnderlay{link: UnderlayLink{Name: "eth0", MTU: 1300, Addrs: []netip.Addr{netip.MustParseAddr("10.99.0.112")}}}
		w, ann := &mtuWG{}, &epAnn{}
		c := newController(true, u, w, ann)
		c.checkUnderlay(context.Background())
		if w.mtu != 0 || c.MTU() != 1420 || c.Endpoint() != ep || len(ann.eps) != 0 {
			t.Errorf("pinned values moved: device %d, mtu %d, endpoint %s, announced %v", w.mtu, c.MTU(), c.Endpoint(), ann.eps)
		}
	})
}
