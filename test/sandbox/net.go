package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const switchBridge = "br0"

// netnsList returns the names of every network namespace under /run/netns
// that carries this sandbox's prefix.
func (s *Sandbox) netnsList() []string {
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), s.opt.Prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// buildSwitch creates the switch namespace and its bridge.
func (s *Sandbox) buildSwitch(ctx context.Context) error {
	sw := s.SwitchNS()
	steps := [][]string{
		{"netns", "add", sw},
		{"-n", sw, "link", "set", "lo", "up"},
		{"-n", sw, "link", "add", switchBridge, "type", "bridge"},
		{"-n", sw, "link", "set", switchBridge, "up"},
	}
	for _, st := range steps {
		if _, err := run(ctx, "ip", st...); err != nil {
			return fmt.Errorf("building the underlay switch: %w", err)
		}
	}
	return nil
}

// attach creates namespace ns and wires its eth0 to the switch through a
// veth pair whose switch end is called port. The pair is created directly
// inside the two namespaces: nothing ever appears in the root namespace.
func (s *Sandbox) attach(ctx context.Context, ns, port string, addr string) error {
	sw := s.SwitchNS()
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", sw},
		{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", sw, "link", "set", port, "master", switchBridge},
		{"-n", sw, "link", "set", port, "up"},
	}
	for _, st := range steps {
		if _, err := run(ctx, "ip", st...); err != nil {
			return fmt.Errorf("attaching %s to the underlay: %w", ns, err)
		}
	}
	// Forwarding stays off: dockerd turns it on, and then sets the FORWARD
	// policy to DROP, as it does on a fresh host.
	return nil
}

// mountRoot is the private bind mount under which host mount namespaces are
// pinned (the same trick `ip netns` uses for /run/netns).
func (s *Sandbox) mountRoot() string { return filepath.Join(s.opt.RunDir, "mnt") }

// buildMountNS gives host h a persistent private mount namespace in which
// /run/wireguard is the host's own directory, so that every host can have a
// WireGuard UAPI socket called drover0.sock.
func (s *Sandbox) buildMountNS(ctx context.Context, h Host) error {
	root := s.mountRoot()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", root, err)
	}
	if !isMountPoint(root) {
		if _, err := run(ctx, "mount", "--bind", root, root); err != nil {
			return fmt.Errorf("pinning mount namespaces: %w", err)
		}
		if _, err := run(ctx, "mount", "--make-private", root); err != nil {
			return fmt.Errorf("pinning mount namespaces: %w", err)
		}
	}
	wg := filepath.Join(h.Run, "wireguard")
	for _, d := range []string{wg, "/run/wireguard"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if err := os.WriteFile(h.MountNS, nil, 0o644); err != nil {
		return fmt.Errorf("creating %s: %w", h.MountNS, err)
	}
	_, err := run(ctx, "unshare", "--mount="+h.MountNS, "--propagation", "slave",
		"mount", "--bind", wg, "/run/wireguard")
	if err != nil {
		return fmt.Errorf("creating the mount namespace of %s: %w", h.Name, err)
	}
	return nil
}

// isMountPoint reports whether path is listed as a mount point of the
// caller's mount namespace.
func isMountPoint(path string) bool {
	for _, m := range mountPoints() {
		if m == path {
			return true
		}
	}
	return false
}

// mountPoints lists the mount points of the caller's mount namespace.
func mountPoints() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// Partition cuts host name off the underlay: its switch port leaves the
// bridge, so packets vanish while every link stays up (as in a real network
// partition).
func (s *Sandbox) Partition(ctx context.Context, name string) error {
	h, err := s.HostByName(name)
	if err != nil {
		return err
	}
	if _, err := run(ctx, "ip", "-n", s.SwitchNS(), "link", "set", h.Name, "nomaster"); err != nil {
		return fmt.Errorf("partitioning %s: %w", name, err)
	}
	return nil
}

// Heal puts a partitioned host back on the underlay.
func (s *Sandbox) Heal(ctx context.Context, name string) error {
	h, err := s.HostByName(name)
	if err != nil {
		return err
	}
	if _, err := run(ctx, "ip", "-n", s.SwitchNS(), "link", "set", h.Name, "master", switchBridge); err != nil {
		return fmt.Errorf("healing %s: %w", name, err)
	}
	return nil
}

// Partitioned reports whether host name is cut off the underlay.
func (s *Sandbox) Partitioned(ctx context.Context, name string) (bool, error) {
	h, err := s.HostByName(name)
	if err != nil {
		return false, err
	}
	out, err := run(ctx, "ip", "-n", s.SwitchNS(), "-o", "link", "show", h.Name)
	if err != nil {
		return false, err
	}
	return !strings.Contains(out, "master "+switchBridge), nil
}
