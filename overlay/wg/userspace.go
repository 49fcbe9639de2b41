package wg

import (
	"context"
	"fmt"
	"log/slog"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

// RunUserspace runs the embedded wireguard-go for interface name until ctx
// ends or the device fails: it creates the TUN device (with the newest
// wireguard-go's TUN offloads) and serves the UAPI socket in
// /var/run/wireguard, through which wgctrl configures it exactly as it
// would a kernel device. It is the body of the `drover wg-userspace`
// process, which the agent starts and which outlives the agent.
func RunUserspace(ctx context.Context, name string, mtu int, log *slog.Logger) error {
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return fmt.Errorf("creating TUN device %s: %w", name, err)
	}
	logger := &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf:   func(format string, a ...any) { log.Error(fmt.Sprintf(format, a...), "interface", name) },
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), logger)
	file, err := ipc.UAPIOpen(name)
	if err != nil {
		dev.Close()
		return fmt.Errorf("opening UAPI socket of %s: %w", name, err)
	}
	uapi, err := ipc.UAPIListen(name, file)
	if err != nil {
		dev.Close()
		return fmt.Errorf("listening on UAPI socket of %s: %w", name, err)
	}
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	log.Info("wireguard-go running", "interface", name, "mtu", mtu)
	select {
	case <-ctx.Done():
	case <-dev.Wait():
	}
	uapi.Close()
	dev.Close()
	log.Info("wireguard-go stopped", "interface", name)
	return nil
}
