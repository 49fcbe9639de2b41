//go:build e2e && faults

package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/contract"
	"github.com/drover-net/drover/lb"
	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/procs"
	"github.com/drover-net/drover/test/sandbox"
)

// TestFaultLB runs the load balancer's fault cases on one sandbox: h1's
// agent runs HAProxy, h2 runs the backends.
func TestFaultLB(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "fl", Hosts: 2, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	waitNetwork(ctx, t, sb, "h1", "h2")
	t.Run("T2", func(t *testing.T) { faultT2(ctx, t, sb) })
	t.Run("T17", func(t *testing.T) { faultT17(ctx, t, sb) })
	t.Run("T19", func(t *testing.T) { faultT19(ctx, t, sb) })
	t.Run("T33", func(t *testing.T) { faultT33(ctx, t, sb) })
	t.Run("T11", func(t *testing.T) { faultT11(ctx, t, sb) })
	t.Run("T18", func(t *testing.T) { faultT18(ctx, t, sb) })
}

// faultT33: 10 services, each with a steady instance and one whose check
// flaps every second (Consul HTTP check, 1 s interval), while web takes
// load: membership changes go through the runtime API only, never a
// reload, and web loses no request.
func faultT33(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	const n = 10
	d := envDuration("DROVER_FAULTS_T33_FOR", 60*time.Second)
	if os.Getenv("DROVER_FAULTS_SHORT") != "" {
		d = 30 * time.Second
	}
	// web takes the load: a replica of its own, so that the case does not
	// depend on the cases before it.
	runLB(ctx, t, sb, "h2", "t33-web")
	defer func() { _, _ = sb.Docker(ctx, "h2", "rm", "-f", "t33-web") }()
	harness.Eventually(t, 30*time.Second, "web has a server UP", func() error {
		if up := lbState(ctx, t, sb).upServers("web"); len(up) == 0 {
			return fmt.Errorf("no web server UP")
		}
		return nil
	})
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for k := 0; k < n; k++ {
		wg.Go(func() {
			// One check definition per service (the lb refuses instances
			// whose check disagrees): the flapping instance's /healthz
			// flaps (DEMO_FLAP), the steady one's does not.
			for _, c := range []struct{ name, flap string }{
				{fmt.Sprintf("t33-s%d-steady", k), ""},
				{fmt.Sprintf("t33-s%d-flap", k), "1s"},
			} {
				if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", c.name, "--network", "drover", "-e", "DEMO_FLAP="+c.flap,
					"-l", fmt.Sprintf("drover.service=t33s%d", k), "-l", "drover.lb.mode=http", "-l", fmt.Sprintf("drover.lb.port=%d", 9300+k),
					"-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s", sandbox.DemoImage); err != nil {
					errs <- fmt.Errorf("docker run %s: %v %s", c.name, err, out)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	harness.Eventually(t, 90*time.Second, "the 10 flapping services in the lb", func() error {
		have := 0
		for _, b := range lbState(ctx, t, sb).LB.Backends {
			if strings.HasPrefix(b.Name, "t33s") {
				have++
			}
		}
		if have != n {
			return fmt.Errorf("%d of %d backends", have, n)
		}
		return nil
	})
	begin := time.Now()
	before := lbState(ctx, t, sb)
	wait := startLoad(ctx, t, sb, "http://127.0.0.1:80/", 100, d)
	r := wait()
	after := lbState(ctx, t, sb)
	mins := time.Since(begin).Minutes()
	reloads := after.LB.Reloads - before.LB.Reloads
	ops := after.LB.RuntimeOps - before.LB.RuntimeOps
	recordFault(t, begin, faultResult{Case: "T33", Title: fmt.Sprintf("flapping checks (1 s up, 1 s down) on %d services for %.0f s, load on web", n, d.Seconds()),
		Promises: []string{"P3"},
		Figures: kv("reloads", reloads, "reloads_per_min", fmt.Sprintf("%.1f", float64(reloads)/mins), "runtime_ops_per_min", fmt.Sprintf("%.0f", float64(ops)/mins),
			"failed", fmt.Sprintf("%d/%d", r.Failed, r.OK+r.Failed)),
		Target: "reloads=0 failed=0",
		Pass:   reloads == 0 && r.Failed == 0})
	for k := 0; k < n; k++ {
		_, _ = sb.Docker(ctx, "h2", "rm", "-f", fmt.Sprintf("t33-s%d-steady", k), fmt.Sprintf("t33-s%d-flap", k))
	}
}

// t2svc is one service T2 registers straight through h2's Consul agent:
// lb meta makes it a frontend (port 9100+k) and a backend of its own. It
// names drover node h2 at h2's own address (a published port), as the lb
// admits only instances of a drover node.
type t2svc struct {
	on     bool
	weight int
}

func (s t2svc) register(ctx context.Context, sb *sandbox.Sandbox, k int) error {
	_, err := sb.Output(ctx, "h2", "consul", "services", "register",
		"-id", fmt.Sprintf("t2-svc%d", k), "-name", fmt.Sprintf("t2svc%d", k),
		"-address", "10.99.0.12", "-port", strconv.Itoa(8080+k),
		"-meta", "lb_mode=http", "-meta", "lb_port="+strconv.Itoa(9100+k),
		"-meta", "weight="+strconv.Itoa(s.weight), "-meta", discovery.MetaNode+"=h2")
	return err
}

func deregisterT2(ctx context.Context, sb *sandbox.Sandbox, k int) error {
	_, err := sb.Output(ctx, "h2", "consul", "services", "deregister", "-id", fmt.Sprintf("t2-svc%d", k))
	return err
}

// matches reports whether cfg is the config for svcs: a backend with the
// right weight for each registered service, none for the others.
func t2Matches(cfg string, svcs []t2svc) error {
	for k, s := range svcs {
		line := fmt.Sprintf("server t2-svc%d 10.99.0.12:%d weight %d", k, 8080+k, s.weight)
		has := strings.Contains(cfg, "backend t2svc"+strconv.Itoa(k)+"\n")
		switch {
		case s.on && !strings.Contains(cfg, line):
			return fmt.Errorf("no %q", line)
		case !s.on && has:
			return fmt.Errorf("backend t2svc%d still there", k)
		}
	}
	return nil
}

// waitStaging polls dir every millisecond until a staging or validation
// file appears, for at most d; it reports whether one did.
func waitStaging(dir string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if len(leftovers(dir)) > 0 {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// leftovers lists the staging and validation files in dir.
func leftovers(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") && (strings.Contains(n, ".stage-") || strings.Contains(n, ".check-") || strings.Contains(n, ".tmp")) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// faultT2: kill -9 the agent at random points while it renders, validates,
// swaps and reloads HAProxy configs (each iteration makes one structural
// or runtime change, then kills: even iterations at a random time within
// 0–1.5 s, odd ones 0–30 ms after a staging or validation file appears in
// the lb directory, to hit the write windows): haproxy.cfg always parses,
// is the old or the new config, and no staging file is left after the
// restarted agent converged.
func faultT2(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	begin := time.Now()
	iters := envInt("DROVER_FAULTS_T2_ITER", 200)
	h1, _ := sb.HostByName("h1")
	dir := sb.LBDir(h1)
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	svcs := make([]t2svc, 4)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	read := func() string {
		b, _ := os.ReadFile(cfgPath)
		return string(b)
	}
	hash := func(s string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(s)))[:12] }
	converge := func() string {
		var cfg string
		harness.Eventually(t, 60*time.Second, "haproxy.cfg matches the registered services", func() error {
			cfg = read()
			if !strings.HasPrefix(cfg, "# Generated by drover") {
				return fmt.Errorf("no config written yet")
			}
			return t2Matches(cfg, svcs)
		})
		return cfg
	}
	old := converge()
	var invalid, neither, crashStaging, killedMidWrite, targeted int
	leftSeen := map[string]bool{}
	var converges []time.Duration
	for i := 0; i < iters; i++ {
		k := rng.IntN(len(svcs))
		s := &svcs[k]
		switch {
		case !s.on:
			s.on, s.weight = true, 1+rng.IntN(200)
			if err := s.register(ctx, sb, k); err != nil {
				t.Fatal(err)
			}
		case rng.IntN(2) == 0:
			s.weight = 1 + (s.weight+1+rng.IntN(100))%255
			if err := s.register(ctx, sb, k); err != nil {
				t.Fatal(err)
			}
		default:
			s.on = false
			if err := deregisterT2(ctx, sb, k); err != nil {
				t.Fatal(err)
			}
		}
		if i%2 == 0 {
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		} else if waitStaging(dir, 3*time.Second) {
			// Aimed: the agent is validating or staging a file now.
			targeted++
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		}
		if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		crash := read()
		for _, n := range leftovers(dir) {
			if !leftSeen[n] {
				crashStaging++ // killed while this file was staged
				break
			}
		}
		// Validate the file as it was at the kill, in h1 (its paths).
		stage := filepath.Join(dir, "t2-crash.cfg")
		if err := os.WriteFile(stage, []byte(crash), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := sb.Output(ctx, "h1", "haproxy", "-c", "-q", "-f", stage); err != nil {
			invalid++
			t.Logf("iteration %d: haproxy.cfg at the kill does not parse: %v %s", i, err, out)
		}
		os.Remove(stage)
		restarted := time.Now()
		if err := sb.Start(ctx, "h1", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		cur := converge()
		converges = append(converges, time.Since(restarted))
		switch hash(crash) {
		case hash(old):
		case hash(cur):
			if hash(old) != hash(cur) {
				killedMidWrite++ // the kill came after the new file was in place
			}
		default:
			neither++
			t.Logf("iteration %d: haproxy.cfg at the kill (%s) is neither the old (%s) nor the new (%s) config", i, hash(crash), hash(old), hash(cur))
		}
		// A check file may be the restarted agent's own background file
		// write (after runtime ops) in progress: only what is left once
		// no file write is pending counts.
		_ = harness.Wait(15*time.Second, func() error {
			st, err := lbStateErr(ctx, sb)
			if err != nil {
				return err
			}
			if st.LB.PendingFile {
				return fmt.Errorf("a file write is pending")
			}
			return nil
		})
		for _, n := range leftovers(dir) {
			leftSeen[n] = true
		}
		old = cur
	}
	sort.Slice(converges, func(i, j int) bool { return converges[i] < converges[j] })
	p99 := converges[len(converges)*99/100]
	left := len(leftSeen)
	var names []string
	for n := range leftSeen {
		names = append(names, n)
	}
	sort.Strings(names)
	masters := haproxyMasters(t, sb, "h1")
	r := faultResult{
		Case: "T2", Title: fmt.Sprintf("kill -9 drover at random points of render/validate/swap/reload, %d iterations", iters),
		Promises: []string{"P1", "P16"},
		Figures: kv("iterations", iters, "invalid", invalid, "neither_old_nor_new", neither, "leftover_tmp", left,
			"kills_aimed_at_staging", targeted, "kills_with_staging_file", crashStaging, "kills_after_new_file", killedMidWrite, "converge_p99", p99.Round(10*time.Millisecond),
			"haproxy_masters", len(masters)),
		Target: "invalid=0 neither_old_nor_new=0 leftover_tmp=0 haproxy_masters=1",
		Pass:   invalid == 0 && neither == 0 && left == 0 && len(masters) == 1,
	}
	if left > 0 {
		r.Note = "stage or check files present after the restarted agent converged with no file write pending (a kill -9 leaves them; the next start removes them): " + strings.Join(names[:min(3, len(names))], ", ")
	}
	recordFault(t, begin, r)
	for k := range svcs {
		if svcs[k].on {
			_ = deregisterT2(ctx, sb, k)
		}
	}
}

// faultT17: HAProxy's master, then a worker, killed with SIGKILL under
// load, right after runtime changes: the agent restarts HAProxy from the
// file, and the server set that runs afterwards equals the desired one.
func faultT17(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	const url = "http://127.0.0.1:80/"
	runLB(ctx, t, sb, "h2", "t17-a")
	runLB(ctx, t, sb, "h2", "t17-b")
	waitUp(ctx, t, sb, "web", 2)
	for _, victim := range []string{"master", "worker"} {
		begin := time.Now()
		// A runtime change first (a server in, another out), so that a
		// restart from a stale file would show.
		in, out := "t17-c-"+victim, "t17-a"
		if victim == "worker" {
			out = "t17-c-master"
		}
		runLB(ctx, t, sb, "h2", in)
		waitUp(ctx, t, sb, "web", 3)
		if o, err := sb.Docker(ctx, "h2", "rm", "-f", out); err != nil {
			t.Fatalf("docker rm %s: %v %s", out, err, o)
		}
		waitUp(ctx, t, sb, "web", 2)
		want := lbState(ctx, t, sb).upServers("web")
		before := lbState(ctx, t, sb)
		if before.LB.Procs == nil {
			t.Fatal("no haproxy processes in status")
		}
		wait := startLoad(ctx, t, sb, url, 200, 20*time.Second)
		time.Sleep(3 * time.Second)
		h1, _ := sb.HostByName("h1")
		pid := sb.ProcessPID(h1, sandbox.ProcHAProxy)
		if victim == "worker" {
			pid = before.LB.Procs.Worker
		}
		if err := killPIDHard(pid); err != nil {
			t.Fatalf("kill -9 haproxy %s %d: %v", victim, pid, err)
		}
		killed := time.Now()
		var back time.Duration
		harness.Eventually(t, 30*time.Second, "HAProxy answers again", func() error {
			if _, err := sb.Output(ctx, "h1", "curl", "-sf", "-m", "1", "-o", "/dev/null", url); err != nil {
				return err
			}
			back = time.Since(killed)
			return nil
		})
		r := wait()
		var got []string
		equal := harness.Wait(15*time.Second, func() error {
			got = lbState(ctx, t, sb).upServers("web")
			if strings.Join(got, ",") != strings.Join(want, ",") {
				return fmt.Errorf("UP %v, want %v", got, want)
			}
			return nil
		}) == nil
		span := loadSpan(r)
		res := faultResult{
			Case: "T17", Title: "haproxy " + victim + " kill -9 under load (200 req/s)", Promises: []string{"P1", "P4"},
			Figures: kv("failed", fmt.Sprintf("%d/%d", r.Failed, r.OK+r.Failed), "downtime", span.Round(10*time.Millisecond),
				"answers_after", back.Round(10*time.Millisecond), "server_set_equal", yesNo(equal)),
			Target: "downtime≤3s server_set_equal=yes",
			Pass:   span <= 3*time.Second && equal,
		}
		if !equal {
			res.Note = fmt.Sprintf("after the restart HAProxy runs %v, desired %v", got, want)
		}
		res.Case = "T17-" + victim
		recordFault(t, begin, res)
	}
}

// loadSpan is the fail_span_ms of a load result.
func loadSpan(r loadResult) time.Duration {
	for _, f := range strings.Fields(r.Line) {
		if v, ok := strings.CutPrefix(f, "fail_span_ms="); ok {
			ms, _ := strconv.ParseFloat(v, 64)
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	return 0
}

// backendLines returns the enabled server addresses of backend be in
// haproxy.cfg, sorted.
func backendLines(cfg, be string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(cfg, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if f[0] == "backend" || f[0] == "frontend" || f[0] == "defaults" || f[0] == "global" {
			in = len(f) > 1 && f[0] == "backend" && f[1] == be
			continue
		}
		if in && f[0] == "server" && len(f) > 2 && !strings.Contains(l, " disabled") {
			out = append(out, f[2])
		}
	}
	sort.Strings(out)
	return out
}

// runtimeServers returns the addresses of backend be's servers that are
// not in maintenance, as HAProxy runs them.
func (s lbStatus) runtimeServers(be string) []string {
	var out []string
	for _, b := range s.LB.Backends {
		if b.Name != be {
			continue
		}
		for _, sv := range b.Servers {
			if !strings.HasPrefix(sv.Status, "MAINT") && sv.Addr != "" && !strings.HasPrefix(sv.Addr, "127.0.0.1:1") {
				out = append(out, sv.Addr)
			}
		}
	}
	sort.Strings(out)
	return out
}

// faultT19: 1,000 runtime cycles (an instance registered, then
// deregistered: set-addr + enable, then drain + disable) on a backend that
// takes traffic, then a reload: no failed request, no reload during the
// cycles, HAProxy never restarted, and the file and the runtime agree
// before and after the reload.
func faultT19(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	begin := time.Now()
	cycles := envInt("DROVER_FAULTS_T19_CYCLES", 1000)
	if os.Getenv("DROVER_FAULTS_SHORT") != "" {
		cycles = 100
	}
	// Four plain containers (no drover labels): t19's instances are
	// registered straight through Consul with their addresses.
	var ips []string
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("t19-%d", i)
		if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", name, "--network", "drover", sandbox.DemoImage); err != nil {
			t.Fatalf("docker run %s: %v %s", name, err, out)
		}
		ip, err := sb.Docker(ctx, "h2", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
		if err != nil {
			t.Fatal(err)
		}
		ips = append(ips, strings.TrimSpace(ip))
	}
	defer func() {
		for i := 0; i < 4; i++ {
			_, _ = sb.Output(ctx, "h2", "consul", "services", "deregister", "-id", fmt.Sprintf("t19-%d", i))
			_, _ = sb.Docker(ctx, "h2", "rm", "-f", fmt.Sprintf("t19-%d", i))
		}
	}()
	reg := func(i int) error {
		_, err := sb.Output(ctx, "h2", "consul", "services", "register", "-id", fmt.Sprintf("t19-%d", i), "-name", "t19",
			"-address", ips[i], "-port", "8080", "-meta", contract.KeyLBMode+"=http", "-meta", contract.KeyLBPort+"=9400",
			// As a drover agent would: the lb proxies only instances whose
			// drover_node has a drover-node record (the origin check).
			"-meta", discovery.MetaNode+"=h2")
		return err
	}
	dereg := func(i int) error {
		_, err := sb.Output(ctx, "h2", "consul", "services", "deregister", "-id", fmt.Sprintf("t19-%d", i))
		return err
	}
	for i := 0; i < 2; i++ {
		if err := reg(i); err != nil {
			t.Fatal(err)
		}
	}
	waitUp(ctx, t, sb, "t19", 2)
	h1, _ := sb.HostByName("h1")
	cfgPath := filepath.Join(sb.LBDir(h1), "haproxy.cfg")
	before := lbState(ctx, t, sb)
	master := sb.ProcessPID(h1, sandbox.ProcHAProxy)
	// The load runs while the cycles do; the test stops it by its stop file.
	stopFile := filepath.Join(h1.Dir, "t19.stop")
	os.Remove(stopFile)
	cmd, err := sb.Command(ctx, "h1", "drover-demo", "load", "-rate", "100", "-duration", "10m", "-concurrency", "16", "-stop-file", stopFile, "http://127.0.0.1:9400/")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for c := 0; c < cycles; c++ {
		i := 2 + c%2
		if err := reg(i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if err := dereg(i); err != nil {
			t.Fatal(err)
		}
	}
	cycling := time.Since(start)
	// Settle: the two steady instances only.
	var fileSet, runSet []string
	settled := harness.Wait(30*time.Second, func() error {
		b, _ := os.ReadFile(cfgPath)
		fileSet, runSet = backendLines(string(b), "t19"), lbState(ctx, t, sb).runtimeServers("t19")
		if strings.Join(fileSet, ",") != strings.Join(runSet, ",") || len(runSet) != 2 {
			return fmt.Errorf("file %v runtime %v", fileSet, runSet)
		}
		return nil
	}) == nil
	mid := lbState(ctx, t, sb)
	// A reload (a new frontend), then the running set again.
	s := t2svc{on: true, weight: 5}
	if err := s.register(ctx, sb, 60); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, "one reload", func() error {
		if lbState(ctx, t, sb).LB.Reloads <= mid.LB.Reloads {
			return fmt.Errorf("no reload yet")
		}
		return nil
	})
	var afterSet []string
	same := harness.Wait(15*time.Second, func() error {
		afterSet = lbState(ctx, t, sb).runtimeServers("t19")
		if strings.Join(afterSet, ",") != strings.Join(runSet, ",") {
			return fmt.Errorf("after the reload %v, before %v", afterSet, runSet)
		}
		return nil
	}) == nil
	_ = deregisterT2(ctx, sb, 60)
	_ = os.WriteFile(stopFile, nil, 0o600)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	r, err := parseLoad(out.String())
	if err != nil {
		t.Fatal(err)
	}
	restarted := sb.ProcessPID(h1, sandbox.ProcHAProxy) != master
	reloads := mid.LB.Reloads - before.LB.Reloads
	recordFault(t, begin, faultResult{Case: "T19", Title: fmt.Sprintf("%d runtime cycles (register/deregister → set-addr+enable / drain+disable) under 100 req/s, then a reload", cycles),
		Promises: []string{"P3", "P4"},
		Figures: kv("cycles_per_s", fmt.Sprintf("%.1f", float64(cycles)/cycling.Seconds()), "runtime_ops", mid.LB.RuntimeOps-before.LB.RuntimeOps,
			"failed", fmt.Sprintf("%d/%d", r.Failed, r.OK+r.Failed), "reloads_during", reloads, "haproxy_restarted", yesNo(restarted),
			"file_vs_runtime_equal", yesNo(settled), "runtime_same_after_reload", yesNo(same)),
		Target: "failed=0 reloads_during=0 haproxy_restarted=no file_vs_runtime_equal=yes runtime_same_after_reload=yes",
		Pass:   r.Failed == 0 && reloads == 0 && !restarted && settled && same})
}

// faultT11: 30 % of the packets h2 sends on the underlay dropped (one
// way) for a minute while web (2 instances on h2, Consul and HAProxy
// checks every second) takes load through h1: structure stays (no
// reload); the figures are the runtime changes and failed requests.
func faultT11(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	begin := time.Now()
	d := envDuration("DROVER_FAULTS_T11_FOR", 60*time.Second)
	if os.Getenv("DROVER_FAULTS_SHORT") != "" {
		d = 30 * time.Second
	}
	runLB(ctx, t, sb, "h2", "t11-a")
	runLB(ctx, t, sb, "h2", "t11-b")
	defer func() { _, _ = sb.Docker(ctx, "h2", "rm", "-f", "t11-a", "t11-b") }()
	harness.Eventually(t, 30*time.Second, "t11 replicas UP", func() error {
		if n := len(lbState(ctx, t, sb).upServers("web")); n < 2 {
			return fmt.Errorf("%d UP", n)
		}
		return nil
	})
	before := lbState(ctx, t, sb)
	for _, args := range [][]string{
		{"add", "table", "inet", "drvfault"},
		{"add", "chain", "inet", "drvfault", "out", "{ type filter hook output priority 0 ; }"},
		{"add", "rule", "inet", "drvfault", "out", "oifname", "eth0", "numgen", "random", "mod", "100", "lt", "30", "drop"},
	} {
		if out, err := sb.Output(ctx, "h2", append([]string{"nft"}, args...)...); err != nil {
			t.Fatalf("nft %v: %v %s", args, err, out)
		}
	}
	lossy := time.Now()
	r := startLoad(ctx, t, sb, "http://127.0.0.1:80/", 100, d)()
	mins := time.Since(lossy).Minutes()
	during := lbState(ctx, t, sb)
	if out, err := sb.Output(ctx, "h2", "nft", "delete", "table", "inet", "drvfault"); err != nil {
		t.Fatalf("removing the loss: %v %s", err, out)
	}
	reloads := during.LB.Reloads - before.LB.Reloads
	recordFault(t, begin, faultResult{Case: "T11", Title: fmt.Sprintf("30 %% loss on what h2 sends (nft numgen, one way) for %.0f s, 100 req/s through h1 to web on h2", d.Seconds()),
		Promises: []string{"P3"},
		Figures: kv("reloads_per_min", fmt.Sprintf("%.1f", float64(reloads)/mins),
			"runtime_ops_per_min", fmt.Sprintf("%.1f", float64(during.LB.RuntimeOps-before.LB.RuntimeOps)/mins),
			"failed", fmt.Sprintf("%d/%d", r.Failed, r.OK+r.Failed), "p99_ms", fmt.Sprintf("%.0f", r.P99)),
		Target: "reloads=0 (failed and runtime ops recorded)",
		Pass:   reloads == 0})
}

// faultT18: one structural change a second (a frontend added, then
// removed) for 10 minutes (60 s with DROVER_FAULTS_SHORT), with the agent
// at --lb-reload-interval 1s, under 100 req/s and 20 long-lived
// downloads: no failed request, old workers bounded, no failed reload.
func faultT18(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	begin := time.Now()
	d := envDuration("DROVER_FAULTS_T18_FOR", 10*time.Minute)
	if os.Getenv("DROVER_FAULTS_SHORT") != "" {
		d = 60 * time.Second
	}
	if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(ctx, "h1", sandbox.ProcAgent, "--lb-reload-interval", "1s"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = sb.Kill("h1", sandbox.ProcAgent)
		_ = sb.Start(ctx, "h1", sandbox.ProcAgent)
	}()
	runLB(ctx, t, sb, "h2", "t18-a")
	runLB(ctx, t, sb, "h2", "t18-b")
	defer func() { _, _ = sb.Docker(ctx, "h2", "rm", "-f", "t18-a", "t18-b") }()
	harness.Eventually(t, 30*time.Second, "t18 replicas UP", func() error {
		if n := len(lbState(ctx, t, sb).upServers("web")); n < 2 {
			return fmt.Errorf("%d UP", n)
		}
		return nil
	})
	before := lbState(ctx, t, sb)
	// Long-lived: 20 downloads of the whole window at 10 kB/s each.
	secs := int(d.Seconds()) + 5
	longDone := make(chan error, 20)
	for i := 0; i < 20; i++ {
		go func() {
			out, err := sb.Output(ctx, "h1", "drover-demo", "get", "-count", "-timeout", fmt.Sprintf("%ds", secs+30),
				fmt.Sprintf("http://127.0.0.1:80/stream?seconds=%d&rate=10000", secs))
			if err == nil && !strings.Contains(out, fmt.Sprintf("received %d bytes", secs*10000)) {
				err = fmt.Errorf("long download: %s", out)
			}
			longDone <- err
		}()
	}
	wait := startLoad(ctx, t, sb, "http://127.0.0.1:80/", 100, d)
	start := time.Now()
	maxOld, changes := 0, 0
	for k := 0; time.Since(start) < d; k++ {
		// One service whose frontend port moves every second: a
		// structural change each time (adding and removing a whole
		// service would be held as a suspicious shrink instead).
		_, err := sb.Output(ctx, "h2", "consul", "services", "register", "-id", "t2-svc70", "-name", "t2svc70",
			"-address", "10.99.0.12", "-port", "8150", "-meta", contract.KeyLBMode+"=http",
			"-meta", contract.KeyLBPort+"="+strconv.Itoa(9170+k%2), "-meta", discovery.MetaNode+"=h2")
		if err != nil {
			t.Fatal(err)
		}
		changes++
		if st, err := lbStateErr(ctx, sb); err == nil && st.LB.Procs != nil {
			maxOld = max(maxOld, st.ProcsOld())
		}
		time.Sleep(time.Until(start.Add(time.Duration(k+1) * time.Second)))
	}
	r := wait()
	longFailed := 0
	var longErr error
	for i := 0; i < 20; i++ {
		if err := <-longDone; err != nil {
			longFailed++
			longErr = err
		}
	}
	_ = deregisterT2(ctx, sb, 70)
	masters := haproxyMasters(t, sb, "h1")
	after := lbState(ctx, t, sb)
	reloads := after.LB.Reloads - before.LB.Reloads
	failedReloads := after.LB.FailedReloads - before.LB.FailedReloads
	res := faultResult{Case: "T18", Title: fmt.Sprintf("a structural change every second for %s (--lb-reload-interval 1s) under 100 req/s + 20 long downloads", d),
		Promises: []string{"P3"},
		Figures: kv("changes", changes, "reloads", reloads, "failed", fmt.Sprintf("%d/%d", r.Failed, r.OK+r.Failed), "p99_ms", fmt.Sprintf("%.0f", r.P99),
			"long_failed", fmt.Sprintf("%d/20", longFailed), "max_old_workers", maxOld, "failed_reloads", failedReloads, "haproxy_masters", len(masters)),
		Target: "failed=0 long_failed=0 failed_reloads=0 max_old_workers≤mworker-max-reloads(hard-stop-after/reload-interval+1, 50..1000) reloads≥changes/4 (the changes did reload) haproxy_masters=1",
		Pass:   r.Failed == 0 && longFailed == 0 && failedReloads == 0 && maxOld <= lb.MaxReloadsFor(lb.DefaultHardStopAfter, time.Second) && reloads >= int64(changes/4) && len(masters) == 1}
	if longErr != nil {
		res.Note = "long download: " + longErr.Error()
	}
	recordFault(t, begin, res)
}

// ProcsOld is the number of old HAProxy workers still finishing
// connections.
func (s lbStatus) ProcsOld() int {
	if s.LB.Procs == nil {
		return 0
	}
	return len(s.LB.Procs.OldWorkers)
}

// haproxyMasters lists the HAProxy masters running host's lb config: the
// processes whose command line names that haproxy.cfg and whose parent is
// not one of them (workers are the masters' children). More than one
// means two masters share the frontends' ports.
func haproxyMasters(t *testing.T, sb *sandbox.Sandbox, host string) []int {
	t.Helper()
	h, err := sb.HostByName(host)
	if err != nil {
		t.Fatal(err)
	}
	return procs.HAProxyMasters(filepath.Join(sb.LBDir(h), "haproxy.cfg"))
}
