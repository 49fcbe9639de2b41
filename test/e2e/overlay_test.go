//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// TestOverlay proves the mesh end to end with real Consul, dockerd and
// wireguard-go: cross-host container traffic, encryption on the underlay,
// agent kill -9 during a transfer, partitions, forged records, and a host
// that joins and leaves.
func TestOverlay(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Hosts: 3, Agents: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	ips := map[string]string{}
	for _, h := range sb.Hosts() {
		ips[h.Name] = runOnMesh(ctx, t, sb, h.Name, "web", "secret-"+h.Name)
	}

	t.Run("containers reach each other across hosts", func(t *testing.T) {
		for _, from := range sb.Hosts() {
			for _, to := range sb.Hosts() {
				if from.Name == to.Name {
					continue
				}
				url := "http://" + ips[to.Name] + ":8080/from-" + from.Name
				harness.Eventually(t, 10*time.Second, from.Name+" container → "+to.Name+" container", func() error {
					out, err := sb.Docker(ctx, from.Name, "run", "--rm", "--network", "drover", sandbox.DemoImage, "get", "-timeout", "2s", url)
					if err != nil {
						return err
					}
					if !strings.Contains(out, "marker=secret-"+to.Name) {
						return fmt.Errorf("reply %q lacks marker of %s", out, to.Name)
					}
					return nil
				})
				// Host to container.
				if out, err := sb.Output(ctx, from.Name, "drover-demo", "get", url); err != nil || !strings.Contains(out, "secret-"+to.Name) {
					t.Errorf("host %s → container on %s: %q, %v", from.Name, to.Name, out, err)
				}
			}
		}
	})

	t.Run("containers reach outside the cluster, masqueraded", func(t *testing.T) {
		// The Consul server's API on the underlay is outside the cluster
		// CIDR and has no route back to container subnets: only a
		// masqueraded request gets an answer.
		// Consul answers only over HTTPS: the container gets the sandbox CA.
		out, err := sb.Docker(ctx, "h1", "run", "--rm", "--network", "drover", "-v", sb.CAFile()+":/ca.pem:ro", "-e", "SSL_CERT_FILE=/ca.pem", sandbox.DemoImage,
			"get", "-timeout", "3s", "https://"+sb.Server(1).Addr.String()+":8501/v1/status/leader")
		if err != nil || !strings.Contains(out, sb.Server(1).Addr.String()) {
			t.Errorf("container → outside: %q, %v", out, err)
		}
		rules, err := sb.Output(ctx, "h1", "nft", "list", "table", "ip", "drover")
		if err != nil || !strings.Contains(rules, "ip daddr != 10.42.0.0/16") {
			t.Errorf("drover's nft table: %q, %v", rules, err)
		}
	})

	t.Run("status and metrics match the mesh", func(t *testing.T) {
		harness.Eventually(t, 10*time.Second, "every peer reachable in status and metrics", func() error {
			for _, h := range sb.Hosts() {
				m, err := sb.Output(ctx, h.Name, "curl", "-sf", "http://127.0.0.1:9714/metrics")
				if err != nil {
					return err
				}
				if !strings.Contains(m, "drover_overlay_peers 2\n") {
					return fmt.Errorf("%s: %s", h.Name, grepLines(m, "drover_overlay_peers"))
				}
				st := status(ctx, t, sb, h.Name)
				if len(st.Overlay.Peers) != 2 {
					return fmt.Errorf("%s status lists %d peers", h.Name, len(st.Overlay.Peers))
				}
				for _, o := range sb.Hosts() {
					if o.Name == h.Name {
						continue
					}
					for _, want := range []string{
						`drover_mesh_probe_reachable{peer="` + o.Name + `"} 1`,
						`drover_overlay_peer_reachable{peer="` + o.Name + `"} 1`,
					} {
						if !strings.Contains(m, want) {
							return fmt.Errorf("%s /metrics lacks %s", h.Name, want)
						}
					}
				}
				if out, err := sb.Output(ctx, h.Name, "curl", "-sf", "http://127.0.0.1:9714/readyz"); err != nil || !strings.Contains(out, "ready") {
					return fmt.Errorf("%s /readyz: %q %v", h.Name, out, err)
				}
			}
			return nil
		})
	})

	t.Run("underlay carries only WireGuard", func(t *testing.T) {
		pcap := filepath.Join(t.TempDir(), "underlay.pcap")
		// Consul's own gossip and RPC also cross the underlay; everything
		// else must be WireGuard UDP between the hosts.
		cap := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+sb.SwitchNS(), "--",
			"tcpdump", "-i", "br0", "-U", "-s", "0", "-w", pcap, "not port 8300 and not port 8301 and not port 8302 and not arp")
		stderr, _ := cap.StderrPipe()
		if err := cap.Start(); err != nil {
			t.Fatal(err)
		}
		listening := make(chan struct{})
		go func() {
			buf := make([]byte, 4096)
			var seen string
			for {
				n, err := stderr.Read(buf)
				seen += string(buf[:n])
				if strings.Contains(seen, "listening on") {
					close(listening)
					io.Copy(io.Discard, stderr)
					return
				}
				if err != nil {
					return
				}
			}
		}()
		select {
		case <-listening:
		case <-time.After(10 * time.Second):
			t.Fatal("tcpdump did not start listening")
		}
		out, err := sb.Output(ctx, "h1", "drover-demo", "get", "http://"+ips["h2"]+":8080/secret-path")
		if err != nil || !strings.Contains(out, "secret-h2") {
			t.Fatalf("request through the mesh: %q, %v", out, err)
		}
		harness.Eventually(t, 5*time.Second, "packets captured", func() error {
			if fi, err := os.Stat(pcap); err != nil || fi.Size() <= 24 {
				return fmt.Errorf("capture still empty")
			}
			return nil
		})
		_ = cap.Process.Signal(os.Interrupt)
		_ = cap.Wait()
		raw, err := os.ReadFile(pcap)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "secret-h2") || strings.Contains(string(raw), "secret-path") {
			t.Errorf("the response marker or request path crossed the underlay in clear text")
		}
		list, err := exec.Command("tcpdump", "-nn", "-r", pcap).CombinedOutput()
		if err != nil {
			t.Fatalf("reading capture: %v: %s", err, list)
		}
		n := 0
		for _, line := range strings.Split(string(list), "\n") {
			if !strings.Contains(line, " IP ") {
				continue
			}
			n++
			if !strings.Contains(line, ".51820 > ") || !strings.Contains(line, ".51820: UDP") {
				t.Errorf("non-WireGuard packet on the underlay: %s", line)
			}
		}
		if n == 0 {
			t.Errorf("captured no WireGuard packets at all:\n%s", list)
		}
		t.Logf("underlay capture: %d packets, all WireGuard UDP 51820", n)
	})

	t.Run("kill -9 of the agent does not cut a transfer or touch peers", func(t *testing.T) {
		before := handshakes(ctx, t, sb, "h1")
		key1, sub1 := nodeIdentity(ctx, t, sb, "h1")
		done := make(chan error, 1)
		go func() {
			out, err := sb.Docker(ctx, "h1", "run", "--rm", "--network", "drover", sandbox.DemoImage,
				"get", "-count", "-timeout", "30s", "http://"+ips["h2"]+":8080/stream?seconds=6&rate=2000000")
			if err == nil && !strings.Contains(out, "received 12000000 bytes") {
				err = fmt.Errorf("transfer: %s", out)
			}
			done <- err
		}()
		harness.Eventually(t, 10*time.Second, "transfer running", func() error {
			out, _ := sb.Docker(ctx, "h1", "ps", "-q", "--filter", "ancestor="+sandbox.DemoImage)
			if len(strings.Fields(out)) < 2 {
				return fmt.Errorf("client container not running yet")
			}
			return nil
		})
		if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Errorf("transfer through h1 with its agent killed: %v", err)
		}
		if err := sb.Start(ctx, "h1", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		key2, sub2 := nodeIdentity(ctx, t, sb, "h1")
		if key1 != key2 || sub1 != sub2 {
			t.Errorf("restart changed identity: key %s→%s subnet %s→%s", key1, key2, sub1, sub2)
		}
		after := handshakes(ctx, t, sb, "h1")
		for k, v := range before {
			if after[k].Before(v) {
				t.Errorf("peer %s handshake went back: %s → %s", k, v, after[k])
			}
		}
		log, _ := os.ReadFile(filepath.Join(sb.Host(1).Dir, "agent.log"))
		lines := strings.Split(string(log), "\n")
		var sinceRestart []string
		for i := len(lines) - 1; i >= 0; i-- {
			sinceRestart = append(sinceRestart, lines[i])
			if strings.Contains(lines[i], "joined the mesh") {
				break
			}
		}
		for _, l := range sinceRestart {
			if strings.Contains(l, "overlay applied") {
				t.Errorf("restart reconfigured the device: %s", l)
			}
		}
	})

	t.Run("forged records are refused", func(t *testing.T) {
		before := map[string]string{}
		for _, h := range sb.Hosts() {
			before[h.Name] = allowedIPs(ctx, sb, h.Name)
		}
		_, h2sub := nodeIdentity(ctx, t, sb, "h2")
		forge := func(id, key, subnet string) {
			body := fmt.Sprintf(`{"ID":%q,"Name":"drover-node","Address":"10.99.0.66","Port":51820,"Meta":{"drover_node":%q,"wg_pubkey":%q,"wg_endpoint":"10.99.0.66:51820","subnet":%q}}`, id, id, key, subnet)
			if out, err := sb.Output(ctx, "h1", "curl", "-sf", "-X", "PUT", "--data", body, sandbox.ConsulURL+"/v1/agent/service/register"); err != nil {
				t.Fatalf("registering forged record: %v %s", err, out)
			}
		}
		forge("evil-steal", "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", h2sub)
		forge("evil-outside", "yGxVbV1LN+qqH6K1r5mD2dRIo0OC3WjRFUJKR6lMxVU=", "192.168.7.0/24")
		defer func() {
			for _, id := range []string{"evil-steal", "evil-outside"} {
				_, _ = sb.Output(ctx, "h1", "curl", "-sf", "-X", "PUT", sandbox.ConsulURL+"/v1/agent/service/deregister/"+id)
			}
		}()
		harness.Eventually(t, 10*time.Second, "forged records reported on every host", func() error {
			for _, h := range sb.Hosts() {
				out, err := sb.Output(ctx, h.Name, "drover", "status")
				if err != nil {
					return err
				}
				if !strings.Contains(out, "REFUSED evil-steal") || !strings.Contains(out, "REFUSED evil-outside") ||
					!strings.Contains(out, "outside the cluster CIDR") || !strings.Contains(out, "lease of "+h2sub+" belongs to node \"h2\"") {
					return fmt.Errorf("%s status lacks the refusals:\n%s", h.Name, out)
				}
			}
			return nil
		})
		for _, h := range sb.Hosts() {
			if out := allowedIPs(ctx, sb, h.Name); out != before[h.Name] {
				t.Errorf("%s AllowedIPs changed:\nbefore %s\nafter  %s", h.Name, before[h.Name], out)
			}
		}
	})

	t.Run("link flap and dead wireguard-go are repaired within seconds", func(t *testing.T) {
		if out, err := sb.Output(ctx, "h1", "sh", "-c", "ip link set drover0 down && ip link set drover0 up"); err != nil {
			t.Fatalf("flapping drover0: %v %s", err, out)
		}
		flapped := time.Now()
		harness.Eventually(t, 5*time.Second, "h1 → h2 after a link flap", func() error {
			_, err := sb.Output(ctx, "h1", "drover-demo", "get", "-timeout", "1s", "http://"+ips["h2"]+":8080/after-flap")
			return err
		})
		t.Logf("routes and traffic back %s after the flap", time.Since(flapped).Round(time.Millisecond))
		out, err := sb.Output(ctx, "h2", "sh", "-c", "kill $(cat "+filepath.Join(sb.Host(2).Dir, "drover", "wg-drover0.pid")+")")
		if err != nil {
			t.Fatalf("killing h2's wireguard-go: %v %s", err, out)
		}
		killed := time.Now()
		harness.Eventually(t, 10*time.Second, "h1 → h2 after h2's wireguard-go died", func() error {
			_, err := sb.Output(ctx, "h1", "drover-demo", "get", "-timeout", "1s", "http://"+ips["h2"]+":8080/after-restart")
			return err
		})
		t.Logf("traffic back %s after h2's wireguard-go was killed", time.Since(killed).Round(time.Millisecond))
	})

	t.Run("partition keeps peers and heals", func(t *testing.T) {
		if err := sb.Partition(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		h3key, _ := nodeIdentity(ctx, t, sb, "h3")
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			out, err := sb.Output(ctx, "h1", "wg", "show", "drover0", "allowed-ips")
			if err != nil || !strings.Contains(out, h3key) {
				t.Fatalf("h1 dropped h3's peer during the partition: %q, %v", out, err)
			}
			time.Sleep(time.Second)
		}
		if err := sb.Heal(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		healed := time.Now()
		harness.Eventually(t, 5*time.Second, "traffic h1 → h3 after healing", func() error {
			_, err := sb.Output(ctx, "h1", "drover-demo", "get", "-timeout", "1s", "http://"+ips["h3"]+":8080/healed")
			return err
		})
		t.Logf("traffic resumed %s after healing", time.Since(healed).Round(time.Millisecond))
		// Consul's own recovery (serf reconnects every 30 s) is slower than
		// the mesh's; later steps need h3's agent to have servers again.
		harness.Eventually(t, 90*time.Second, "h3's Consul agent rejoins", func() error {
			_, err := sb.Output(ctx, "h3", "consul", "kv", "get", "-recurse", "drover/")
			return err
		})
	})

	t.Run("a fourth host joins within 5s and leaves cleanly", func(t *testing.T) {
		sb4 := growSandbox(ctx, t, sb, 4)
		ip4 := ""
		begin := time.Now()
		if err := sb4.Start(ctx, "h4", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		// The agent answers its status socket before it has leased a
		// subnet and made the drover network: a container waits for that.
		waitNetwork(ctx, t, sb4, "h4")
		ip4 = runOnMesh(ctx, t, sb4, "h4", "web", "secret-h4")
		for _, h := range []string{"h1", "h2", "h3"} {
			harness.Eventually(t, 5*time.Second, h+" reaches h4", func() error {
				_, err := sb4.Output(ctx, h, "drover-demo", "get", "-timeout", "1s", "http://"+ip4+":8080/")
				return err
			})
		}
		t.Logf("h4 reachable from all hosts %s after its agent started", time.Since(begin).Round(time.Millisecond))
		key4, sub4 := nodeIdentity(ctx, t, sb4, "h4")
		if _, err := sb4.Docker(ctx, "h4", "rm", "-f", "web"); err != nil {
			t.Fatal(err)
		}
		if out, err := sb4.Output(ctx, "h4", "drover", "leave"); err != nil {
			t.Fatalf("drover leave: %v %s", err, out)
		}
		left := time.Now()
		for _, h := range []string{"h1", "h2", "h3"} {
			harness.Eventually(t, 5*time.Second, h+" drops h4's peer and route", func() error {
				wgOut, _ := sb4.Output(ctx, h, "wg", "show", "drover0", "peers")
				rt, _ := sb4.Output(ctx, h, "ip", "route", "show", sub4)
				if strings.Contains(wgOut, key4) || strings.TrimSpace(rt) != "" {
					return fmt.Errorf("peer or route of h4 still on %s", h)
				}
				return nil
			})
		}
		t.Logf("h4's peer and routes gone everywhere %s after leave", time.Since(left).Round(time.Millisecond))
		key := "drover/v1/leases/" + strings.Replace(sub4, "/", "_", 1)
		if out, err := sb4.Output(ctx, "h1", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", sandbox.ConsulURL+"/v1/kv/"+key); err != nil || out != "404" {
			t.Errorf("lease %s not freed: HTTP %s %v", key, out, err)
		}
	})
}

// runOnMesh starts the demo image on host's drover network and returns its
// overlay address.
// growSandbox adds hosts to sb up to n (without starting their agents) and
// returns the grown sandbox.
func growSandbox(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, n int) *sandbox.Sandbox {
	t.Helper()
	opt := sb.Options()
	opt.Hosts, opt.Agents = n, false
	grown, err := sandbox.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := grown.Up(ctx); err != nil {
		t.Fatalf("adding h%d: %v", n, err)
	}
	return grown
}

func runOnMesh(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, host, name, marker string) string {
	t.Helper()
	if _, err := sb.Docker(ctx, host, "run", "-d", "--name", name, "--hostname", name+"-"+host,
		"--network", "drover", "-e", "DEMO_MARKER="+marker, sandbox.DemoImage); err != nil {
		t.Fatalf("running %s on %s: %v", name, host, err)
	}
	out, err := sb.Docker(ctx, host, "inspect", "-f", "{{.NetworkSettings.Networks.drover.IPAddress}}", name)
	if err != nil {
		t.Fatal(err)
	}
	ip := strings.TrimSpace(out)
	if !strings.HasPrefix(ip, "10.42.") {
		t.Fatalf("%s on %s got %q, not an overlay address", name, host, ip)
	}
	harness.Eventually(t, 10*time.Second, name+" on "+host+" answers locally", func() error {
		_, err := sb.Output(ctx, host, "drover-demo", "get", "-timeout", "1s", "http://"+ip+":8080/healthz")
		return err
	})
	return ip
}

type statusJSON struct {
	Overlay struct {
		PublicKey string `json:"public_key"`
		Subnet    string `json:"subnet"`
		Peers     []struct {
			Node          string    `json:"node"`
			LastHandshake time.Time `json:"last_handshake"`
		} `json:"peers"`
	} `json:"overlay"`
}

func status(ctx context.Context, t testing.TB, sb *sandbox.Sandbox, host string) statusJSON {
	t.Helper()
	out, err := sb.Output(ctx, host, "drover", "status", "--json")
	if err != nil {
		t.Fatalf("drover status on %s: %v", host, err)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("drover status --json on %s: %v\n%s", host, err, out)
	}
	return st
}

func nodeIdentity(ctx context.Context, t testing.TB, sb *sandbox.Sandbox, host string) (key, subnet string) {
	st := status(ctx, t, sb, host)
	return st.Overlay.PublicKey, st.Overlay.Subnet
}

func handshakes(ctx context.Context, t testing.TB, sb *sandbox.Sandbox, host string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, p := range status(ctx, t, sb, host).Overlay.Peers {
		out[p.Node] = p.LastHandshake
	}
	return out
}

// allowedIPs returns `wg show drover0 allowed-ips` of host, sorted.
func allowedIPs(ctx context.Context, sb *sandbox.Sandbox, host string) string {
	out, _ := sb.Output(ctx, host, "wg", "show", "drover0", "allowed-ips")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// waitNetwork waits until the agents of hosts have made the drover Docker
// network (a sandbox is up once every agent has its lease, which comes
// first).
func waitNetwork(ctx context.Context, t testing.TB, sb *sandbox.Sandbox, hosts ...string) {
	t.Helper()
	for _, h := range hosts {
		harness.Eventually(t, 60*time.Second, "the drover network on "+h, func() error {
			_, err := sb.Docker(ctx, h, "network", "inspect", "drover")
			return err
		})
	}
}
