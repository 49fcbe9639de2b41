package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDNSUpstreams(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("search example.org\nnameserver 10.0.0.2\nnameserver 169.254.53.53\nnameserver fd00::53\noptions ndots:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self := netip.MustParseAddrPort("169.254.53.53:53")
	for _, c := range []struct {
		name, flag string
		want       []string
	}{
		{"from resolv.conf, without the server itself", "", []string{"10.0.0.2:53", "[fd00::53]:53"}},
		{"the flag wins, port 53 by default", "10.99.0.2, 10.99.0.3:5353", []string{"10.99.0.2:53", "10.99.0.3:5353"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := dnsUpstreams(c.flag, rc, self)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
	if _, err := dnsUpstreams("", filepath.Join(dir, "none"), self); err == nil {
		t.Errorf("a missing resolv.conf gave no error")
	}
}

func TestDNSAllow(t *testing.T) {
	c := DefaultConfig()
	c.DNSAllow = "192.168.5.0/24"
	got := c.dnsAllow()
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.42.0.0/16"), netip.MustParsePrefix("192.168.5.0/24")}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
