//go:build e2e && faults

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// TestFaultMesh runs the mesh cases: T22 (peer churn beside a transfer),
// T27 (a smaller underlay MTU) and T26 (a host's underlay address moves;
// last, since the moved address stays).
func TestFaultMesh(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "fm", Hosts: 2, Agents: true, LB: "none"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	waitNetwork(ctx, t, sb, "h1", "h2")
	t.Run("T22", func(t *testing.T) { faultT22(ctx, t, sb) })
	t.Run("T27", func(t *testing.T) { faultT27(ctx, t, sb) })
	t.Run("T26", func(t *testing.T) { faultT26(ctx, t, sb) })
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

// t26Probe is one request of T26's probe loop and what h1's WireGuard
// said about h2's endpoint right after it.
type t26Probe struct {
	at       time.Time
	took     time.Duration
	ok       bool
	endpoint string
}

// t26Probes is T26's probe log, appended by the probe loop and read by
// the test.
type t26Probes struct {
	mu sync.Mutex // guards ps
	ps []t26Probe
}

func (r *t26Probes) add(p t26Probe) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ps = append(r.ps, p)
}

func (r *t26Probes) all() []t26Probe {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ps)
}

func (r *t26Probes) passedSince(t0 time.Time) int {
	n := 0
	for _, p := range r.all() {
		if p.ok && !p.at.Before(t0) {
			n++
		}
	}
	return n
}

// t26Back returns how long after move traffic passed again: the start of
// the first passing probe after the first failed one begun since move (0
// when probes ran since move and none failed), and whether it has.
func t26Back(ps []t26Probe, move time.Time) (time.Duration, bool) {
	var failed time.Time
	n := 0
	for _, p := range ps {
		if p.at.Before(move) {
			continue
		}
		n++
		switch {
		case !p.ok && failed.IsZero():
			failed = p.at
		case p.ok && !failed.IsZero():
			return p.at.Sub(move), true
		}
	}
	// Only a run of passing probes after the move: the path never broke
	// (wait for a few, lest the first ones predate the address leaving).
	if failed.IsZero() && n >= 5 {
		return 0, true
	}
	return 0, false
}

// faultT26: h2's underlay address moves (its Consul agent restarted on
// the new one, as in the sandbox it binds the underlay address) while a
// container on h1 sends load to a container on h2 through the mesh: the
// time until requests pass again, until h2's drover-node record carries
// the new endpoint and until h1's and h3's WireGuard have it, the failed
// requests, and whether h1's endpoint for h2 ever flips back to the old
// address.
func faultT26(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	begin := time.Now()
	// Four hosts as T22 leaves them (a smaller shape would rebuild the
	// sandbox); h3's agent joins as the third peer.
	big := growSandbox(ctx, t, sb, 4)
	if err := big.Start(ctx, "h3", sandbox.ProcAgent); err != nil {
		t.Fatal(err)
	}
	key2, _ := nodeIdentity(ctx, t, sb, "h2")
	for _, h := range []string{"h1", "h3"} {
		harness.Eventually(t, 60*time.Second, h+" has h2 and a second peer", func() error {
			st, err := overlayStatus(ctx, big, h)
			if err != nil {
				return err
			}
			if len(st.Overlay.Peers) != 2 {
				return fmt.Errorf("%d peers", len(st.Overlay.Peers))
			}
			return nil
		})
	}
	st2, err := overlayStatus(ctx, sb, "h2")
	if err != nil {
		t.Fatalf("h2 status: %v", err)
	}
	oldEP, err := netip.ParseAddrPort(st2.Overlay.Endpoint)
	if err != nil {
		t.Fatalf("h2's endpoint %q: %v", st2.Overlay.Endpoint, err)
	}
	h2, _ := sb.HostByName("h2")
	a := h2.Addr.As4()
	a[3] += 100
	moved := netip.AddrFrom4(a)
	newEP := netip.AddrPortFrom(moved, oldEP.Port()).String()

	ip2 := runOnMesh(ctx, t, sb, "h2", "t26-srv", "t26")
	defer func() { _, _ = sb.Docker(ctx, "h2", "rm", "-f", "t26-srv") }()
	runOnMesh(ctx, t, sb, "h1", "t26-cli", "t26c")
	defer func() { _, _ = sb.Docker(ctx, "h1", "rm", "-f", "t26-cli") }()
	pidOut, err := sb.Docker(ctx, "h1", "inspect", "-f", "{{.State.Pid}}", "t26-cli")
	if err != nil {
		t.Fatalf("pid of t26-cli: %v", err)
	}
	inCli := []string{"nsenter", "-t", strings.TrimSpace(pidOut), "-n"}
	url := "http://" + ip2 + ":8080/"
	probe := func() error {
		out, err := sb.Output(ctx, "h1", append(inCli, "drover-demo", "get", "-timeout", "1s", url)...)
		if err == nil && !strings.Contains(out, "t26") {
			err = fmt.Errorf("reply %q lacks the marker", out)
		}
		return err
	}
	harness.Eventually(t, 30*time.Second, "h1's container → h2's container before the move", probe)
	wgEndpoint := func(host string) string {
		out, _ := big.Output(ctx, host, "wg", "show", "drover0", "endpoints")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == key2 {
				return f[1]
			}
		}
		return ""
	}

	const rate, loadFor = 50, 60 * time.Second
	cmd, err := sb.Command(ctx, "h1", append(inCli, "drover-demo", "load", "-rate", strconv.Itoa(rate), "-duration", loadFor.String(),
		"-concurrency", "16", "-timeout", "2s", url)...)
	if err != nil {
		t.Fatal(err)
	}
	var loadOut, loadErr strings.Builder
	cmd.Stdout, cmd.Stderr = &loadOut, &loadErr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the load: %v", err)
	}
	// The probe loop: one request at a time, each followed by h1's view of
	// h2's endpoint, until stopped.
	rec := &t26Probes{}
	stop := make(chan struct{})
	probing := make(chan struct{})
	go func() {
		defer close(probing)
		for {
			select {
			case <-stop:
				return
			default:
			}
			at := time.Now()
			ok := probe() == nil
			rec.add(t26Probe{at: at, took: time.Since(at), ok: ok, endpoint: wgEndpoint("h1")})
		}
	}()
	stopProbes := func() []t26Probe {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-probing
		return rec.all()
	}
	defer stopProbes()
	loadStarted := time.Now()
	harness.Eventually(t, 20*time.Second, "3 probes passing beside the load", func() error {
		if n := rec.passedSince(loadStarted); n < 3 {
			return fmt.Errorf("%d passed", n)
		}
		return nil
	})

	// The move runs beside the polling below, so that each time is taken
	// when it happens, not after the Consul agent's restart.
	moveStart := time.Now()
	moving := make(chan error, 1)
	go func() { moving <- sb.Readdress(ctx, "h2", moved) }()
	readdressTook := time.Duration(-1)
	// First seen: h2's record in the catalog (read from h1) and h1's and
	// h3's WireGuard with the new endpoint.
	seen := map[string]time.Duration{}
	recordEP := func() (string, error) {
		out, err := sb.Output(ctx, "h1", "curl", "-sf", sandbox.ConsulURL+"/v1/catalog/service/drover-node")
		if err != nil {
			return "", fmt.Errorf("catalog: %w", err)
		}
		var recs []struct{ ServiceMeta map[string]string }
		if err := json.Unmarshal([]byte(out), &recs); err != nil {
			return "", fmt.Errorf("catalog answer: %w", err)
		}
		for _, r := range recs {
			if r.ServiceMeta["drover_node"] == "h2" {
				return r.ServiceMeta["wg_endpoint"], nil
			}
		}
		return "", fmt.Errorf("no drover-node record of h2")
	}
	convErr := harness.Wait(90*time.Second, func() error {
		if readdressTook < 0 {
			select {
			case err := <-moving:
				if err != nil {
					return fmt.Errorf("readdressing h2: %w", err)
				}
				readdressTook = time.Since(moveStart)
			default:
			}
		}
		var missing []string
		for _, h := range []string{"record", "h1", "h3"} {
			if _, ok := seen[h]; ok {
				continue
			}
			var ep string
			if h == "record" {
				ep, _ = recordEP()
			} else {
				ep = wgEndpoint(h)
			}
			if ep == newEP {
				seen[h] = time.Since(moveStart)
			} else {
				missing = append(missing, fmt.Sprintf("%s at %q", h, ep))
			}
		}
		if readdressTook < 0 {
			missing = append(missing, "the readdress running")
		}
		if len(missing) > 0 {
			return fmt.Errorf("h2 not yet at %s: %s", newEP, strings.Join(missing, ", "))
		}
		return nil
	})
	if readdressTook < 0 {
		// The move must end before the sandbox is torn down.
		if err := <-moving; err != nil {
			t.Fatalf("readdressing h2: %v", err)
		}
		readdressTook = time.Since(moveStart)
	}
	if convErr != nil && strings.Contains(convErr.Error(), "readdressing h2") {
		t.Fatal(convErr)
	}
	// Traffic back: a passing probe after the first failed one since the
	// move (waited for up to the end of the load).
	_ = harness.Wait(time.Until(loadStarted.Add(loadFor)), func() error {
		if _, ok := t26Back(rec.all(), moveStart); !ok {
			return fmt.Errorf("h1 → h2 not back yet")
		}
		return nil
	})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("load: %v\n%s%s", err, loadOut.String(), loadErr.String())
	}
	ps := stopProbes()
	lr, err := parseLoad(loadOut.String())
	if err != nil {
		t.Fatal(err)
	}
	back, ok := t26Back(ps, moveStart)
	if !ok {
		back = -1
	}
	// The slowest probe since the move, against the slowest before it:
	// a stall shorter than a probe's 1 s timeout shows only there.
	var slowBefore, slowAfter time.Duration
	flips, seenNew := 0, false
	for _, p := range ps {
		if p.at.Before(moveStart) {
			slowBefore = max(slowBefore, p.took)
			continue
		}
		if p.ok {
			slowAfter = max(slowAfter, p.took)
		}
		switch p.endpoint {
		case newEP:
			seenNew = true
		case oldEP.String():
			if seenNew {
				flips++
				seenNew = false
			}
		}
	}
	st2, _ = overlayStatus(ctx, sb, "h2")
	dur := func(d time.Duration) string {
		if d < 0 {
			return "never"
		}
		return d.Round(10 * time.Millisecond).String()
	}
	_, pubOK := seen["record"]
	_, h1ok := seen["h1"]
	_, h3ok := seen["h3"]
	r := faultResult{Case: "T26", Title: fmt.Sprintf("h2's underlay address moved %s → %s (its Consul agent restarted on it) under %d req/s from a container on h1 to one on h2 through the mesh, h3 a third peer", oldEP.Addr(), moved, rate),
		Promises: []string{"P11"},
		Figures: kv("traffic_back_after", dur(back), "record_has_new_endpoint_after", dur(durOr(seen, "record")), "h2_status_endpoint_new", yesNo(st2.Overlay.Endpoint == newEP),
			"h1_has_new_endpoint", yesNo(h1ok), "h1_after", dur(durOr(seen, "h1")), "h3_has_new_endpoint", yesNo(h3ok), "h3_after", dur(durOr(seen, "h3")),
			"endpoint_flips", flips, "failed", fmt.Sprintf("%d/%d", lr.Failed, lr.OK+lr.Failed), "load_max_ms", fmt.Sprintf("%.0f", lr.Max),
			"slowest_probe_before", slowBefore.Round(10*time.Millisecond), "slowest_probe_after", slowAfter.Round(10*time.Millisecond), "readdress_s", fmt.Sprintf("%.1f", readdressTook.Seconds()), "probes", len(ps)),
		Target: "traffic_back_after≤10s record_has_new_endpoint_after≤30s h1_has_new_endpoint=yes h3_has_new_endpoint=yes endpoint_flips=0 (failed requests recorded: the move cuts the path until a peer learns the new address)",
		Pass:   back >= 0 && back <= 10*time.Second && pubOK && seen["record"] <= 30*time.Second && h1ok && h3ok && flips == 0}
	if !r.Pass {
		var why []string
		if convErr != nil {
			why = append(why, "after 90 s "+convErr.Error())
		}
		if back < 0 || back > 10*time.Second {
			why = append(why, "traffic back after "+dur(back))
		}
		if flips > 0 {
			why = append(why, fmt.Sprintf("h1's endpoint for h2 went back to the old address %d times", flips))
		}
		r.Note = strings.Join(why, "; ")
	}
	if loadErr.Len() > 0 {
		t.Logf("load stderr:\n%s", loadErr.String())
	}
	recordFault(t, begin, r)
}

// durOr returns m[k], or -1 when k is absent.
func durOr(m map[string]time.Duration, k string) time.Duration {
	if d, ok := m[k]; ok {
		return d
	}
	return -1
}
