//go:build e2e && faults

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// TestFaultDocker runs the Docker event cases on one host: T13 (the agent
// stopped while more events happen than dockerd keeps) and T14 (churn).
func TestFaultDocker(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "fd", Hosts: 1, Agents: true, LB: "none"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	waitNetwork(ctx, t, sb, "h1")
	t.Run("T13", func(t *testing.T) { faultT13(ctx, t, sb) })
	t.Run("T14", func(t *testing.T) { faultT14(ctx, t, sb) })
}

// agentServices returns h1's drover-owned registrations of service svc:
// service ID → the container ID (12 hex) it names.
func agentServices(ctx context.Context, sb *sandbox.Sandbox, svc string) (map[string]string, error) {
	out, err := sb.Output(ctx, "h1", "curl", "-sf", sandbox.ConsulURL+"/v1/agent/services")
	if err != nil {
		return nil, err
	}
	var m map[string]struct {
		ID, Service string
		Meta        map[string]string
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("decoding agent services: %w", err)
	}
	got := map[string]string{}
	for id, s := range m {
		if s.Service != svc || !strings.HasPrefix(id, "drover:h1:") {
			continue
		}
		f := strings.Split(id, ":")
		if len(f) >= 3 {
			got[id] = f[2]
		}
	}
	return got, nil
}

// runningLabelled returns the short IDs of h1's running containers with
// drover.service=svc.
func runningLabelled(ctx context.Context, sb *sandbox.Sandbox, svc string) (map[string]bool, error) {
	out, err := sb.Docker(ctx, "h1", "ps", "-q", "--no-trunc", "--filter", "label=drover.service="+svc)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, l := range strings.Fields(out) {
		ids[l[:12]] = true
	}
	return ids, nil
}

// regDiff compares registrations with running containers: orphans are
// registered and not running, missed running and not registered, dups
// containers with more than one registration.
func regDiff(reg map[string]string, running map[string]bool) (orphans, missed, dups int) {
	per := map[string]int{}
	for _, c := range reg {
		per[c]++
	}
	for c, n := range per {
		if !running[c] {
			orphans++
		}
		if n > 1 {
			dups += n - 1
		}
	}
	for c := range running {
		if per[c] == 0 {
			missed++
		}
	}
	return orphans, missed, dups
}

// converged waits until h1's registrations of svc equal its running
// containers and returns how long that took, and the last difference.
func converged(ctx context.Context, sb *sandbox.Sandbox, svc string, d time.Duration) (time.Duration, int, int, int) {
	begin := time.Now()
	var o, m, dup int
	err := harness.Wait(d, func() error {
		reg, err := agentServices(ctx, sb, svc)
		if err != nil {
			return err
		}
		run, err := runningLabelled(ctx, sb, svc)
		if err != nil {
			return err
		}
		o, m, dup = regDiff(reg, run)
		if o+m+dup > 0 {
			return fmt.Errorf("orphans %d missed %d duplicates %d", o, m, dup)
		}
		return nil
	})
	if err != nil {
		return d, o, m, dup
	}
	return time.Since(begin), 0, 0, 0
}

// dockerEvents counts container events on h1 between since and until:
// lifecycle ones (create, start, die, destroy, …) and all (with the
// image's HEALTHCHECK exec events).
func dockerEvents(ctx context.Context, sb *sandbox.Sandbox, since, until time.Time) (lifecycle, all int) {
	out, err := sb.Docker(ctx, "h1", "events", "--since", strconv.FormatInt(since.Unix(), 10),
		"--until", strconv.FormatInt(until.Unix()+1, 10), "--filter", "type=container", "--format", "{{.Action}}")
	if err != nil {
		return -1, -1
	}
	for _, a := range strings.Fields(out) {
		all++
		if !strings.HasPrefix(a, "exec_") {
			lifecycle++
		}
	}
	return lifecycle, all
}

func runT(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, name, svc string, extra ...string) {
	t.Helper()
	args := append([]string{"run", "-d", "--name", name, "--network", "drover", "-l", "drover.service=" + svc,
		"-l", "drover.check=none"}, extra...)
	args = append(args, sandbox.DemoImage)
	if out, err := sb.Docker(ctx, "h1", args...); err != nil {
		t.Fatalf("docker run %s: %v %s", name, err, out)
	}
}

// faultT13: SIGSTOP the agent while ≥ 500 container events happen (more
// than the 256 dockerd keeps), SIGCONT: it converges by listing, not by
// replaying events: no orphan, no container missed, within one resync
// period (30 s).
func faultT13(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	begin := time.Now()
	const svc = "t13"
	want := envInt("DROVER_FAULTS_T13_EVENTS", 500)
	if os.Getenv("DROVER_FAULTS_SHORT") != "" {
		want = 300 // still more than dockerd's 256
	}
	for i := 0; i < 10; i++ {
		runT(ctx, t, sb, fmt.Sprintf("t13-pre-%d", i), svc)
	}
	if took, o, m, d := converged(ctx, sb, svc, 30*time.Second); o+m+d > 0 {
		t.Fatalf("before the stop: not converged after %s (orphans %d missed %d dups %d)", took, o, m, d)
	}
	h1, _ := sb.HostByName("h1")
	pid := sb.ProcessPID(h1, sandbox.ProcAgent)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	cont := func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	defer cont()
	for i := 0; i < 10; i++ {
		_, _ = sb.Docker(ctx, "h1", "rm", "-f", fmt.Sprintf("t13-pre-%d", i))
	}
	n, all := 0, 0
	for i := 0; ; i++ {
		name := fmt.Sprintf("t13-x-%d", i)
		runT(ctx, t, sb, name, svc)
		if i%3 != 0 {
			if out, err := sb.Docker(ctx, "h1", "rm", "-f", name); err != nil {
				t.Fatalf("docker rm %s: %v %s", name, err, out)
			}
		}
		if i%5 == 4 {
			if n, all = dockerEvents(ctx, sb, stopped, time.Now()); n >= want {
				break
			}
		}
		if time.Since(stopped) > 5*time.Minute {
			break
		}
	}
	stoppedFor := time.Since(stopped)
	cont()
	took, o, m, d := converged(ctx, sb, svc, 60*time.Second)
	run, _ := runningLabelled(ctx, sb, svc)
	recordFault(t, begin, faultResult{Case: "T13", Title: fmt.Sprintf("SIGSTOP drover %.0f s while %d container lifecycle events happen, SIGCONT", stoppedFor.Seconds(), n),
		Promises: []string{"P6", "P7"},
		Figures:  kv("lifecycle_events", n, "all_events", all, "running_after", len(run), "converge", took.Round(10*time.Millisecond), "orphans", o, "missed", m, "duplicates", d),
		Target:   "converge≤30s(resync) orphans=0 missed=0 duplicates=0",
		Pass:     took <= 30*time.Second && o+m+d == 0})
	out, _ := sb.Docker(ctx, "h1", "ps", "-aq", "--filter", "label=drover.service="+svc)
	if ids := strings.Fields(out); len(ids) > 0 {
		_, _ = sb.Docker(ctx, "h1", append([]string{"rm", "-f"}, ids...)...)
	}
}

// consulWrites returns the agent's count of service registrations and
// deregistrations over its HTTP API (Consul's own metrics).
func consulWrites(ctx context.Context, sb *sandbox.Sandbox) int {
	out, err := sb.Output(ctx, "h1", "curl", "-sf", sandbox.ConsulURL+"/v1/agent/metrics")
	if err != nil {
		return -1
	}
	var m struct {
		Samples []struct {
			Name   string
			Count  int
			Labels map[string]string
		}
	}
	if json.Unmarshal([]byte(out), &m) != nil {
		return -1
	}
	n := 0
	for _, s := range m.Samples {
		id := s.Name + " " + s.Labels["path"]
		if strings.Contains(id, "http") && (strings.Contains(id, "agent_service_register") || strings.Contains(id, "agent.service.register") ||
			strings.Contains(id, "agent_service_deregister") || strings.Contains(id, "agent.service.deregister")) {
			n += s.Count
		}
	}
	return n
}

// faultT14: churn on one host for a minute: a crash-looping container
// (restart=always, exits every 2 s), renames, same-name recreation and
// create/destroy as fast as dockerd allows; afterwards registrations equal
// running containers, never two for one container, renamed containers
// carry their new name.
func faultT14(ctx context.Context, t *testing.T, sb *sandbox.Sandbox) {
	begin := time.Now()
	const svc = "t14"
	d := envDuration("DROVER_FAULTS_T14_FOR", 60*time.Second)
	if os.Getenv("DROVER_FAULTS_SHORT") != "" {
		d = 20 * time.Second
	}
	// A crash loop: the demo binary fetches an address that never
	// answers, exits 1 after 2 s, and dockerd restarts it (restart=always).
	if out, err := sb.Docker(ctx, "h1", "run", "-d", "--name", "t14-crash", "--network", "drover", "--restart", "always",
		"-l", "drover.service="+svc, "-l", "drover.check=none", sandbox.DemoImage,
		"get", "-timeout", "2s", "http://192.0.2.1:9/"); err != nil {
		t.Fatalf("docker run t14-crash: %v %s", err, out)
	}
	maxDups := 0
	sample := func() {
		reg, err := agentServices(ctx, sb, svc)
		if err != nil {
			return
		}
		per := map[string]int{}
		for _, c := range reg {
			per[c]++
		}
		for _, n := range per {
			maxDups = max(maxDups, n-1)
		}
	}
	writes0 := consulWrites(ctx, sb)
	start := time.Now()
	// Four workers, as fast as dockerd goes; the test samples the
	// registrations meanwhile.
	var created, renamed, recreated atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := 0; time.Since(start) < d; i++ {
				name := fmt.Sprintf("t14-w%d-c%d", w, i)
				if _, err := sb.Docker(ctx, "h1", "run", "-d", "--name", name, "--network", "drover", "-l", "drover.service="+svc,
					"-l", "drover.check=none", sandbox.DemoImage); err != nil {
					continue
				}
				created.Add(1)
				switch i % 4 {
				case 0: // rename, kept
					if _, err := sb.Docker(ctx, "h1", "rename", name, name+"-renamed"); err == nil {
						renamed.Add(1)
					}
				case 1: // same-name recreate
					_, _ = sb.Docker(ctx, "h1", "rm", "-f", name)
					if _, err := sb.Docker(ctx, "h1", "run", "-d", "--name", name, "--network", "drover", "-l", "drover.service="+svc,
						"-l", "drover.check=none", sandbox.DemoImage); err == nil {
						recreated.Add(1)
						created.Add(1)
					}
					_, _ = sb.Docker(ctx, "h1", "rm", "-f", name)
				default: // create/destroy
					_, _ = sb.Docker(ctx, "h1", "rm", "-f", name)
				}
			}
		})
	}
	for time.Since(start) < d {
		sample()
		time.Sleep(500 * time.Millisecond)
	}
	wg.Wait()
	churn := time.Since(start)
	_, _ = sb.Docker(ctx, "h1", "rm", "-f", "t14-crash") // a restarting container is neither up nor gone
	took, o, m, dup := converged(ctx, sb, svc, 60*time.Second)
	sample()
	writes := consulWrites(ctx, sb) - writes0
	// Renamed containers: their registration carries the new name.
	wrongName := 0
	out, _ := sb.Output(ctx, "h1", "curl", "-sf", sandbox.ConsulURL+"/v1/agent/services")
	var all map[string]struct{ Meta map[string]string }
	_ = json.Unmarshal([]byte(out), &all)
	ps, _ := sb.Docker(ctx, "h1", "ps", "--filter", "label=drover.service="+svc, "--format", "{{.ID}} {{.Names}}")
	for _, l := range strings.Split(strings.TrimSpace(ps), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || !strings.HasSuffix(f[1], "-renamed") {
			continue
		}
		for id, s := range all {
			if n := strings.TrimPrefix(s.Meta["container_name"], "/"); strings.Contains(id, ":"+f[0][:12]+":") && n != f[1] {
				wrongName++
			}
		}
	}
	perMin := float64(writes) / churn.Minutes()
	recordFault(t, begin, faultResult{Case: "T14", Title: fmt.Sprintf("container churn for %.0f s: crash loop, %d created (%.1f/s), %d renamed, %d same-name recreated", churn.Seconds(), created.Load(), float64(created.Load())/churn.Seconds(), renamed.Load(), recreated.Load()),
		Promises: []string{"P6", "P7", "P17"},
		Figures: kv("max_duplicates_seen", maxDups, "final_orphans", o, "final_missed", m, "final_duplicates", dup, "converge_after_churn", took.Round(10*time.Millisecond),
			"stale_names", wrongName, "consul_writes_per_min", fmt.Sprintf("%.0f", perMin)),
		Target: "duplicates=0 final_diff=0 stale_names=0",
		Pass:   maxDups == 0 && o+m+dup == 0 && wrongName == 0})
	out, _ = sb.Docker(ctx, "h1", "ps", "-aq", "--filter", "label=drover.service="+svc)
	if ids := strings.Fields(out); len(ids) > 0 {
		sort.Strings(ids)
		_, _ = sb.Docker(ctx, "h1", append([]string{"rm", "-f"}, ids...)...)
	}
}
