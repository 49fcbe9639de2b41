//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// BenchmarkOverlayThroughput measures TCP throughput between two sandbox
// hosts, in the same run, over the same three paths (container to
// container, container to host, host to host) through drover's mesh and
// through wireguard-go configured by hand with `wg` between the same
// namespaces (a container reaches the hand-made tunnel through NAT on
// both hosts), and over the raw underlay. It prints the figures and the
// ratios drover/hand-configured and drover/underlay. Run it with
// `make bench-overlay`.
func BenchmarkOverlayThroughput(b *testing.B) {
	sb := harness.Sandbox(b, sandbox.Options{Hosts: 2, Agents: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	secs := 5
	// The hosts' input firewalls let in only drover's ports: open the
	// benchmark's own (the host-side sink, the hand-made tunnel).
	for _, o := range []struct {
		host, proto string
		port        int
	}{{"h2", "tcp", 5202}, {"h1", "udp", 51821}, {"h2", "udp", 51821}} {
		if err := sb.OpenPort(ctx, o.host, o.proto, o.port); err != nil {
			b.Fatal(err)
		}
	}

	// Drover: containers on both hosts.
	ip2 := runSink(ctx, b, sb, "h2")
	// Host-side sinks on h2 for the other paths.
	sinkCmd, err := sb.Command(ctx, "h2", "drover-demo", "sink", "-listen", ":5202")
	if err != nil {
		b.Fatal(err)
	}
	if err := sinkCmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer sinkCmd.Process.Kill()
	handConfigure(ctx, b, sb)
	_, sub2 := nodeIdentity(ctx, b, sb, "h2")
	gw2 := strings.TrimSuffix(sub2, ".0/24") + ".1"

	// A container on h1 reaching the hand-made tunnel leaves h1 from its
	// bridge address: masqueraded to wgb0's address, which is what h2's
	// wgb0 peer accepts.
	if out, err := sb.Output(ctx, "h1", "sh", "-c", `nft add table ip drvbench && nft 'add chain ip drvbench post { type nat hook postrouting priority srcnat; }' && nft add rule ip drvbench post oifname "wgb0" masquerade`); err != nil {
		b.Fatalf("nat for the hand-made tunnel: %v %s", err, out)
	}

	// And h2 forwards port 5203 of its wgb0 address to the sink container,
	// so that the hand-made tunnel also carries container→container.
	if out, err := sb.Output(ctx, "h2", "sh", "-c", `nft add table ip drvbench && nft 'add chain ip drvbench pre { type nat hook prerouting priority dstnat; }' && nft add rule ip drvbench pre iifname "wgb0" tcp dport 5203 dnat to `+ip2+`:5201`); err != nil {
		b.Fatalf("dnat for the hand-made tunnel: %v %s", err, out)
	}

	paths := []struct{ name, how string }{
		{"drover container→container", "container:" + ip2 + ":5201"},
		{"by hand container→container", "container:10.201.0.2:5203"},
		{"drover container→host", "container:" + gw2 + ":5202"},
		{"by hand container→host", "container:10.201.0.2:5202"},
		{"drover host→host (drover0)", gw2 + ":5202"},
		{"wireguard-go by hand (wg)", "10.201.0.2:5202"},
		{"raw underlay (veth)", sb.Host(2).Addr.String() + ":5202"},
	}
	results := map[string][]float64{}
	// One discarded warm-up run per path: a fresh wireguard-go needs a few
	// seconds of load before it reaches its steady rate.
	for _, p := range paths {
		blastOnce(ctx, b, sb, p.how, 3)
	}
	// Rotate the order every round so that no path always runs first.
	for round := 0; round < 4; round++ {
		for i := range paths {
			p := paths[(i+round)%len(paths)]
			results[p.name] = append(results[p.name], blastOnce(ctx, b, sb, p.how, secs))
		}
	}
	best := func(name string) float64 { // the median
		v := append([]float64(nil), results[name]...)
		sort.Float64s(v)
		return (v[(len(v)-1)/2] + v[len(v)/2]) / 2
	}
	b.Logf("TCP throughput h1 → h2, %d s per run, median of %d runs after a warm-up (Gbit/s):", secs, len(results[paths[0].name]))
	for _, p := range paths {
		b.Logf("  %-30s %7.3f   runs %v", p.name, best(p.name), results[p.name])
		b.ReportMetric(best(p.name), strings.NewReplacer(" ", "_", "→", "-", "(", "", ")", "").Replace(p.name)+"_Gbit/s")
	}
	c2c, handC2c, c2h, handC2h, h2h, hand, raw := best(paths[0].name), best(paths[1].name), best(paths[2].name),
		best(paths[3].name), best(paths[4].name), best(paths[5].name), best(paths[6].name)
	b.Logf("ratio drover/hand-configured, container → container = %.3f", c2c/handC2c)
	b.Logf("ratio drover/hand-configured, container → host      = %.3f", c2h/handC2h)
	b.Logf("ratio drover/hand-configured, host → host           = %.3f", h2h/hand)
	b.Logf("ratio drover container→container / hand host→host   = %.3f (containers add a veth, a bridge and a cgroup each side)", c2c/hand)
	b.Logf("ratio drover container→container / underlay         = %.3f", c2c/raw)
	b.ReportMetric(c2c/handC2c, "drover/hand")
	b.ReportMetric(h2h/hand, "drover/hand_host")
	b.ReportMetric(c2c/raw, "drover/underlay")
}

// runSink starts a sink container on host's drover network and returns its address.
func runSink(ctx context.Context, b testing.TB, sb *sandbox.Sandbox, host string) string {
	if _, err := sb.Docker(ctx, host, "run", "-d", "--name", "sink", "--network", "drover", "--entrypoint", "/drover-demo",
		sandbox.DemoImage, "sink", "-listen", ":5201"); err != nil {
		b.Fatal(err)
	}
	out, err := sb.Docker(ctx, host, "inspect", "-f", "{{.NetworkSettings.Networks.drover.IPAddress}}", "sink")
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimSpace(out)
}

var gbitRE = regexp.MustCompile(`gbit_per_s=([0-9.]+)`)

// blastOnce sends for secs seconds from h1 (a container when target starts
// with "container:") and returns Gbit/s.
func blastOnce(ctx context.Context, b testing.TB, sb *sandbox.Sandbox, target string, secs int) float64 {
	var out string
	var err error
	if t, ok := strings.CutPrefix(target, "container:"); ok {
		out, err = sb.Docker(ctx, "h1", "run", "--rm", "--network", "drover", sandbox.DemoImage, "blast", "-seconds", strconv.Itoa(secs), t)
	} else {
		out, err = sb.Output(ctx, "h1", "drover-demo", "blast", "-seconds", strconv.Itoa(secs), target)
	}
	if err != nil {
		b.Fatalf("blast %s: %v %s", target, err, out)
	}
	m := gbitRE.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("blast %s: no figure in %q", target, out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// handConfigure starts a second wireguard-go (the same engine drover
// embeds, launched the same way: its own session) on h1 and h2 as
// interface wgb0 and configures it with wg and ip only, the way an
// operator would by hand: 10.201.0.1 ↔ 10.201.0.2 on UDP port 51821.
func handConfigure(ctx context.Context, b testing.TB, sb *sandbox.Sandbox) {
	keys := map[string][2]string{}
	for _, h := range []string{"h1", "h2"} {
		priv, err := exec.Command("wg", "genkey").Output()
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command("wg", "pubkey")
		cmd.Stdin = strings.NewReader(string(priv))
		pub, err := cmd.Output()
		if err != nil {
			b.Fatal(err)
		}
		keys[h] = [2]string{strings.TrimSpace(string(priv)), strings.TrimSpace(string(pub))}
		wgp, err := sb.Command(ctx, h, "drover", "wg-userspace", "--interface", "wgb0", "--mtu", "1420")
		if err != nil {
			b.Fatal(err)
		}
		// In its own session, as wireguard-go puts itself when it
		// daemonizes (its default) and as drover starts its engine. With
		// the kernel's scheduler autogroups (on here) a session is a
		// scheduling group: an engine left in the benchmark's own session
		// would share CPU per thread with the load generators instead of
		// per group, which measured ~20 % faster for either engine.
		wgp.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := wgp.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = wgp.Process.Kill(); _ = wgp.Wait() })
	}
	for i, h := range []string{"h1", "h2"} {
		peer := map[string]string{"h1": "h2", "h2": "h1"}[h]
		peerAddr := sb.Host(2 - i).Addr.String()
		harness.Eventually(b, 10*time.Second, "wgb0 on "+h, func() error {
			_, err := sb.Output(ctx, h, "wg", "show", "wgb0")
			return err
		})
		script := fmt.Sprintf(`set -e
printf '%%s' %q > /tmp/wgb0-%s.key
wg set wgb0 listen-port 51821 private-key /tmp/wgb0-%s.key peer %s allowed-ips 10.201.0.%d/32 endpoint %s:51821
rm -f /tmp/wgb0-%s.key
ip addr add 10.201.0.%d/24 dev wgb0
ip link set wgb0 up`, keys[h][0], h, h, keys[peer][1], 2-i, peerAddr, h, i+1)
		if out, err := sb.Output(ctx, h, "sh", "-c", script); err != nil {
			b.Fatalf("configuring wgb0 on %s by hand: %v %s", h, err, out)
		}
	}
}
