package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/drover-net/drover/healthcheck"
)

// The ports docs/security.md lists as the ones drover's hosts must let in;
// the sandbox's input firewall lets in exactly these, so every test proves
// the list is complete.
const (
	PortWireGuard  = 51820 // UDP, underlay: the mesh (drover --listen-port)
	PortSerfLAN    = 8301  // TCP+UDP: Consul gossip between agents
	PortServerRPC  = 8300  // TCP, servers only: Consul RPC from client agents
	PortConsulHTTP = 8501  // TCP, servers only: Consul's HTTPS API and UI for operators
)

// LBPorts are the frontend ports an lb host lets in (the lb's http port
// and the HTTPS one).
var LBPorts = []int{80, 443}

// inputTable is the nftables table of a namespace's input firewall. It is
// the sandbox's (standing for the operator's own firewall), not drover's.
func (s *Sandbox) inputTable() string { return s.opt.Prefix + "_input" }

// inputRules is the nft script of a host's (or server's) input firewall:
// policy drop; loopback, replies, ICMP and the listed ports accepted.
func (s *Sandbox) inputRules(server, lb bool) string {
	var allow []string
	if server {
		allow = append(allow,
			fmt.Sprintf(`tcp dport %d accept comment "Consul server RPC"`, PortServerRPC),
			fmt.Sprintf(`tcp dport %d accept comment "Consul HTTPS API and UI"`, PortConsulHTTP))
	} else {
		allow = append(allow,
			fmt.Sprintf(`udp dport %d accept comment "WireGuard"`, PortWireGuard),
			fmt.Sprintf(`iifname "drover0" ip saddr 10.42.0.0/16 tcp dport %d accept comment "drover mesh self-check, through the tunnel only"`, healthcheck.MeshPort),
			fmt.Sprintf(`iifname { "drover-br", "docker0" } ip daddr %s meta l4proto { tcp, udp } th dport 53 accept comment "drover DNS, from containers only"`, DNSAddr))
	}
	allow = append(allow, fmt.Sprintf(`meta l4proto { tcp, udp } th dport %d accept comment "Consul serf LAN"`, PortSerfLAN))
	if lb {
		var ps []string
		for _, p := range LBPorts {
			ps = append(ps, fmt.Sprint(p))
		}
		allow = append(allow, fmt.Sprintf(`tcp dport { %s } accept comment "lb frontends"`, strings.Join(ps, ", ")))
	}
	return fmt.Sprintf(`table inet %[1]s {}
flush table inet %[1]s
table inet %[1]s {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
		ct state invalid drop
		meta l4proto { icmp, ipv6-icmp } accept
		%[2]s
	}
}
`, s.inputTable(), strings.Join(allow, "\n\t\t"))
}

// firewallNS installs the input firewall of namespace ns and, on hosts, the
// FORWARD policy DROP that dockerd sets when it turns forwarding on itself
// (set here too, before dockerd starts, so that a host never forwards
// freely in between).
func (s *Sandbox) firewallNS(ctx context.Context, ns string, server, lb bool) error {
	if _, err := runStdin(ctx, s.inputRules(server, lb), "nsenter", append(nsArgs(ns, ""), "nft", "-f", "-")...); err != nil {
		return fmt.Errorf("installing the input firewall of %s: %w", ns, err)
	}
	if server {
		return nil
	}
	if _, err := run(ctx, "nsenter", append(nsArgs(ns, ""), "iptables", "-w", "5", "-P", "FORWARD", "DROP")...); err != nil {
		return fmt.Errorf("setting FORWARD policy DROP in %s: %w", ns, err)
	}
	return nil
}

// OpenPort lets proto (tcp or udp) port in on host (or server) name, for a
// benchmark's own listener. Tests of drover itself never need it.
func (s *Sandbox) OpenPort(ctx context.Context, name, proto string, port int) error {
	ns := s.opt.Prefix + "-" + name
	rule := fmt.Sprintf("add rule inet %s input %s dport %d accept comment \"opened by a test\"\n", s.inputTable(), proto, port)
	if _, err := runStdin(ctx, rule, "nsenter", append(nsArgs(ns, ""), "nft", "-f", "-")...); err != nil {
		return fmt.Errorf("opening %s/%d on %s: %w", proto, port, name, err)
	}
	return nil
}

// runStdin is run with stdin.
func runStdin(ctx context.Context, stdin, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
