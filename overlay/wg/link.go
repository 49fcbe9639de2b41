package wg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Modes of the WireGuard implementation.
const (
	ModeAuto      = "auto"
	ModeKernel    = "kernel"
	ModeUserspace = "userspace"
)

// Options configures a Link.
type Options struct {
	Name    string // interface name, e.g. drover0
	Mode    string // auto, kernel or userspace
	MTU     int
	Exe     string // the drover binary, started as `Exe wg-userspace …`
	DataDir string // log and pid file of the userspace process
	Log     *slog.Logger
}

// Link owns one WireGuard interface and a wgctrl client. Device and
// ConfigureDevice make it satisfy the overlay's WG interface. It is safe for
// use by one reconcile loop at a time.
type Link struct {
	opt    Options
	client *wgctrl.Client
	used   string // mode in use: kernel or userspace
}

// New returns a Link; it changes nothing yet.
func New(opt Options) (*Link, error) {
	switch opt.Mode {
	case ModeAuto, ModeKernel, ModeUserspace:
	default:
		return nil, fmt.Errorf("wg mode %q: want auto, kernel or userspace", opt.Mode)
	}
	c, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("opening wgctrl: %w", err)
	}
	return &Link{opt: opt, client: c}, nil
}

// Close releases the wgctrl client; the interface stays.
func (l *Link) Close() error { return l.client.Close() }

// SetMTU changes the MTU the interface is given: the next Ensure sets it
// on the running device (kernel or wireguard-go alike, through netlink), and
// a recreated wireguard-go starts with it.
func (l *Link) SetMTU(mtu int) { l.opt.MTU = mtu }

// Mode returns the implementation in use ("" before Ensure).
func (l *Link) Mode() string { return l.used }

// Device returns the device's current state.
func (l *Link) Device(name string) (*wgtypes.Device, error) { return l.client.Device(name) }

// ConfigureDevice applies a delta to the device.
func (l *Link) ConfigureDevice(name string, cfg wgtypes.Config) error {
	return l.client.ConfigureDevice(name, cfg)
}

// Ensure makes the interface exist, up, with its MTU. An existing interface
// (kernel, or a TUN device whose wireguard-go process survived an agent
// restart) is adopted untouched. It is idempotent.
func (l *Link) Ensure(ctx context.Context) error {
	name := l.opt.Name
	link, err := netlink.LinkByName(name)
	if err == nil {
		if _, derr := l.client.Device(name); derr == nil {
			l.used = map[bool]string{true: ModeKernel, false: ModeUserspace}[link.Type() == "wireguard"]
			return l.up(link)
		}
		if link.Type() != "wireguard" {
			// A TUN device without a wireguard-go behind it: stale.
			return fmt.Errorf("interface %s exists (%s) but no WireGuard answers on it; remove it or choose another --interface", name, link.Type())
		}
	}
	if l.opt.Mode != ModeUserspace && err != nil {
		werr := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: l.opt.MTU}})
		if werr == nil {
			l.used = ModeKernel
			l.opt.Log.Info("created kernel WireGuard interface", "interface", name)
			link, err = netlink.LinkByName(name)
			if err != nil {
				return fmt.Errorf("finding %s: %w", name, err)
			}
			return l.up(link)
		}
		if l.opt.Mode == ModeKernel {
			return fmt.Errorf("creating kernel WireGuard interface %s: %w (try --wg-mode userspace)", name, werr)
		}
		l.opt.Log.Info("kernel WireGuard unavailable; using embedded wireguard-go", "interface", name, "reason", werr.Error())
	}
	if err := l.startUserspace(ctx); err != nil {
		return err
	}
	l.used = ModeUserspace
	link, err = netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s after starting wireguard-go: %w", name, err)
	}
	return l.up(link)
}

func (l *Link) up(link netlink.Link) error {
	if l.opt.MTU > 0 && link.Attrs().MTU != l.opt.MTU {
		if err := netlink.LinkSetMTU(link, l.opt.MTU); err != nil {
			return fmt.Errorf("setting MTU %d on %s: %w", l.opt.MTU, l.opt.Name, err)
		}
	}
	if link.Attrs().Flags&1 == 0 { // net.FlagUp
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("setting %s up: %w", l.opt.Name, err)
		}
	}
	return nil
}

func (l *Link) pidFile() string { return filepath.Join(l.opt.DataDir, "wg-"+l.opt.Name+".pid") }

// startUserspace starts `drover wg-userspace` in its own session, so that it
// outlives the agent, and waits until its UAPI socket answers.
func (l *Link) startUserspace(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(l.opt.DataDir, "wg-"+l.opt.Name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("starting wireguard-go: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(l.opt.Exe, "wg-userspace", "--interface", l.opt.Name, "--mtu", strconv.Itoa(l.opt.MTU))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting wireguard-go (%s wg-userspace): %w", l.opt.Exe, err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it dies while we live
	_ = os.WriteFile(l.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := l.client.Device(l.opt.Name); err == nil {
			l.opt.Log.Info("started embedded wireguard-go", "interface", l.opt.Name, "pid", cmd.Process.Pid)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wireguard-go for %s did not come up within 10s (see %s)", l.opt.Name, logf.Name())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Remove deletes the interface: a kernel link is deleted, a wireguard-go
// process is stopped (which removes its TUN device).
func (l *Link) Remove() error {
	link, err := netlink.LinkByName(l.opt.Name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("finding %s: %w", l.opt.Name, err)
	}
	if link.Type() == "wireguard" {
		return netlink.LinkDel(link)
	}
	if b, err := os.ReadFile(l.pidFile()); err == nil {
		if pid, err := strconv.Atoi(string(trimNL(b))); err == nil && pid > 1 {
			cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if containsWG(cl) {
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	}
	for i := 0; i < 50; i++ {
		if _, err := netlink.LinkByName(l.opt.Name); err != nil {
			os.Remove(l.pidFile())
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("deleting %s: %w", l.opt.Name, err)
	}
	return nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

func containsWG(cmdline []byte) bool { return bytes.Contains(cmdline, []byte("wg-userspace")) }
