// Package nat is the overlay's nftables adapter: one table, "ip drover",
// that masquerades container traffic leaving the cluster (and only that:
// traffic to other hosts' subnets keeps its container source address). It
// is written as one nft transaction, so it is replaced atomically and
// applying it twice is harmless. It knows nothing of peers.
package nat

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// Table is the nftables table drover owns.
const Table = "drover"

// Masquerade manages the table for one container bridge.
type Masquerade struct {
	Bridge string // the container bridge's Linux name
}

// Ruleset returns the nft script for subnet inside cluster. It is pure.
func (m Masquerade) Ruleset(subnet, cluster netip.Prefix) string {
	return fmt.Sprintf(`table ip %[1]s {}
flush table ip %[1]s
table ip %[1]s {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[2]s ip daddr != %[3]s oifname != "%[4]s" masquerade comment "drover: containers leaving the cluster"
	}
}
`, Table, subnet.Masked(), cluster.Masked(), m.Bridge)
}

// Ensure installs the table (replacing any older version of it).
func (m Masquerade) Ensure(ctx context.Context, subnet, cluster netip.Prefix) error {
	return nft(ctx, m.Ruleset(subnet, cluster))
}

// Remove deletes the table if it exists.
func (m Masquerade) Remove(ctx context.Context) error {
	return nft(ctx, fmt.Sprintf("table ip %[1]s {}\ndelete table ip %[1]s\n", Table))
}

func nft(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft (masquerade for traffic leaving the cluster): %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}
