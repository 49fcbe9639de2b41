//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// TestHostState runs drover on hosts as Docker leaves them (FORWARD policy
// DROP, Docker's chains, an input firewall that lets in only the documented
// ports) and removes what drover put there behind its back: `nft flush
// ruleset`, a dockerd restart, `docker network rm`. Each repair is timed.
func TestHostState(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvf", Hosts: 2, Agents: true})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ip2 := runOnMesh(ctx, t, sb, "h2", "web", "fw-h2")
	url2 := "http://" + ip2 + ":8080/"

	crossHost := func() error {
		out, err := sb.Docker(ctx, "h1", "run", "--rm", "--network", "drover", sandbox.DemoImage, "get", "-timeout", "1s", url2+"cross")
		if err == nil && !strings.Contains(out, "fw-h2") {
			err = fmt.Errorf("reply %q lacks h2's marker", out)
		}
		return err
	}
	// Outside the cluster: a listener on the Consul server's underlay
	// address, which has no route back to container subnets, so only a
	// masqueraded request is answered.
	sv := sb.Server(1)
	if err := sb.OpenPort(ctx, sv.Name, "tcp", 8090); err != nil {
		t.Fatal(err)
	}
	outside := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+sv.NetNS, "--",
		filepath.Join(harness.BinDir(t), "drover-demo"), "serve", "-listen", sv.Addr.String()+":8090", "-marker", "outside")
	if err := outside.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = outside.Process.Kill(); _ = outside.Wait() })
	egress := func() error {
		out, err := sb.Docker(ctx, "h1", "run", "--rm", "--network", "drover", sandbox.DemoImage, "get", "-timeout", "1s",
			"http://"+sv.Addr.String()+":8090/egress")
		if err == nil && !strings.Contains(out, "outside") {
			err = fmt.Errorf("reply %q lacks the marker", out)
		}
		return err
	}

	t.Run("hosts are stock Docker hosts", func(t *testing.T) {
		for _, h := range sb.Hosts() {
			out, err := sb.Output(ctx, h.Name, "iptables", "-S", "FORWARD")
			if err != nil || !strings.Contains(out, "-P FORWARD DROP") || !strings.Contains(out, "-j DOCKER-ISOLATION-STAGE-1") ||
				!strings.Contains(out, "-j DOCKER-USER") {
				t.Errorf("%s FORWARD chain is not Docker's with policy DROP: %v\n%s", h.Name, err, out)
			}
			out, err = sb.Output(ctx, h.Name, "nft", "list", "chain", "inet", "drvf"+os.Getenv("DROVER_E2E_PREFIX_SUFFIX")+"_input", "input")
			if err != nil || !strings.Contains(out, "policy drop") {
				t.Errorf("%s has no input firewall: %v\n%s", h.Name, err, out)
			}
		}
	})

	t.Run("cross-host, host-to-container, published ports and egress pass", func(t *testing.T) {
		harness.Eventually(t, 10*time.Second, "h1 container → h2 container", crossHost)
		if out, err := sb.Output(ctx, "h1", "drover-demo", "get", "-timeout", "2s", url2+"from-host"); err != nil || !strings.Contains(out, "fw-h2") {
			t.Errorf("h1 host → h2 container: %q, %v", out, err)
		}
		if _, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "pub", "-p", "8088:8080", "-e", "DEMO_MARKER=published", sandbox.DemoImage); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 10*time.Second, "h1 → h2's published port", func() error {
			out, err := sb.Output(ctx, "h1", "drover-demo", "get", "-timeout", "1s", "http://"+sb.Host(2).Addr.String()+":8088/")
			if err == nil && !strings.Contains(out, "published") {
				err = fmt.Errorf("reply %q", out)
			}
			return err
		})
		harness.Eventually(t, 10*time.Second, "h1 container → outside the cluster", egress)
	})

	t.Run("the underlay cannot reach container addresses without the tunnel", func(t *testing.T) {
		// The Consul server's namespace is on the underlay but not in the
		// mesh: give it a route to h2's subnet via h2's underlay address.
		ns := "--net=/run/netns/" + sv.NetNS
		if out, err := exec.CommandContext(ctx, "nsenter", ns, "--", "ip", "route", "replace", subnetOf(ip2), "via", sb.Host(2).Addr.String()).CombinedOutput(); err != nil {
			t.Fatalf("route on %s: %v %s", sv.Name, err, out)
		}
		direct := func() error {
			out, err := exec.CommandContext(ctx, "nsenter", ns, "--", filepath.Join(harness.BinDir(t), "drover-demo"), "get", "-timeout", "1s", url2+"direct").CombinedOutput()
			if err == nil {
				return fmt.Errorf("a packet from the underlay reached %s without the tunnel: %s", ip2, out)
			}
			return nil
		}
		if err := direct(); err != nil {
			t.Error(err)
		}
		// Even with Docker's FORWARD policy opened, drover's own guard drops it.
		if _, err := sb.Output(ctx, "h2", "iptables", "-P", "FORWARD", "ACCEPT"); err != nil {
			t.Fatal(err)
		}
		if err := direct(); err != nil {
			t.Errorf("with FORWARD policy ACCEPT: %v", err)
		}
		if _, err := sb.Output(ctx, "h2", "iptables", "-P", "FORWARD", "DROP"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("docker network rm is repaired", func(t *testing.T) {
		// Only a network no container uses can be removed. (Before the
		// nft flush below: Docker itself cannot create networks on a host
		// whose nat chains were flushed until dockerd restarts.)
		if _, err := sb.Docker(ctx, "h1", "network", "rm", "drover"); err != nil {
			t.Fatal(err)
		}
		removed := time.Now()
		harness.Eventually(t, 5*time.Second, "the drover network back on h1", func() error {
			out, err := sb.Docker(ctx, "h1", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "drover")
			if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "10.42.") {
				return fmt.Errorf("network: %q %v", out, err)
			}
			return nil
		})
		back := time.Since(removed)
		harness.Eventually(t, 5*time.Second, "cross-host after docker network rm", crossHost)
		t.Logf("docker network rm drover on h1: network back in %s, cross-host traffic in %s", back.Round(time.Millisecond), time.Since(removed).Round(time.Millisecond))
		assertRepairLogged(t, sb, "h1", "container network created")
	})

	t.Run("nft flush ruleset is repaired", func(t *testing.T) {
		if _, err := sb.Output(ctx, "h1", "nft", "flush", "ruleset"); err != nil {
			t.Fatal(err)
		}
		flushed := time.Now()
		harness.Eventually(t, 5*time.Second, "container egress after nft flush ruleset", egress)
		egressBack := time.Since(flushed)
		harness.Eventually(t, 5*time.Second, "drover's table and DOCKER-USER rules back", func() error {
			return drOverRules(ctx, sb, "h1")
		})
		rulesBack := time.Since(flushed)
		harness.Eventually(t, 5*time.Second, "cross-host after nft flush ruleset", crossHost)
		t.Logf("nft flush ruleset on h1: container egress back in %s, drover's rules in %s, cross-host traffic in %s",
			egressBack.Round(time.Millisecond), rulesBack.Round(time.Millisecond), time.Since(flushed).Round(time.Millisecond))
		assertRepairLogged(t, sb, "h1", "nft table ip drover written")
	})

	t.Run("dockerd restart keeps traffic and rules", func(t *testing.T) {
		if _, err := sb.Kill("h2", sandbox.ProcDockerd); err != nil {
			t.Fatal(err)
		}
		if err := sb.Start(ctx, "h2", sandbox.ProcDockerd); err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		harness.Eventually(t, 20*time.Second, "Docker's chains back on h2", func() error {
			out, err := sb.Output(ctx, "h2", "iptables", "-S", "FORWARD")
			if err != nil || !strings.Contains(out, "DOCKER-ISOLATION-STAGE-1") {
				return fmt.Errorf("no Docker chains yet: %v", err)
			}
			return nil
		})
		docker := time.Since(started)
		harness.Eventually(t, 5*time.Second, "drover's rules on h2", func() error { return drOverRules(ctx, sb, "h2") })
		ours := time.Since(started)
		// A killed dockerd takes its containers with it (the sandbox resets
		// them as a reboot would): start the web container again.
		_, _ = sb.Docker(ctx, "h2", "rm", "-f", "web", "pub")
		ip := runOnMesh(ctx, t, sb, "h2", "web", "fw-h2")
		url2 = "http://" + ip + ":8080/"
		harness.Eventually(t, 5*time.Second, "cross-host after dockerd restart", crossHost)
		t.Logf("dockerd restarted on h2: Docker's chains %s after start, drover's rules present %s after start (%s after Docker's)",
			docker.Round(time.Millisecond), ours.Round(time.Millisecond), (ours - docker).Round(time.Millisecond))
	})

	t.Run("status shows the repairs", func(t *testing.T) {
		out, err := sb.Output(ctx, "h1", "drover", "status", "--json")
		if err != nil || !strings.Contains(out, `"repairs": `) || strings.Contains(out, `"repairs": 0`) {
			t.Errorf("status lacks host repairs: %v\n%s", err, out)
		}
	})
}

// drOverRules checks that host's nft table ip drover and both DOCKER-USER
// accept rules are present.
func drOverRules(ctx context.Context, sb *sandbox.Sandbox, host string) error {
	out, err := sb.Output(ctx, host, "nft", "list", "table", "ip", "drover")
	if err != nil || !strings.Contains(out, "masquerade") || !strings.Contains(out, "drop") {
		return fmt.Errorf("nft table ip drover: %v %q", err, out)
	}
	out, err = sb.Output(ctx, host, "iptables", "-S", "DOCKER-USER")
	if err != nil || strings.Count(out, `--comment "drover:`) != 2 {
		return fmt.Errorf("DOCKER-USER: %v %q", err, out)
	}
	return nil
}

func assertRepairLogged(t *testing.T, sb *sandbox.Sandbox, host, what string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sb.Host(hostIndex(host)).Dir, "agent.log"))
	if err != nil || !strings.Contains(string(b), what) {
		t.Errorf("%s's agent log does not say %q was repaired (%v)", host, what, err)
	}
}

func hostIndex(name string) int {
	var i int
	fmt.Sscanf(name, "h%d", &i)
	return i
}

// subnetOf is the /24 of an overlay address.
func subnetOf(ip string) string {
	return ip[:strings.LastIndex(ip, ".")] + ".0/24"
}
