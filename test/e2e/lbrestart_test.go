//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// TestLBRestartAfterRuntimeOps (issue 12 defect 19): a slot reused at
// runtime for a server on another port, then the HAProxy master killed: the
// agent starts it again and the running server set equals the desired one
// (no address, port or state from an older server-state file).
func TestLBRestartAfterRuntimeOps(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvh", Hosts: 2, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	h1, _ := sb.HostByName("h1")
	stateFile := filepath.Join(sb.LBDir(h1), "haproxy.state")
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"haproxy.cfg", "haproxy.state", "haproxy.log"} {
				b, _ := os.ReadFile(filepath.Join(sb.LBDir(h1), f))
				t.Logf("h1 %s:\n%s", f, b)
			}
			out, _ := sb.Output(context.Background(), "h1", "drover", "status")
			t.Logf("h1 drover status:\n%s", out)
		}
	})
	addr := func(name string) string {
		out, err := sb.Docker(ctx, "h2", "inspect", "-f", "{{.NetworkSettings.Networks.drover.IPAddress}}", name)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	runLB(ctx, t, sb, "h2", "web-a")
	runLB(ctx, t, sb, "h2", "web-b")
	waitUp(ctx, t, sb, "web", 2)
	// A new frontend is a reload, which saves the server state of the
	// servers that keep their line (by name and address).
	reloads := lbState(ctx, t, sb).LB.Reloads
	if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "api-1", "--hostname", "api-1", "--network", "drover",
		"-l", "drover.service=api", "-l", "drover.lb.mode=http", "-l", "drover.lb.port=8082",
		"-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s", sandbox.DemoImage); err != nil {
		t.Fatalf("docker run api-1: %v %s", err, out)
	}
	var gone, kept string // the web replica with a saved state line, the other
	harness.Eventually(t, 30*time.Second, "a reload for the api frontend, a web server in the state file", func() error {
		if r := lbState(ctx, t, sb).LB.Reloads; r <= reloads {
			return fmt.Errorf("reloads %d", r)
		}
		st, err := os.ReadFile(stateFile)
		if err != nil {
			return err
		}
		for _, p := range [][2]string{{"web-a", "web-b"}, {"web-b", "web-a"}} {
			if strings.Contains(string(st), " web ") && strings.Contains(string(st), " "+addr(p[0])+" ") {
				gone, kept = p[0], p[1]
				return nil
			}
		}
		return fmt.Errorf("no web server in the state file:\n%s", st)
	})
	reloads = lbState(ctx, t, sb).LB.Reloads

	// Runtime only: that replica leaves, web-c (port 8081) takes its slot.
	if _, err := sb.Docker(ctx, "h2", "rm", "-f", gone); err != nil {
		t.Fatal(err)
	}
	waitUp(ctx, t, sb, "web", 1)
	if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "web-c", "--hostname", "web-c", "--network", "drover", "--no-healthcheck",
		"-l", "drover.service=web", "-l", "drover.lb.mode=http", "-l", "drover.port=8081",
		"-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s",
		sandbox.DemoImage, "serve", "-listen", ":8081"); err != nil {
		t.Fatalf("docker run web-c: %v %s", err, out)
	}
	want := []string{addr(kept) + ":8080", addr("web-c") + ":8081"}
	sort.Strings(want)
	waitUp(ctx, t, sb, "web", 2)
	if r := lbState(ctx, t, sb).LB.Reloads; r != reloads {
		t.Fatalf("web-b → web-c reloaded (%d → %d); want runtime operations only", reloads, r)
	}
	if got := lbState(ctx, t, sb).upServers("web"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("before the restart: UP %v, want %v", got, want)
	}

	pid, err := sb.Kill("h1", sandbox.ProcHAProxy)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	harness.Eventually(t, 30*time.Second, "haproxy started again by the agent", func() error {
		if p := sb.ProcessPID(h1, sandbox.ProcHAProxy); p == 0 || p == pid {
			return fmt.Errorf("master pid %d (killed %d)", p, pid)
		}
		return nil
	})
	harness.Eventually(t, 30*time.Second, "the running server set equals the desired one, every server UP", func() error {
		var got []string
		for _, b := range lbState(ctx, t, sb).LB.Backends {
			for _, sv := range b.Servers {
				if b.Name == "web" && sv.Status == "UP" {
					got = append(got, sv.Addr)
				}
			}
		}
		sort.Strings(got)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			return fmt.Errorf("UP %v, want %v", got, want)
		}
		return nil
	})
	t.Logf("FIGURE haproxy master killed: running server set equal to desired %s later", time.Since(killed).Round(time.Millisecond))
	r := startLoad(ctx, t, sb, "http://127.0.0.1:80/", 50, 2*time.Second)()
	if r.Failed != 0 || r.By[kept] == 0 || r.By["web-c"] == 0 {
		t.Errorf("after the restart want answers from %s and web-c, none failed: %s", kept, r.Line)
	}
}
