package firewall

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

var (
	subnet  = netip.MustParsePrefix("10.42.3.0/24")
	cluster = netip.MustParsePrefix("10.42.0.0/16")
	host    = Host{Interface: "drover0", Bridge: "drover-br"}
	mtu     = 1420
)

func TestRuleset(t *testing.T) {
	got := host.Ruleset(Spec{Subnet: subnet, Cluster: cluster})
	for _, want := range []string{
		"flush table ip drover",
		"type nat hook postrouting priority srcnat; policy accept;",
		`ip saddr 10.42.3.0/24 ip daddr != 10.42.0.0/16 oifname != "drover-br" masquerade`,
		"type filter hook forward priority filter - 10; policy accept;",
		`oifname "drover-br" ip daddr 10.42.3.0/24 iifname != { "drover0", "drover-br" } ct state new ct status & dnat == 0 drop`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
	if again := host.Ruleset(Spec{Subnet: subnet, Cluster: cluster}); again != got {
		t.Error("ruleset is not deterministic")
	}
	if strings.Contains(got, "maxseg") {
		t.Errorf("no MSS given, yet a clamp:\n%s", got)
	}
}

// TestRulesetClamp: a tunnel of MTU 1220 (underlay 1300) clamps TCP SYNs
// both ways between the bridge and drover0 to MSS 1180, only downwards.
func TestRulesetClamp(t *testing.T) {
	got := host.Ruleset(Spec{Subnet: subnet, Cluster: cluster, MSS: MSS(1220)})
	for _, want := range []string{
		`iifname "drover-br" oifname "drover0" tcp flags & (syn|rst) == syn tcp option maxseg size > 1180 tcp option maxseg size set 1180 comment "drover: tcp mss 1180 from local containers to the tunnel`,
		`iifname "drover0" oifname "drover-br" tcp flags & (syn|rst) == syn tcp option maxseg size > 1180 tcp option maxseg size set 1180 comment "drover: tcp mss 1180 from the tunnel to local containers`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
	if MSS(0) != 0 || MSS(1420) != 1380 {
		t.Errorf("MSS(0) = %d, MSS(1420) = %d", MSS(0), MSS(1420))
	}
}

// nftJSON is what `nft -j list table ip drover` prints (trimmed) for the
// given rule comments, forward chain listed first as nft does.
func nftJSON(post string, fwd ...string) string {
	rules := fmt.Sprintf(`{"rule": {"family": "ip", "table": "drover", "chain": "postrouting", "handle": 3, "comment": %q, "expr": []}}`, post)
	for i, c := range fwd {
		rules = fmt.Sprintf(`{"rule": {"family": "ip", "table": "drover", "chain": "forward", "handle": %d, "comment": %q, "expr": []}},`, 5+i, c) + rules
	}
	return `{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "drover", "handle": 1}},` + rules + `]}`
}

// fake scripts nft and iptables: table holds the nft JSON ("" = no table),
// rules the DOCKER-USER rules as `iptables -S` prints them (nil = no chain),
// jump whether FORWARD jumps to DOCKER-USER. Every write is recorded.
type fake struct {
	table  string
	rules  []string
	jump   bool
	writes []string
}

func (f *fake) run(_ context.Context, stdin, name string, args ...string) (string, error) {
	cmd := name + " " + strings.Join(args, " ")
	fail := errors.New("exit status 1")
	switch {
	case cmd == "nft -j list table ip drover":
		if f.table == "" {
			return "Error: No such file or directory; did you mean table ‘drover’ in family ip?", fail
		}
		return f.table, nil
	case name == "nft":
		f.writes = append(f.writes, "nft -f "+firstLine(stdin))
		if c := commentRE.FindAllStringSubmatch(stdin, -1); len(c) >= 2 {
			var fwd []string
			for _, m := range c[1:] {
				fwd = append(fwd, m[1])
			}
			f.table = nftJSON(c[0][1], fwd...)
		} else {
			f.table = ""
		}
		return "", nil
	}
	args = args[4:] // -w 5 -t filter
	switch args[0] {
	case "-S":
		if f.rules == nil {
			return "iptables: No chain/target/match by that name.", fail
		}
		return "-N DOCKER-USER\n" + strings.Join(f.rules, "\n") + "\n", nil
	case "-C":
		if args[1] == "FORWARD" {
			if f.jump {
				return "", nil
			}
			return "", fail
		}
		want := "-A " + args[1] + " " + quote(args[2:])
		for _, r := range f.rules {
			if r == want {
				return "", nil
			}
		}
		return "", fail
	case "-N":
		f.rules = []string{}
	case "-I":
		if args[1] == "FORWARD" {
			f.jump = true
		} else {
			f.rules = append([]string{"-A " + args[1] + " " + quote(args[3:])}, f.rules...)
		}
	case "-D":
		want := "-A " + args[1] + " " + quote(args[2:])
		for i, r := range f.rules {
			if r == want {
				f.rules = append(f.rules[:i], f.rules[i+1:]...)
				break
			}
		}
	}
	f.writes = append(f.writes, "iptables "+strings.Join(args, " "))
	return "", nil
}

var commentRE = regexp.MustCompile(`comment "([^"]*)"`)

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

// quote renders args as iptables -S does (quotes around arguments with
// spaces).
func quote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.Contains(a, " ") {
			a = `"` + a + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func current() *fake {
	c := host.comments(Spec{Subnet: subnet, Cluster: cluster, MSS: MSS(mtu)})
	f := &fake{table: nftJSON(c[0], c[1:]...), jump: true}
	for _, r := range host.AcceptRules(Spec{Subnet: subnet, Cluster: cluster}) {
		f.rules = append(f.rules, "-A DOCKER-USER "+quote(r))
	}
	f.rules = append(f.rules, "-A DOCKER-USER -j RETURN")
	return f
}

func TestEnsure(t *testing.T) {
	other := host.comments(Spec{Subnet: netip.MustParsePrefix("10.42.9.0/24"), Cluster: cluster, MSS: MSS(mtu)})
	otherMSS := host.comments(Spec{Subnet: subnet, Cluster: cluster, MSS: MSS(1500)})
	noClamp := host.comments(Spec{Subnet: subnet, Cluster: cluster})
	for _, tc := range []struct {
		name   string
		setup  func(*fake)
		writes int
		done   string
	}{
		{"everything in place writes nothing", func(*fake) {}, 0, ""},
		{"after nft flush ruleset", func(f *fake) { f.table, f.rules, f.jump = "", nil, false }, 5,
			"nft table ip drover written; iptables chain DOCKER-USER created; FORWARD jump to DOCKER-USER added; iptables DOCKER-USER accept rules written"},
		{"table of another subnet", func(f *fake) { f.table = nftJSON(other[0], other[1:]...) }, 1, "nft table ip drover written"},
		{"table of another MTU (the underlay's shrank)", func(f *fake) { f.table = nftJSON(otherMSS[0], otherMSS[1:]...) }, 1, "nft table ip drover written"},
		{"table without the clamp (an older drover)", func(f *fake) { f.table = nftJSON(noClamp[0], noClamp[1]) }, 1, "nft table ip drover written"},
		{"one accept rule deleted", func(f *fake) { f.rules = f.rules[1:] }, 3, "iptables DOCKER-USER accept rules written"},
		{"dockerd recreated the chain without them", func(f *fake) { f.rules = []string{"-A DOCKER-USER -j RETURN"} }, 2,
			"iptables DOCKER-USER accept rules written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := current()
			tc.setup(f)
			h := host
			h.Run = f.run
			done, err := h.Ensure(context.Background(), subnet, cluster, mtu)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(done, "; "); got != tc.done {
				t.Errorf("done = %q, want %q", got, tc.done)
			}
			if len(f.writes) != tc.writes {
				t.Errorf("%d writes, want %d:\n%s", len(f.writes), tc.writes, strings.Join(f.writes, "\n"))
			}
			// Afterwards the host is current: a second pass writes nothing.
			f.writes = nil
			if done, err := h.Ensure(context.Background(), subnet, cluster, mtu); err != nil || len(done) != 0 || len(f.writes) != 0 {
				t.Errorf("second pass: done %v, err %v, writes %v", done, err, f.writes)
			}
			if last := f.rules[len(f.rules)-1]; last != "-A DOCKER-USER -j RETURN" && len(f.rules) > 2 {
				t.Errorf("Docker's RETURN is no longer last: %v", f.rules)
			}
		})
	}
}

func TestSplitRule(t *testing.T) {
	got, err := splitRule(`-s 10.42.0.0/16 -i drover0 -m comment --comment "drover: a \"b\" c" -j ACCEPT`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-s", "10.42.0.0/16", "-i", "drover0", "-m", "comment", "--comment", `drover: a "b" c`, "-j", "ACCEPT"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := splitRule(`--comment "open`); err == nil {
		t.Error("unbalanced quote accepted")
	}
}
