//go:build e2e && faults

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// TestFaultMesh runs the mesh cases: T22 (peer churn beside a transfer)
// and T27 (a smaller underlay MTU).
func TestFaultMesh(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "fm", Hosts: 2, Agents: true, LB: "none"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	waitNetwork(ctx, t, sb, "h1", "h2")
	t.Run("T22", func(t *testing.T) { faultT22(ctx, t, sb) })
	t.Run("T27", func(t *testing.T) { faultT27(ctx, t, sb) })
}

// latestHandshake returns host's latest handshake time with peer key.
func latestHandshake(ctx context.Context, sb *sandbox.Sandbox, host, key string) string {
	out, _ := sb.Output(ctx, host, "wg", "show", "drover0", "latest-handshakes")
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == key {
			return f[1]
		}
	}
	return ""
}

// faultT22: while h1 downloads from h2 across the mesh at a fixed rate,
// two more hosts join and leave again, several times: the h1↔h2 session
// is never reset (same handshake, the transfer completes).
func faultT22(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	begin := time.Now()
	rounds := envInt("DROVER_FAULTS_T22_ROUNDS", 5)
	if os.Getenv("DROVER_FAULTS_SHORT") != "" {
		rounds = 2
	}
	ip2 := runOnMesh(ctx, t, sb, "h2", "t22-src", "t22")
	// Removed at the end: T27 needs h2's drover network empty, to see it
	// recreated at the new MTU.
	defer func() { _, _ = sb.Docker(ctx, "h2", "rm", "-f", "t22-src") }()
	key2, _ := nodeIdentity(ctx, t, sb, "h2")
	big := growSandbox(ctx, t, sb, 4)
	hs0 := latestHandshake(ctx, sb, "h1", key2)
	const secs, rate = 100, 1000000
	done := make(chan error, 1)
	go func() {
		out, err := sb.Docker(ctx, "h1", "run", "--rm", "--network", "drover", sandbox.DemoImage,
			"get", "-count", "-timeout", "150s", fmt.Sprintf("http://%s:8080/stream?seconds=%d&rate=%d", ip2, secs, rate))
		if err == nil && !strings.Contains(out, fmt.Sprintf("received %d bytes", secs*rate)) {
			err = fmt.Errorf("transfer: %s", out)
		}
		done <- err
	}()
	changes := 0
	start := time.Now()
	for r := 0; r < rounds && time.Since(start) < (secs-25)*time.Second; r++ {
		for _, h := range []string{"h3", "h4"} {
			if err := big.Start(ctx, h, sandbox.ProcAgent); err != nil {
				t.Fatal(err)
			}
		}
		harness.Eventually(t, 30*time.Second, "h1 has 3 peers", func() error {
			if n := len(status(ctx, t, sb, "h1").Overlay.Peers); n != 3 {
				return fmt.Errorf("%d peers", n)
			}
			return nil
		})
		changes += 2
		for _, h := range []string{"h3", "h4"} {
			if out, err := big.Output(ctx, h, "drover", "leave"); err != nil {
				t.Fatalf("drover leave on %s: %v %s", h, err, out)
			}
		}
		harness.Eventually(t, 30*time.Second, "h1 has 1 peer", func() error {
			if n := len(status(ctx, t, sb, "h1").Overlay.Peers); n != 1 {
				return fmt.Errorf("%d peers", n)
			}
			return nil
		})
		changes += 2
	}
	churn := time.Since(start)
	err := <-done
	took := time.Since(start)
	hs1 := latestHandshake(ctx, sb, "h1", key2)
	// WireGuard rekeys a session 120 s after its handshake (REKEY_AFTER_TIME)
	// whatever drover does: a newer handshake less than 115 s after the
	// previous one is a reset.
	t0, _ := strconv.ParseInt(hs0, 10, 64)
	t1, _ := strconv.ParseInt(hs1, 10, 64)
	gap := time.Duration(t1-t0) * time.Second
	reset := hs0 != hs1 && gap < 115*time.Second
	r := faultResult{Case: "T22", Title: fmt.Sprintf("%d peer additions/removals (h3, h4 join and leave %d times) during a %d s h1←h2 transfer", changes, rounds, secs),
		Promises: []string{"P11"},
		Figures: kv("peer_changes", changes, "churn_s", fmt.Sprintf("%.0f", churn.Seconds()), "transfer_complete", yesNo(err == nil),
			"h1_h2_handshake_changed", yesNo(hs0 != hs1), "handshake_gap_s", fmt.Sprintf("%.0f", gap.Seconds()), "session_reset", yesNo(reset),
			"transfer_s", fmt.Sprintf("%.0f", took.Seconds())),
		Target: "transfer_complete=yes session_reset=no (a new handshake ≥115 s after the last is WireGuard's 120 s rekey)",
		Pass:   err == nil && !reset}
	if err != nil {
		r.Note = err.Error()
	}
	recordFault(t, begin, r)
}

// faultT27: the underlay's MTU lowered to 1400 (switch ports and hosts'
// eth0), the agents restarted: drover0 takes 1400−80, the largest
// don't-fragment ping across the mesh and a large transfer between
// containers are measured, and the containers' MTU against drover0's.
func faultT27(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	begin := time.Now()
	for _, h := range []string{"h1", "h2"} {
		if out, err := sb.Output(ctx, h, "ip", "link", "set", "eth0", "mtu", "1400"); err != nil {
			t.Fatalf("mtu on %s: %v %s", h, err, out)
		}
		if out, err := runRoot(ctx, "ip", "-n", sb.SwitchNS(), "link", "set", h, "mtu", "1400"); err != nil {
			t.Fatalf("mtu on the switch port of %s: %v %s", h, err, out)
		}
	}
	defer func() {
		for _, h := range []string{"h1", "h2"} {
			_, _ = sb.Output(ctx, h, "ip", "link", "set", "eth0", "mtu", "1500")
			_, _ = runRoot(ctx, "ip", "-n", sb.SwitchNS(), "link", "set", h, "mtu", "1500")
		}
	}()
	for _, h := range []string{"h1", "h2"} {
		if _, err := sb.Kill(h, sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		if err := sb.Start(ctx, h, sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
	}
	mtuOf := func(host, dev string) string {
		out, _ := sb.Output(ctx, host, "ip", "-o", "link", "show", dev)
		f := strings.Fields(out)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "mtu" {
				return f[i+1]
			}
		}
		return "?"
	}
	// The restarted agents recreate the (empty) Docker network at the
	// new MTU: a container started before that races the recreation.
	for _, h := range []string{"h1", "h2"} {
		harness.Eventually(t, 60*time.Second, "the drover network on "+h+" at MTU 1320", func() error {
			out, err := sb.Docker(ctx, h, "network", "inspect", "-f", `{{index .Options "com.docker.network.driver.mtu"}}`, "drover")
			if err != nil || strings.TrimSpace(out) != "1320" {
				return fmt.Errorf("%v %q", err, out)
			}
			return nil
		})
	}
	wgMTU := mtuOf("h1", "drover0")
	ip := runOnMesh(ctx, t, sb, "h2", "t27-src", "t27")
	defer func() { _, _ = sb.Docker(ctx, "h2", "rm", "-f", "t27-src") }()
	pid, _ := sb.Docker(ctx, "h2", "inspect", "-f", "{{.State.Pid}}", "t27-src")
	ctrOut, _ := sb.Output(ctx, "h2", "nsenter", "-t", strings.TrimSpace(pid), "-n", "ip", "-o", "link", "show", "eth0")
	ctrMTU := "?"
	if f := strings.Fields(ctrOut); len(f) > 4 {
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "mtu" {
				ctrMTU = f[i+1]
			}
		}
	}
	// Largest payload a DF ping from h1 to the container carries.
	largest := 0
	for lo, hi := 1000, 1472; lo <= hi; {
		mid := (lo + hi) / 2
		if _, err := sb.Output(ctx, "h1", "ping", "-M", "do", "-c", "1", "-W", "1", "-s", fmt.Sprint(mid), ip); err == nil {
			largest, lo = mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	const size = 20000000
	out, err := sb.Docker(ctx, "h1", "run", "--rm", "--network", "drover", sandbox.DemoImage,
		"get", "-count", "-timeout", "60s", fmt.Sprintf("http://%s:8080/stream?seconds=10&rate=%d", ip, size/10))
	ok := err == nil && strings.Contains(out, fmt.Sprintf("received %d bytes", size))
	r := faultResult{Case: "T27", Title: "underlay MTU 1400 (switch ports and eth0), agents restarted; 20 MB container→container transfer across the mesh",
		Promises: []string{"P15"},
		Figures:  kv("drover0_mtu", wgMTU, "container_mtu", ctrMTU, "largest_df_ping_payload", largest, "large_transfer_ok", yesNo(ok)),
		Target:   "drover0_mtu=1320 container_mtu≤1320 large_transfer_ok=yes",
		Pass:     wgMTU == "1320" && ok && atoiOr(ctrMTU, 1<<20) <= 1320}
	if !r.Pass {
		r.Note = fmt.Sprintf("containers keep MTU %s above drover0's %s (issue 12 defect 12, fixed elsewhere)", ctrMTU, wgMTU)
		if !ok {
			r.Note += fmt.Sprintf("; transfer: %v %s", err, strings.TrimSpace(out))
		}
	}
	recordFault(t, begin, r)
}

// runRoot runs a command in the root namespace (for `ip -n <switch>`).
func runRoot(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}
