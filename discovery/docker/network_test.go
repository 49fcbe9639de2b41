package docker

import (
	"net/netip"
	"testing"
)

func TestNetworkAction(t *testing.T) {
	sub := netip.MustParsePrefix("10.42.3.0/24")
	other := netip.MustParsePrefix("10.42.9.0/24")
	spec := NetworkSpec{Name: "drover", Subnet: sub, MTU: 1220}
	for _, tc := range []struct {
		name string
		cur  NetworkFacts
		spec NetworkSpec
		want string
		err  bool
	}{
		{"same subnet and mtu", NetworkFacts{Subnets: []netip.Prefix{sub}, MTU: 1220, Containers: 3}, spec, "adopted", false},
		{"mtu not asked for", NetworkFacts{Subnets: []netip.Prefix{sub}, MTU: 1500}, NetworkSpec{Subnet: sub}, "adopted", false},
		// Defect 12: an adopted network made for a larger underlay.
		{"mtu shrank, no container", NetworkFacts{Subnets: []netip.Prefix{sub}, MTU: 1420}, spec, "recreated for mtu 1220 (was 1420)", false},
		{"no mtu option (Docker's 1500), no container", NetworkFacts{Subnets: []netip.Prefix{sub}, MTU: DefaultMTU}, spec, "recreated for mtu 1220 (was 1500)", false},
		{"mtu shrank, containers attached", NetworkFacts{Subnets: []netip.Prefix{sub}, MTU: 1420, Containers: 2}, spec, "kept at mtu 1420 (want 1220): 2 containers attached", false},
		{"mtu grew, no container", NetworkFacts{Subnets: []netip.Prefix{sub}, MTU: 1220}, NetworkSpec{Subnet: sub, MTU: 1420}, "recreated for mtu 1420 (was 1220)", false},
		{"other subnet, no container", NetworkFacts{Subnets: []netip.Prefix{other}, MTU: 1500}, spec, "recreated", false},
		{"other subnet, containers attached", NetworkFacts{Subnets: []netip.Prefix{other}, MTU: 1220, Containers: 1}, spec, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NetworkAction(tc.cur, tc.spec)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("NetworkAction = %q, %v; want %q (error %v)", got, err, tc.want, tc.err)
			}
		})
	}
}
