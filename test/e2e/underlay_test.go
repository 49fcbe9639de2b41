//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// overlayHead is the part of `drover status --json` about this host's own
// interface.
type overlayHead struct {
	Overlay struct {
		MTU      int    `json:"mtu"`
		Endpoint string `json:"endpoint"`
		Peers    []struct {
			Node     string `json:"node"`
			Endpoint string `json:"endpoint"`
		} `json:"peers"`
	} `json:"overlay"`
}

func overlayStatus(ctx context.Context, sb *sandbox.Sandbox, host string) (overlayHead, error) {
	var st overlayHead
	out, err := sb.Output(ctx, host, "drover", "status", "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// bigTransfer fetches 8 MB from a demo container at ip from a fresh
// container on host (a new TCP connection, so a new MSS negotiation).
func bigTransfer(ctx context.Context, sb *sandbox.Sandbox, host, ip string) error {
	out, err := sb.Docker(ctx, host, "run", "--rm", "--network", "drover", sandbox.DemoImage,
		"get", "-count", "-timeout", "15s", "http://"+ip+":8080/stream?seconds=1&rate=8000000")
	if err != nil {
		return fmt.Errorf("%s → %s: %w (%s)", host, ip, err, strings.TrimSpace(out))
	}
	if !strings.Contains(out, "received 8000000 bytes") {
		return fmt.Errorf("%s → %s: %q", host, ip, out)
	}
	return nil
}

// TestUnderlayMTU lowers one host's underlay MTU to 1300 with the agents
// running (issue 12 defects 12 and 18): drover0 follows (1220), status
// shows it, large transfers between containers on both hosts succeed in
// both directions (MSS clamped while a container keeps the old MTU), and
// the container network follows once no container is attached.
func TestUnderlayMTU(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvu", Hosts: 2, Agents: true})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ip1 := runOnMesh(ctx, t, sb, "h1", "web", "mtu-h1")
	ip2 := runOnMesh(ctx, t, sb, "h2", "web", "mtu-h2")
	for _, c := range [][2]string{{"h1", ip2}, {"h2", ip1}} {
		harness.Eventually(t, 20*time.Second, "transfer before the change", func() error { return bigTransfer(ctx, sb, c[0], c[1]) })
	}

	if err := sb.SetUnderlayMTU(ctx, "h2", 1300); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	harness.Eventually(t, 20*time.Second, "h2's status and drover0 at 1220", func() error {
		st, err := overlayStatus(ctx, sb, "h2")
		if err == nil && st.Overlay.MTU != 1220 {
			err = fmt.Errorf("status mtu %d", st.Overlay.MTU)
		}
		if err != nil {
			return err
		}
		if out, err := sb.Output(ctx, "h2", "ip", "-o", "link", "show", "drover0"); err != nil || !strings.Contains(out, "mtu 1220") {
			return fmt.Errorf("drover0 on h2: %q %v", out, err)
		}
		return nil
	})
	t.Logf("FIGURE underlay MTU 1500→1300 noticed, drover0 and status at 1220 after %s", time.Since(changed).Round(time.Millisecond))
	harness.Eventually(t, 10*time.Second, "h2's nft table clamps TCP MSS to 1180", func() error {
		out, err := sb.Output(ctx, "h2", "nft", "list", "table", "ip", "drover")
		if err == nil && strings.Count(out, "maxseg size set 1180") != 2 {
			err = fmt.Errorf("table ip drover:\n%s", out)
		}
		return err
	})
	for _, c := range [][2]string{{"h1", ip2}, {"h2", ip1}} {
		harness.Eventually(t, 30*time.Second, "8 MB transfer after the change, client on "+c[0], func() error { return bigTransfer(ctx, sb, c[0], c[1]) })
	}
	t.Logf("FIGURE large transfers both ways succeed %s after the change", time.Since(changed).Round(time.Millisecond))
	logs, _ := sb.Output(ctx, "h2", "cat", sb.Host(2).Dir+"/agent.log")
	if !strings.Contains(logs, "underlay MTU changed") {
		t.Errorf("h2's agent log does not mention the MTU change")
	}

	// With no container attached, the network itself follows.
	if _, err := sb.Docker(ctx, "h2", "rm", "-f", "web"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, "h2's container network at MTU 1220", func() error {
		out, err := sb.Docker(ctx, "h2", "network", "inspect", "drover", "-f", `{{index .Options "com.docker.network.driver.mtu"}}`)
		if err == nil && strings.TrimSpace(out) != "1220" {
			err = fmt.Errorf("network mtu %q", strings.TrimSpace(out))
		}
		return err
	})
	ip2 = runOnMesh(ctx, t, sb, "h2", "web2", "mtu-h2b")
	for _, c := range [][2]string{{"h1", ip2}, {"h2", ip1}} {
		harness.Eventually(t, 30*time.Second, "transfer with the new network, client on "+c[0], func() error { return bigTransfer(ctx, sb, c[0], c[1]) })
	}
}

// TestUnderlayReaddress moves h2's underlay address (issue 12 defect 14,
// second half): h2 republishes its endpoint, h1 and h3 show it in status
// and WireGuard, the drover-node record carries it, and traffic flows.
func TestUnderlayReaddress(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvu", Hosts: 3, Agents: true})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ip2 := runOnMesh(ctx, t, sb, "h2", "web", "move-h2")
	cross := func(from string) error {
		out, err := sb.Docker(ctx, from, "run", "--rm", "--network", "drover", sandbox.DemoImage, "get", "-timeout", "2s", "http://"+ip2+":8080/")
		if err == nil && !strings.Contains(out, "move-h2") {
			err = fmt.Errorf("reply %q lacks h2's marker", out)
		}
		return err
	}
	for _, h := range []string{"h1", "h3"} {
		harness.Eventually(t, 20*time.Second, h+" → h2 before the move", func() error { return cross(h) })
	}
	moved := netip.MustParseAddr("10.99.0.112")
	want := moved.String() + ":51820"
	if err := sb.Readdress(ctx, "h2", moved); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	harness.Eventually(t, 30*time.Second, "h2's record and status carry "+want, func() error {
		st, err := overlayStatus(ctx, sb, "h2")
		if err != nil {
			return err
		}
		if st.Overlay.Endpoint != want {
			return fmt.Errorf("h2 status endpoint %s", st.Overlay.Endpoint)
		}
		out, err := sb.Output(ctx, "h1", "curl", "-sf", sandbox.ConsulURL+"/v1/catalog/service/drover-node")
		if err != nil {
			return err
		}
		var recs []struct {
			Node        string
			ServiceMeta map[string]string
		}
		if err := json.Unmarshal([]byte(out), &recs); err != nil {
			return err
		}
		for _, r := range recs {
			if r.ServiceMeta["drover_node"] == "h2" && r.ServiceMeta["wg_endpoint"] != want {
				return fmt.Errorf("h2's record says wg_endpoint %s", r.ServiceMeta["wg_endpoint"])
			}
		}
		return nil
	})
	t.Logf("FIGURE h2 readdressed: its record and status carry %s after %s", want, time.Since(begin).Round(time.Millisecond))
	for _, h := range []string{"h1", "h3"} {
		harness.Eventually(t, 30*time.Second, h+" knows h2 at "+want, func() error {
			out, err := sb.Output(ctx, h, "wg", "show", "drover0", "endpoints")
			if err == nil && !strings.Contains(out, want) {
				err = fmt.Errorf("wg endpoints: %q", out)
			}
			if err != nil {
				return err
			}
			st, err := overlayStatus(ctx, sb, h)
			if err != nil {
				return err
			}
			for _, p := range st.Overlay.Peers {
				if p.Node == "h2" && p.Endpoint != want {
					return fmt.Errorf("%s status: h2 at %s", h, p.Endpoint)
				}
			}
			return nil
		})
		t.Logf("FIGURE %s shows h2 at %s (wg and status) after %s", h, want, time.Since(begin).Round(time.Millisecond))
		harness.Eventually(t, 30*time.Second, h+" → h2 after the move", func() error { return cross(h) })
	}
	t.Logf("FIGURE h2 readdressed: record, status and both peers at %s, traffic flowing, after %s", want, time.Since(begin).Round(time.Millisecond))
	// A restart of h1's agent keeps the new endpoint (the record is the truth now).
	if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(ctx, "h1", sandbox.ProcAgent); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, "h1 → h2 after h1's agent restart", func() error { return cross("h1") })
}
