// Package firewall is the overlay's host firewall adapter. It owns two
// things on a host and nothing else:
//
//   - the nftables table "ip drover": masquerade for container traffic that
//     leaves the cluster (never for traffic to other hosts' subnets), and a
//     guard that drops new connections reaching this host's container subnet
//     from anywhere but the WireGuard interface (or the bridge itself), unless
//     Docker published the port (DNAT);
//   - two accept rules in iptables' DOCKER-USER chain (the chain Docker keeps
//     for its users and evaluates first in FORWARD), so that cluster traffic
//     through the tunnel passes a host whose FORWARD policy is DROP, as Docker
//     leaves it;
//   - in the same table, a TCP MSS clamp between the bridge and the tunnel, so
//     that TCP between containers fits the tunnel's MTU whatever the
//     containers' own MTU (see overlay/README.md, "MTU").
//
// An nftables accept cannot overrule a drop in another table, which is why
// the accept rules go where Docker's own filter rules are; a drop is final in
// any table, which is why the guard can live in drover's own table and still
// hold when Docker's rules are gone.
//
// Ensure compares what is installed with what should be and writes only what
// drifted, so it is cheap to call every few seconds and repairs the rules
// after `nft flush ruleset`, a dockerd restart or someone deleting one. Out
// of scope: the host's input firewall (the operator's; docs/security.md lists
// what drover needs let in), routes and the WireGuard device.
package firewall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"
)

// Table is the nftables table drover owns.
const Table = "drover"

// UserChain is Docker's chain for its users' FORWARD rules.
const UserChain = "DOCKER-USER"

// Spec is what the rules are made of.
type Spec struct {
	Subnet  netip.Prefix // this host's container subnet
	Cluster netip.Prefix // every host's subnets
	MSS     int          // TCP MSS clamped between the bridge and the tunnel; 0: none
}

// Host manages the rules for one WireGuard interface and container bridge.
// Its methods may be called from one goroutine at a time.
type Host struct {
	Interface string // WireGuard interface, e.g. drover0
	Bridge    string // Linux bridge of the container network, e.g. drover-br
	// Timeout bounds each nft or iptables run; default 10 s.
	Timeout time.Duration
	// Run executes a command with stdin and returns its combined output;
	// default exec.CommandContext. Tests replace it.
	Run func(ctx context.Context, stdin string, name string, args ...string) (string, error)
}

// Ruleset returns the nft script that replaces the table atomically (one
// transaction). It is pure.
func (h Host) Ruleset(s Spec) string {
	c := h.comments(s)
	clamp := ""
	if s.MSS > 0 {
		// Both directions between the bridge and the tunnel: a SYN from a
		// local container caps what the remote side sends, a SYN arriving
		// through the tunnel caps what the local container sends. So a
		// container whose MTU is still larger than drover0's (its network
		// cannot be recreated while it is attached), or a peer whose
		// tunnel MTU is larger than ours, never sends a TCP segment that
		// does not fit this host's tunnel.
		clamp = fmt.Sprintf(`		iifname "%[1]s" oifname "%[2]s" tcp flags & (syn|rst) == syn tcp option maxseg size > %[3]d tcp option maxseg size set %[3]d comment "%[4]s"
		iifname "%[2]s" oifname "%[1]s" tcp flags & (syn|rst) == syn tcp option maxseg size > %[3]d tcp option maxseg size set %[3]d comment "%[5]s"
`, h.Bridge, h.Interface, s.MSS, c[2], c[3])
	}
	return fmt.Sprintf(`table ip %[1]s {}
flush table ip %[1]s
table ip %[1]s {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[2]s ip daddr != %[3]s oifname != "%[4]s" masquerade comment "%[6]s"
	}
	chain forward {
		type filter hook forward priority filter - 10; policy accept;
		oifname "%[4]s" ip daddr %[2]s iifname != { "%[5]s", "%[4]s" } ct state new ct status & dnat == 0 drop comment "%[7]s"
%[8]s	}
}
`, Table, s.Subnet.Masked(), s.Cluster.Masked(), h.Bridge, h.Interface, c[0], c[1], clamp)
}

// comments are the nft rules' comments; they carry a digest of the spec so
// that a table written for another subnet, bridge, interface or MSS is told
// apart from the current one by reading the comments alone. The last two
// belong to the MSS clamp and are absent when there is none.
func (h Host) comments(s Spec) []string {
	tag := fmt.Sprintf("%s %s %s %s", s.Subnet.Masked(), s.Cluster.Masked(), h.Bridge, h.Interface)
	out := []string{
		"drover: containers leaving the cluster [" + tag + "]",
		"drover: container addresses only through the tunnel [" + tag + "]",
	}
	if s.MSS > 0 {
		out = append(out,
			fmt.Sprintf("drover: tcp mss %d from local containers to the tunnel [%s]", s.MSS, tag),
			fmt.Sprintf("drover: tcp mss %d from the tunnel to local containers [%s]", s.MSS, tag))
	}
	return out
}

// MSS is the TCP maximum segment size that fits a tunnel of MTU mtu: the
// MTU less 40 bytes of IPv4 and TCP headers (0 when mtu is unknown).
func MSS(mtu int) int {
	if mtu <= 40 {
		return 0
	}
	return mtu - 40
}

// AcceptRules are the DOCKER-USER rule specs (iptables arguments after the
// chain name). It is pure.
func (h Host) AcceptRules(s Spec) [][]string {
	return [][]string{
		{"-i", h.Interface, "-o", h.Bridge, "-s", s.Cluster.Masked().String(), "-d", s.Subnet.Masked().String(),
			"-m", "comment", "--comment", "drover: cluster to local containers through the tunnel", "-j", "ACCEPT"},
		{"-i", h.Bridge, "-o", h.Interface, "-s", s.Subnet.Masked().String(), "-d", s.Cluster.Masked().String(),
			"-m", "comment", "--comment", "drover: local containers to the cluster through the tunnel", "-j", "ACCEPT"},
	}
}

// Ensure makes the host's rules match subnet, cluster and the tunnel's MTU
// (TCP MSS clamped to fit it; 0: no clamp), writing only what drifted. It returns what it wrote, one phrase per item ("nft table ip
// drover written", …); nil when everything was in place. Both halves are
// tried even when one fails.
func (h Host) Ensure(ctx context.Context, subnet, cluster netip.Prefix, mtu int) ([]string, error) {
	s := Spec{Subnet: subnet, Cluster: cluster, MSS: MSS(mtu)}
	var done []string
	var errs []error
	ok, err := h.tableCurrent(ctx, s)
	if err != nil {
		errs = append(errs, err)
	}
	if !ok {
		if _, err := h.run(ctx, h.Ruleset(s), "nft", "-f", "-"); err != nil {
			errs = append(errs, fmt.Errorf("writing nft table ip %s (masquerade for traffic leaving the cluster, tunnel-only guard): %w", Table, err))
		} else {
			done = append(done, "nft table ip "+Table+" written")
		}
	}
	fixed, err := h.ensureAccept(ctx, s)
	done = append(done, fixed...)
	errs = append(errs, err)
	return done, errors.Join(errs...)
}

// tableCurrent reports whether table ip drover holds exactly the rules of s.
func (h Host) tableCurrent(ctx context.Context, s Spec) (bool, error) {
	out, err := h.run(ctx, "", "nft", "-j", "list", "table", "ip", Table)
	if err != nil {
		if strings.Contains(out, "No such file or directory") {
			return false, nil
		}
		return false, fmt.Errorf("reading nft table ip %s: %w", Table, err)
	}
	got, err := ruleComments(out)
	if err != nil {
		return false, fmt.Errorf("reading nft table ip %s: %w", Table, err)
	}
	return slices.Equal(got, h.comments(s)), nil
}

// ruleComments extracts the comments of every rule from `nft -j list`
// output, in the order of the chains' names (postrouting before forward),
// then by position.
func ruleComments(js string) ([]string, error) {
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Chain   string `json:"chain"`
				Handle  int    `json:"handle"`
				Comment string `json:"comment"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		return nil, fmt.Errorf("parsing nft JSON: %w", err)
	}
	type rc struct {
		chain   string
		handle  int
		comment string
	}
	var rs []rc
	for _, e := range doc.Nftables {
		if e.Rule != nil {
			rs = append(rs, rc{e.Rule.Chain, e.Rule.Handle, e.Rule.Comment})
		}
	}
	// "postrouting" sorts after "forward"; list it first like Ruleset.
	order := map[string]int{"postrouting": 0, "forward": 1}
	sort.SliceStable(rs, func(i, j int) bool {
		oi, oki := order[rs[i].chain]
		oj, okj := order[rs[j].chain]
		if !oki {
			oi = 2
		}
		if !okj {
			oj = 2
		}
		if oi != oj {
			return oi < oj
		}
		return rs[i].handle < rs[j].handle
	})
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.comment
	}
	return out, nil
}

// ensureAccept makes DOCKER-USER exist, be jumped to from FORWARD, and hold
// the accept rules of s at its top; stale drover rules (another subnet) are
// removed.
func (h Host) ensureAccept(ctx context.Context, s Spec) ([]string, error) {
	var done []string
	if _, err := h.iptables(ctx, "-S", UserChain); err != nil {
		// Docker creates the chain when it starts with iptables on; on a
		// host where it has not (yet), drover makes it: a later dockerd
		// adopts it and keeps its rules.
		if _, err := h.iptables(ctx, "-N", UserChain); err != nil {
			return nil, fmt.Errorf("creating iptables chain %s: %w", UserChain, err)
		}
		done = append(done, "iptables chain "+UserChain+" created")
	}
	if _, err := h.iptables(ctx, "-C", "FORWARD", "-j", UserChain); err != nil {
		if _, err := h.iptables(ctx, "-I", "FORWARD", "1", "-j", UserChain); err != nil {
			return done, fmt.Errorf("jumping from FORWARD to %s: %w", UserChain, err)
		}
		done = append(done, "FORWARD jump to "+UserChain+" added")
	}
	want := h.AcceptRules(s)
	missing := false
	for _, r := range want {
		if _, err := h.iptables(ctx, append([]string{"-C", UserChain}, r...)...); err != nil {
			missing = true
		}
	}
	if !missing {
		return done, nil
	}
	// Rewrite ours: drop every drover rule, then insert the wanted ones at
	// the top (before Docker's RETURN and any operator rule).
	if err := h.deleteOurs(ctx); err != nil {
		return done, err
	}
	for i := len(want) - 1; i >= 0; i-- {
		if _, err := h.iptables(ctx, append([]string{"-I", UserChain, "1"}, want[i]...)...); err != nil {
			return done, fmt.Errorf("adding drover's accept rule to %s: %w", UserChain, err)
		}
	}
	return append(done, "iptables "+UserChain+" accept rules written"), nil
}

// deleteOurs removes every rule of DOCKER-USER whose comment starts with
// "drover:".
func (h Host) deleteOurs(ctx context.Context) error {
	out, err := h.iptables(ctx, "-S", UserChain)
	if err != nil {
		return nil // no chain, nothing of ours
	}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "-A "+UserChain+" ") || !strings.Contains(line, `--comment "drover:`) {
			continue
		}
		args, err := splitRule(strings.TrimPrefix(line, "-A "+UserChain+" "))
		if err != nil {
			return fmt.Errorf("reading %s rule %q: %w", UserChain, line, err)
		}
		if _, err := h.iptables(ctx, append([]string{"-D", UserChain}, args...)...); err != nil {
			return fmt.Errorf("removing stale drover rule from %s: %w", UserChain, err)
		}
	}
	return nil
}

// splitRule splits an `iptables -S` rule into arguments, honouring the
// double quotes iptables puts around comments.
func splitRule(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"':
			inQ, have = !inQ, true
		case ch == '\\' && inQ && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case ch == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if inQ {
		return nil, errors.New("unbalanced quotes")
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}

// Remove deletes drover's table and accept rules, if present.
func (h Host) Remove(ctx context.Context) error {
	var errs []error
	if _, err := h.run(ctx, fmt.Sprintf("table ip %[1]s {}\ndelete table ip %[1]s\n", Table), "nft", "-f", "-"); err != nil {
		errs = append(errs, fmt.Errorf("removing nft table ip %s: %w", Table, err))
	}
	errs = append(errs, h.deleteOurs(ctx))
	return errors.Join(errs...)
}

func (h Host) iptables(ctx context.Context, args ...string) (string, error) {
	return h.run(ctx, "", "iptables", append([]string{"-w", "5", "-t", "filter"}, args...)...)
}

func (h Host) run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	d := h.Timeout
	if d <= 0 {
		d = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if h.Run != nil {
		return h.Run(ctx, stdin, name, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
