//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// stubPort is where the sandbox's stand-in for the host's resolver listens.
const stubPort = 5353

// startDNSStub runs `drover-demo dns-stub` on host at its underlay address,
// answering names (NAME=IP), NXDOMAIN for the rest: the "host's resolver"
// drover forwards to, inside the sandbox.
func startDNSStub(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, host string, names ...string) string {
	t.Helper()
	h, err := sb.HostByName(host)
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"udp", "tcp"} {
		if err := sb.OpenPort(ctx, host, proto, stubPort); err != nil {
			t.Fatal(err)
		}
	}
	addr := fmt.Sprintf("%s:%d", h.Addr, stubPort)
	cmd, err := sb.Command(ctx, host, append([]string{"drover-demo", "dns-stub", "-listen", addr}, names...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return addr
}

// resolveIn runs `drover-demo resolve ARGS` in container ctr on host: Go's
// resolver reading the container's /etc/resolv.conf, as an app does.
func resolveIn(ctx context.Context, sb *sandbox.Sandbox, host, ctr string, args ...string) (string, error) {
	out, err := sb.Docker(ctx, host, append([]string{"exec", ctr, "/drover-demo", "resolve"}, args...)...)
	return strings.TrimSpace(out), err
}

// wantAddrs is resolve's line for these addresses.
func wantAddrs(ips ...string) string {
	s := slices.Clone(ips)
	slices.Sort(s)
	return "addrs=" + strings.Join(s, ",")
}

// TestDNS proves that containers resolve service names with no DNS flag of
// their own: from a container on h1, web.service.consul and the bare name
// web give the passing instances on h2 and h3 (SRV too), an instance that
// goes critical leaves the answer within its check's fall time plus the
// TTL, external names are forwarded to the host's resolver (a stub on h3),
// a container on Docker's default bridge gets the same, the underlay gets
// no resolver, `drover status` shows the server and `drover leave` removes
// its address.
func TestDNS(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvn", Hosts: 3, Agents: true})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	upstream := startDNSStub(ctx, t, sb, "h3", "example.invalid=192.0.2.7")
	if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(ctx, "h1", sandbox.ProcAgent, "--dns-upstream", upstream); err != nil {
		t.Fatal(err)
	}

	const interval, fall = time.Second, 2
	ips := map[string]string{}
	for _, h := range []string{"h2", "h3"} {
		if _, err := sb.Docker(ctx, h, "run", "-d", "--name", "web-"+h, "--network", "drover",
			"-l", "drover.service=web", "-l", "drover.tags=on-"+h, "-l", "drover.check=http:/healthz",
			"-l", "drover.check.interval="+interval.String(), "-l", "drover.check.timeout=500ms",
			"-l", fmt.Sprintf("drover.check.fall=%d", fall), sandbox.DemoImage); err != nil {
			t.Fatal(err)
		}
		out, _ := sb.Docker(ctx, h, "inspect", "-f", "{{.NetworkSettings.Networks.drover.IPAddress}}", "web-"+h)
		ips[h] = strings.TrimSpace(out)
	}
	// The client: an ordinary container on the drover network, no --dns,
	// no --dns-search.
	if _, err := sb.Docker(ctx, "h1", "run", "-d", "--name", "client", "--network", "drover", sandbox.DemoImage); err != nil {
		t.Fatal(err)
	}
	if id, err := sb.Docker(ctx, "h1", "inspect", "-f", "{{.Id}}", "client"); err == nil {
		h1, _ := sb.HostByName("h1")
		rc, _ := os.ReadFile(filepath.Join(h1.Dir, "docker", "containers", strings.TrimSpace(id), "resolv.conf"))
		t.Logf("the client's /etc/resolv.conf, as Docker wrote it:\n%s", rc)
	}
	both := wantAddrs(ips["h2"], ips["h3"])

	t.Run("service names resolve in a container without DNS flags", func(t *testing.T) {
		for _, name := range []string{"web.service.consul", "WEB.Service.Consul", "web"} {
			harness.Eventually(t, 30*time.Second, name+" gives both instances", func() error {
				got, err := resolveIn(ctx, sb, "h1", "client", name)
				if err != nil || got != both {
					return fmt.Errorf("got %q (%v), want %q", got, err, both)
				}
				return nil
			})
		}
		got, err := resolveIn(ctx, sb, "h1", "client", "on-h3.web.service.consul")
		if err != nil || got != wantAddrs(ips["h3"]) {
			t.Errorf("tag lookup: %q (%v), want %q", got, err, wantAddrs(ips["h3"]))
		}
		got, err = resolveIn(ctx, sb, "h1", "client", "-srv", "web.service.consul")
		var want []string
		for _, h := range []string{"h2", "h3"} {
			want = append(want, fmt.Sprintf("%s.addr.service.consul:8080", hexIP(ips[h])))
		}
		slices.Sort(want)
		if err != nil || got != "srv="+strings.Join(want, ",") {
			t.Errorf("SRV: %q (%v), want srv=%s", got, err, strings.Join(want, ","))
		}
		if got, err := resolveIn(ctx, sb, "h1", "client", "nosuch.service.consul"); err == nil || !strings.Contains(got, "no such host") {
			t.Errorf("unknown service: %q (%v), want no such host", got, err)
		}
		t.Logf("web.service.consul, web, a tag and SRV answer %s from h1", both)
	})

	t.Run("an instance gone critical leaves the answer within fall time plus TTL", func(t *testing.T) {
		if _, err := sb.Docker(ctx, "h1", "exec", "client", "/drover-demo", "get", "http://"+ips["h2"]+":8080/sick"); err != nil {
			t.Fatal(err)
		}
		sick := time.Now()
		const ttl = 5 * time.Second
		budget := interval*fall + ttl
		var criticalAt time.Time
		harness.Eventually(t, budget+5*time.Second, "h2's instance gone from web.service.consul", func() error {
			if criticalAt.IsZero() {
				es, err := healthService(ctx, sb, "h1", "web", true)
				if err != nil {
					t.Logf("reading Consul: %v", err)
				} else if len(es) < 2 {
					criticalAt = time.Now()
				}
			}
			got, err := resolveIn(ctx, sb, "h1", "client", "web.service.consul")
			if err != nil || got != wantAddrs(ips["h3"]) {
				return fmt.Errorf("got %q (%v)", got, err)
			}
			return nil
		})
		gone := time.Since(sick)
		seen := "in the same poll"
		if !criticalAt.IsZero() {
			seen = "after " + criticalAt.Sub(sick).Round(time.Millisecond).String()
		}
		t.Logf("P? dns_critical_gone = %s after /sick (out of Consul's passing list %s; budget fall %s + TTL %s = %s)",
			gone.Round(time.Millisecond), seen, interval*fall, ttl, budget)
		if gone > budget {
			t.Errorf("gone after %s, over the budget %s", gone, budget)
		}
		if _, err := sb.Docker(ctx, "h1", "exec", "client", "/drover-demo", "get", "http://"+ips["h2"]+":8080/well"); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 20*time.Second, "h2's instance back once it passes again", func() error {
			got, err := resolveIn(ctx, sb, "h1", "client", "web.service.consul")
			if err != nil || got != both {
				return fmt.Errorf("got %q (%v)", got, err)
			}
			return nil
		})
	})

	t.Run("external names are forwarded to the host's resolver", func(t *testing.T) {
		got, err := resolveIn(ctx, sb, "h1", "client", "example.invalid")
		if err != nil || got != "addrs=192.0.2.7" {
			t.Errorf("example.invalid: %q (%v), want the stub's 192.0.2.7", got, err)
		}
		if got, err := resolveIn(ctx, sb, "h1", "client", "other.invalid"); err == nil || !strings.Contains(got, "no such host") {
			t.Errorf("other.invalid: %q (%v), want the stub's NXDOMAIN", got, err)
		}
	})

	t.Run("a container on Docker's default bridge gets the same", func(t *testing.T) {
		out, err := sb.Docker(ctx, "h1", "run", "--rm", sandbox.DemoImage, "resolve", "web")
		if strings.TrimSpace(out) != both || err != nil {
			t.Errorf("default bridge: %q (%v), want %q", out, err, both)
		}
	})

	t.Run("the underlay gets no resolver", func(t *testing.T) { dnsUnderlay(ctx, t, sb) })

	t.Run("drover status shows the server", func(t *testing.T) {
		out, err := sb.Output(ctx, "h1", "drover", "status", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			DNS *struct {
				Listen    string
				Listening bool
				Upstreams []string
				Instances int
				Stats     struct {
					Queries   map[string]uint64
					Forwarded uint64
					Refused   uint64
				}
			}
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		d := r.DNS
		if d == nil || !d.Listening || d.Listen != sandbox.DNSAddr+":53" || !slices.Equal(d.Upstreams, []string{upstream}) ||
			d.Stats.Forwarded == 0 || d.Stats.Queries["NOERROR"] == 0 || d.Stats.Queries["NXDOMAIN"] == 0 || d.Instances < 2 {
			t.Errorf("status dns: %+v", d)
		}
		text, _ := sb.Output(ctx, "h1", "drover", "status")
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "dns") {
				t.Log(l)
			}
		}
	})

	t.Run("drover leave removes the address", func(t *testing.T) { dnsLeave(ctx, t, sb) })
}

// dnsLeave: `drover leave` on h2 takes the DNS address away with it.
func dnsLeave(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	has := func() bool {
		out, _ := sb.Output(ctx, "h2", "ip", "-o", "addr", "show")
		return strings.Contains(out, " "+sandbox.DNSAddr+"/")
	}
	if !has() {
		t.Fatalf("h2 has no %s before leaving", sandbox.DNSAddr)
	}
	if out, err := sb.Output(ctx, "h2", "drover", "leave"); err != nil {
		t.Fatalf("drover leave: %v %s", err, out)
	}
	if has() {
		out, _ := sb.Output(ctx, "h2", "ip", "-o", "addr", "show")
		t.Errorf("%s still on h2 after drover leave:\n%s", sandbox.DNSAddr, out)
	}
}

// TestDNS's last part: no resolver for the underlay.
func dnsUnderlay(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	h1, _ := sb.HostByName("h1")
	// drover binds only its link-local address: nothing answers on h1's
	// underlay address.
	if out, err := sb.Output(ctx, "h2", "drover-demo", "resolve", "-timeout", "2s", "-server", h1.Addr.String()+":53", "example.invalid"); err == nil {
		t.Errorf("a resolver answers on h1's underlay address: %s", out)
	}
	// A machine on the underlay routing 169.254.53.53 through h1, past an
	// input firewall opened for it, is refused: its source is neither
	// loopback, a container nor --dns-allow.
	refused := func() uint64 {
		out, err := sb.Output(ctx, "h1", "drover", "status", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			DNS struct{ Stats struct{ Refused uint64 } }
		}
		_ = json.Unmarshal([]byte(out), &r)
		return r.DNS.Stats.Refused
	}
	before := refused()
	if err := sb.OpenPort(ctx, "h1", "udp", 53); err != nil {
		t.Fatal(err)
	}
	c1 := sb.Server(1)
	ns := "--net=/run/netns/" + c1.NetNS
	if out, err := exec.CommandContext(ctx, "nsenter", ns, "ip", "route", "replace", sandbox.DNSAddr+"/32", "via", h1.Addr.String()).CombinedOutput(); err != nil {
		t.Fatalf("route in %s: %v %s", c1.NetNS, err, out)
	}
	out, err := exec.CommandContext(ctx, "nsenter", ns, filepath.Join(harness.BinDir(t), "drover-demo"), "resolve", "-timeout", "2s",
		"-server", sandbox.DNSAddr+":53", "example.invalid").CombinedOutput()
	if err == nil {
		t.Errorf("the underlay (%s) got an answer: %s", c1.Addr, out)
	}
	if n := refused(); n <= before {
		t.Errorf("refused %d → %d: the query from %s was not refused by drover (%s)", before, n, c1.Addr, strings.TrimSpace(string(out)))
	}
	t.Logf("from the underlay: %s", strings.TrimSpace(string(out)))
}

// hexIP is an IPv4 address as Consul names SRV targets (10.42.2.3 → 0a2a0203).
func hexIP(ip string) string {
	var a, b, c, d int
	fmt.Sscanf(ip, "%d.%d.%d.%d", &a, &b, &c, &d)
	return fmt.Sprintf("%02x%02x%02x%02x", a, b, c, d)
}
