//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// lbStatus is the lb part of `drover status --json`.
type lbStatus struct {
	LB struct {
		Frontends []struct {
			Name string `json:"Name"`
			Port int    `json:"Port"`
		} `json:"frontends"`
		Backends []struct {
			Name    string `json:"name"`
			Slots   int    `json:"slots"`
			Servers []struct {
				Slot   string `json:"slot"`
				Addr   string `json:"addr"`
				Status string `json:"status"`
			} `json:"servers"`
		} `json:"backends"`
		Stale         bool     `json:"stale"`
		PendingFile   bool     `json:"pending_file"`
		Holding       []string `json:"holding"`
		RuntimeOps    int64    `json:"runtime_ops"`
		Reloads       int64    `json:"reloads"`
		FailedReloads int64    `json:"failed_reloads"`
		Procs         *struct {
			Worker     int   `json:"Worker"`
			OldWorkers []int `json:"OldWorkers"`
		} `json:"processes"`
	} `json:"lb"`
}

func lbState(ctx context.Context, t testing.TB, sb *sandbox.Sandbox) lbStatus {
	t.Helper()
	out, err := sb.Output(ctx, "h1", "drover", "status", "--json")
	if err != nil {
		t.Fatalf("drover status on h1: %v", err)
	}
	var st lbStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("drover status --json: %v\n%s", err, out)
	}
	return st
}

// upServers returns the addresses of backend be's servers that HAProxy
// reports UP.
func (s lbStatus) upServers(be string) []string {
	var out []string
	for _, b := range s.LB.Backends {
		if b.Name != be {
			continue
		}
		for _, sv := range b.Servers {
			if strings.HasPrefix(sv.Status, "UP") {
				out = append(out, sv.Addr)
			}
		}
	}
	sort.Strings(out)
	return out
}

// scraped reports whether backend be's servers carry HAProxy's status:
// drover status leaves it empty when HAProxy's stats socket did not answer
// within its 2 s (e.g. during a reload).
func (s lbStatus) scraped(be string) bool {
	for _, b := range s.LB.Backends {
		if b.Name != be {
			continue
		}
		for _, sv := range b.Servers {
			if sv.Status == "" {
				return false
			}
		}
	}
	return true
}

// statuses lists backend be's servers as slot=status (status "?" when
// drover's status did not have HAProxy's), for the record of a bad sample.
func (s lbStatus) statuses(be string) string {
	var out []string
	for _, b := range s.LB.Backends {
		if b.Name != be {
			continue
		}
		for _, sv := range b.Servers {
			st := sv.Status
			if st == "" {
				st = "?"
			}
			out = append(out, sv.Slot+"="+strings.ReplaceAll(st, " ", "_"))
		}
	}
	return strings.Join(out, ",")
}

// runLB starts a web replica with lb labels on host.
func runLB(ctx context.Context, t testing.TB, sb *sandbox.Sandbox, host, name string, extra ...string) {
	t.Helper()
	args := []string{"run", "-d", "--name", name, "--hostname", name, "--network", "drover",
		"-l", "drover.service=web", "-l", "drover.lb.mode=http",
		"-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s"}
	args = append(args, extra...)
	args = append(args, sandbox.DemoImage)
	if out, err := sb.Docker(ctx, host, args...); err != nil {
		t.Fatalf("docker run %s on %s: %v %s", name, host, err, out)
	}
}

// waitUp waits until HAProxy on h1 has exactly n servers UP in backend be.
func waitUp(ctx context.Context, t testing.TB, sb *sandbox.Sandbox, be string, n int) {
	t.Helper()
	harness.Eventually(t, 30*time.Second, fmt.Sprintf("%d servers UP in backend %s", n, be), func() error {
		if up := lbState(ctx, t, sb).upServers(be); len(up) != n {
			return fmt.Errorf("UP: %v", up)
		}
		return nil
	})
}

// loadResult is drover-demo load's summary line.
type loadResult struct {
	OK, Failed int
	P50, P99   float64
	Max        float64 // max_ms, the slowest request
	By         map[string]int
	Line       string
}

func parseLoad(out string) (loadResult, error) {
	r := loadResult{By: map[string]int{}}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "load ") {
			continue
		}
		r.Line = line
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "ok":
				r.OK, _ = strconv.Atoi(v)
			case "failed":
				r.Failed, _ = strconv.Atoi(v)
			case "p50_ms":
				r.P50, _ = strconv.ParseFloat(v, 64)
			case "p99_ms":
				r.P99, _ = strconv.ParseFloat(v, 64)
			case "max_ms":
				r.Max, _ = strconv.ParseFloat(v, 64)
			case "by":
				for _, hv := range strings.Split(v, ",") {
					h, n, _ := strings.Cut(hv, ":")
					r.By[h], _ = strconv.Atoi(n)
				}
			}
		}
		return r, nil
	}
	return r, fmt.Errorf("no summary line in %q", out)
}

// startLoad runs drover-demo load inside h1 against url; wait returns its
// result. flags go to drover-demo load before the URL (a later flag wins,
// e.g. "-concurrency", "8" over the default 16).
func startLoad(ctx context.Context, t testing.TB, sb *sandbox.Sandbox, url string, rate int, d time.Duration, flags ...string) (wait func() loadResult) {
	t.Helper()
	args := []string{"drover-demo", "load", "-rate", strconv.Itoa(rate), "-duration", d.String(), "-concurrency", "16"}
	cmd, err := sb.Command(ctx, "h1", append(append(args, flags...), url)...)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() loadResult {
		t.Helper()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("load: %v\n%s%s", err, out.String(), errb.String())
		}
		r, err := parseLoad(out.String())
		if err != nil {
			t.Fatal(err)
		}
		if errb.Len() > 0 {
			t.Logf("load stderr:\n%s", errb.String())
		}
		t.Logf("%s", r.Line)
		return r
	}
}

// TestLB proves the load balancer end to end: replicas on h2 and h3 behind
// HAProxy on h1 (managed by h1's agent), scaling and rolling replacement
// under constant load with no failed request and no reload, a killed
// backend leaving rotation, a new frontend costing exactly one reload, and
// a Consul outage under load changing nothing.
func TestLB(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvl", Hosts: 3, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if t.Failed() {
			h, _ := sb.HostByName("h1")
			for _, f := range []string{"haproxy.cfg", "haproxy.log"} {
				b, _ := os.ReadFile(filepath.Join(sb.LBDir(h), f))
				t.Logf("h1 %s:\n%s", f, b)
			}
			out, _ := sb.Output(context.Background(), "h1", "drover", "status")
			t.Logf("h1 drover status:\n%s", out)
			logLBLines(t, h)
		}
	})
	const url = "http://127.0.0.1:80/"

	t.Run("replicas on h2 and h3 answer through HAProxy on h1", func(t *testing.T) {
		runLB(ctx, t, sb, "h2", "web-a")
		runLB(ctx, t, sb, "h3", "web-b")
		waitUp(ctx, t, sb, "web", 2)
		r := startLoad(ctx, t, sb, url, 50, 2*time.Second)()
		if r.Failed != 0 || r.By["web-a"] == 0 || r.By["web-b"] == 0 {
			t.Fatalf("want answers from web-a (h2) and web-b (h3), no failures: %s", r.Line)
		}
		out, err := sb.Output(ctx, "h1", "drover", "status")
		if err != nil || !strings.Contains(out, "BACKEND") {
			t.Fatalf("drover status: %v\n%s", err, out)
		}
		t.Logf("drover status on h1:\n%s", out)
	})

	t.Run("scale 1-5-1 and rolling replace under load: 0 failed, 0 reloads", func(t *testing.T) {
		before := lbState(ctx, t, sb)
		wait := startLoad(ctx, t, sb, url, 100, 70*time.Second)
		begin := time.Now()
		stop := func(name, host string) {
			if out, err := sb.Docker(ctx, host, "stop", "-t", "10", name); err != nil {
				t.Fatalf("docker stop %s: %v %s", name, err, out)
			}
			_, _ = sb.Docker(ctx, host, "rm", name)
		}
		host := func(i int) string { return []string{"h2", "h3"}[i%2] }
		// 2 → 1
		stop("web-b", "h3")
		waitUp(ctx, t, sb, "web", 1)
		live := []string{"web-a"}
		hostOf := map[string]string{"web-a": "h2"}
		n := 0
		for round := 0; time.Since(begin) < 55*time.Second; round++ {
			// 1 → 5
			for len(live) < 5 {
				n++
				name := fmt.Sprintf("web-s%d", n)
				runLB(ctx, t, sb, host(n), name)
				live, hostOf[name] = append(live, name), host(n)
			}
			waitUp(ctx, t, sb, "web", 5)
			if round%2 == 1 {
				// Replace every container one by one.
				for i, old := range live {
					n++
					name := fmt.Sprintf("web-r%d", n)
					runLB(ctx, t, sb, host(n), name)
					hostOf[name] = host(n)
					waitUp(ctx, t, sb, "web", 6)
					stop(old, hostOf[old])
					waitUp(ctx, t, sb, "web", 5)
					live[i] = name
				}
			}
			// 5 → 1
			for len(live) > 1 {
				old := live[len(live)-1]
				stop(old, hostOf[old])
				live = live[:len(live)-1]
			}
			waitUp(ctx, t, sb, "web", 1)
		}
		r := wait()
		after := lbState(ctx, t, sb)
		t.Logf("scaled and replaced %d containers in %s; runtime ops %d, reloads %d",
			n, time.Since(begin).Round(time.Second), after.LB.RuntimeOps-before.LB.RuntimeOps, after.LB.Reloads-before.LB.Reloads)
		if r.Failed != 0 || r.OK < 5000 {
			t.Errorf("want 0 failed requests of ≥5000: %s", r.Line)
		}
		if d := after.LB.Reloads - before.LB.Reloads; d != 0 {
			t.Errorf("server-only changes reloaded HAProxy %d times, want 0", d)
		}
		if after.LB.RuntimeOps == before.LB.RuntimeOps {
			t.Errorf("no runtime ops counted")
		}
	})

	t.Run("docker kill of a backend under load leaves rotation", func(t *testing.T) {
		runLB(ctx, t, sb, "h3", "web-k")
		waitUp(ctx, t, sb, "web", 2)
		wait := startLoad(ctx, t, sb, url, 100, 15*time.Second)
		time.Sleep(3 * time.Second)
		killed := time.Now()
		if out, err := sb.Docker(ctx, "h3", "kill", "web-k"); err != nil {
			t.Fatalf("docker kill: %v %s", err, out)
		}
		waitUp(ctx, t, sb, "web", 1)
		t.Logf("killed backend out of rotation after %s (check interval 1s × fall 3 = 3s)", time.Since(killed).Round(10*time.Millisecond))
		r := wait()
		t.Logf("requests failed during the kill: %d of %d (target 0; retries + redispatch)", r.Failed, r.OK+r.Failed)
		if r.Failed != 0 {
			t.Errorf("failed requests during a backend kill: %s", r.Line)
		}
	})

	t.Run("a new service with a new frontend: one reload, 0 failed on existing", func(t *testing.T) {
		before := lbState(ctx, t, sb)
		wait := startLoad(ctx, t, sb, url, 100, 12*time.Second)
		time.Sleep(2 * time.Second)
		if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "api-1", "--hostname", "api-1", "--network", "drover",
			"-l", "drover.service=api", "-l", "drover.lb.mode=http", "-l", "drover.lb.port=8081",
			"-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s", sandbox.DemoImage); err != nil {
			t.Fatalf("docker run api-1: %v %s", err, out)
		}
		harness.Eventually(t, 30*time.Second, "api answers on h1:8081", func() error {
			out, err := sb.Output(ctx, "h1", "curl", "-sf", "-m", "2", "http://127.0.0.1:8081/")
			if err != nil || !strings.Contains(out, "host=api-1") {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
		r := wait()
		after := lbState(ctx, t, sb)
		if d := after.LB.Reloads - before.LB.Reloads; d != 1 {
			t.Errorf("a new frontend took %d reloads, want 1", d)
		}
		if r.Failed != 0 {
			t.Errorf("failed requests on the existing frontend during the reload: %s", r.Line)
		}
	})

	t.Run("Consul server down 60s under load: 0 failed, no change; then at most one reload", func(t *testing.T) {
		before := lbState(ctx, t, sb)
		wait := startLoad(ctx, t, sb, url, 100, 70*time.Second)
		time.Sleep(2 * time.Second)
		if _, err := sb.Kill("c1", sandbox.ProcConsul); err != nil {
			t.Fatal(err)
		}
		down := time.Now()
		harness.Eventually(t, 30*time.Second, "lb reports stale", func() error {
			if !lbState(ctx, t, sb).LB.Stale {
				return fmt.Errorf("not stale yet")
			}
			return nil
		})
		out, _ := sb.Output(ctx, "h1", "drover", "status")
		t.Logf("drover status while Consul is down:\n%s", grepLines(out, "lb ("))
		time.Sleep(time.Until(down.Add(60 * time.Second)))
		during := lbState(ctx, t, sb)
		if during.LB.Reloads != before.LB.Reloads || during.LB.RuntimeOps != before.LB.RuntimeOps {
			t.Errorf("HAProxy changed while Consul was down: reloads %d → %d, runtime ops %d → %d",
				before.LB.Reloads, during.LB.Reloads, before.LB.RuntimeOps, during.LB.RuntimeOps)
		}
		if err := sb.Start(ctx, "c1", sandbox.ProcConsul); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 60*time.Second, "lb fresh again", func() error {
			if lbState(ctx, t, sb).LB.Stale {
				return fmt.Errorf("still stale")
			}
			return nil
		})
		r := wait()
		after := lbState(ctx, t, sb)
		if d := after.LB.Reloads - before.LB.Reloads; d > 1 {
			t.Errorf("converging after the outage took %d reloads, want ≤ 1", d)
		}
		if r.Failed != 0 {
			t.Errorf("failed requests during the Consul outage: %s", r.Line)
		}
		if up := after.upServers("web"); len(up) != 1 {
			t.Errorf("after the outage web has UP servers %v, want 1", up)
		}
	})

	t.Run("agent restart under load: HAProxy keeps running, nothing reloaded", func(t *testing.T) {
		before := lbState(ctx, t, sb)
		if before.LB.Procs == nil {
			t.Fatal("no haproxy processes in status")
		}
		wait := startLoad(ctx, t, sb, url, 100, 8*time.Second)
		time.Sleep(time.Second)
		if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		if err := sb.Start(ctx, "h1", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		after := lbState(ctx, t, sb)
		r := wait()
		if r.Failed != 0 {
			t.Errorf("failed requests across an agent restart: %s", r.Line)
		}
		if after.LB.Procs == nil || after.LB.Procs.Worker != before.LB.Procs.Worker {
			t.Errorf("haproxy worker changed across an agent restart: %+v → %+v", before.LB.Procs, after.LB.Procs)
		}
		if after.LB.Reloads != 0 || after.LB.RuntimeOps != 0 {
			t.Errorf("restarted agent with nothing changed: %d reloads, %d runtime ops; want none", after.LB.Reloads, after.LB.RuntimeOps)
		}
	})

	t.Run("metrics report the lb", func(t *testing.T) {
		out, err := sb.Output(ctx, "h1", "curl", "-sf", "http://127.0.0.1:9714/metrics")
		if err != nil {
			t.Fatal(err)
		}
		st := lbState(ctx, t, sb)
		for _, want := range []string{
			fmt.Sprintf("drover_lb_reloads_total %d", st.LB.Reloads),
			fmt.Sprintf("drover_lb_runtime_ops_total %d", st.LB.RuntimeOps),
			`drover_lb_servers{backend="web",status="UP"} 1`,
			`drover_lb_servers{backend="api",status="UP"} 1`,
			"drover_lb_stale 0",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("metrics lack %q:\n%s", want, grepLines(out, "drover_lb_"))
			}
		}
	})
}

// TestLBExternal drives an HAProxy that drover did not start
// (--haproxy-mode external, as in deploy/docker-compose.yml): the agent
// writes the first config and waits for the master socket; HAProxy is then
// started by someone else from that file; a replica on h2 answers through
// h1, a second one joins through the runtime API, and killing the agent
// leaves HAProxy serving.
func TestLBExternal(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drve", Hosts: 2, Agents: true, LB: "none"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h1, _ := sb.HostByName("h1")
	dir := filepath.Join(h1.Dir, "ext-haproxy")
	cfg, sock := filepath.Join(dir, "haproxy.cfg"), filepath.Join(dir, "master.sock")
	if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- sb.Start(ctx, "h1", sandbox.ProcAgent, "--lb", "--haproxy-mode", "external", "--lb-dir", dir,
			"--haproxy-config", cfg, "--haproxy-master-socket", sock)
	}()
	harness.Eventually(t, 30*time.Second, "agent writes the first config", func() error {
		_, err := os.Stat(cfg)
		return err
	})
	hp, err := sb.Command(ctx, "h1", "haproxy", "-W", "-S", sock+",mode,600", "-f", cfg)
	if err != nil {
		t.Fatal(err)
	}
	logf, _ := os.Create(filepath.Join(dir, "external-haproxy.log"))
	hp.Stdout, hp.Stderr = logf, logf
	if err := hp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hp.Process.Kill(); _ = hp.Wait() })
	if err := <-agentDone; err != nil {
		t.Fatalf("agent with --haproxy-mode external: %v", err)
	}
	runLB(ctx, t, sb, "h2", "ext-a")
	waitUp(ctx, t, sb, "web", 1)
	runLB(ctx, t, sb, "h2", "ext-b")
	waitUp(ctx, t, sb, "web", 2)
	st := lbState(ctx, t, sb)
	if st.LB.Procs == nil || st.LB.Procs.Worker == 0 {
		t.Errorf("status shows no haproxy worker: %+v", st.LB)
	}
	if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
		t.Fatal(err)
	}
	r := startLoad(ctx, t, sb, "http://127.0.0.1:80/", 50, 2*time.Second)()
	if r.Failed != 0 || r.By["ext-a"] == 0 || r.By["ext-b"] == 0 {
		t.Errorf("with the agent dead, the external HAProxy should keep serving both replicas: %s", r.Line)
	}
}

// logLBLines logs the lb's and HAProxy adapter's lines of host h's agent
// log (its reloads with their reasons, holds, staleness), without the
// access log, which buries them in the harness's tail of the log.
func logLBLines(t *testing.T, h sandbox.Host) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.Dir, "agent.log"))
	if err != nil {
		t.Logf("%s agent log: %v", h.Name, err)
		return
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "component=lb") || strings.Contains(l, "component=haproxy") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 200 {
		keep = keep[len(keep)-200:]
	}
	t.Logf("%s agent log, lb lines (last %d):\n%s", h.Name, len(keep), strings.Join(keep, "\n"))
}
