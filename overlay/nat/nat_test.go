package nat

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRuleset(t *testing.T) {
	got := Masquerade{Bridge: "drover-br"}.Ruleset(netip.MustParsePrefix("10.42.3.0/24"), netip.MustParsePrefix("10.42.0.0/16"))
	for _, want := range []string{
		"flush table ip drover",
		"type nat hook postrouting priority srcnat; policy accept;",
		`ip saddr 10.42.3.0/24 ip daddr != 10.42.0.0/16 oifname != "drover-br" masquerade`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
}
