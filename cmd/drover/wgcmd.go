package main

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/drover-net/drover/overlay/wg"
)

// wgUserspace is the hidden `drover wg-userspace` process the agent starts
// when the kernel has no WireGuard: it owns the TUN device and the UAPI
// socket and outlives the agent, so agent restarts never cut tunnels.
func (c *cli) wgUserspace(args []string) int {
	fs := c.flagSet("wg-userspace", "drover wg-userspace --interface NAME [--mtu N]\n\nRuns the embedded wireguard-go for one interface (started by the agent;\nconfigured through its UAPI socket, never through arguments).")
	name := fs.String("interface", "drover0", "interface name")
	mtu := fs.Int("mtu", 1420, "MTU")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	// SIGINT/SIGTERM stop it (drover leave); SIGHUP from a closed terminal does not.
	signal.Ignore(syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := wg.RunUserspace(ctx, *name, *mtu, newLogger(c.stderr, "text", "info")); err != nil {
		return c.fail("%v", err)
	}
	return 0
}
