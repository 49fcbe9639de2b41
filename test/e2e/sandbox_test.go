//go:build e2e

// Package e2e holds drover's end-to-end tests: real Consul, dockerd,
// WireGuard (wireguard-go) and HAProxy in a sandbox of network namespaces.
// Run them with `make e2e` (root), or one with
// `go test -tags e2e -run TestSandbox ./test/e2e/`.
package e2e

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// TestSandbox proves the foundation: a 3-host sandbox whose Consul cluster
// is whole, whose dockerds run the demo image, whose hosts reach each other
// on the underlay while the root namespace has no route into it, that
// converges when brought up again or after a daemon is killed, and that
// leaves nothing behind.
func TestSandbox(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Hosts: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("consul members", func(t *testing.T) {
		out, err := sb.Output(ctx, "h1", "consul", "members")
		if err != nil {
			t.Fatal(err)
		}
		for _, node := range []string{"c1", "h1", "h2", "h3"} {
			if !hasAliveMember(out, node) {
				t.Errorf("consul members: %s not alive:\n%s", node, out)
			}
		}
		if n := strings.Count(out, " server "); n != 1 {
			t.Errorf("consul members: %d servers, want 1:\n%s", n, out)
		}
	})

	t.Run("demo container answers on its bridge address", func(t *testing.T) {
		for _, h := range sb.Hosts() {
			marker := "marker-" + h.Name
			ip := runDemo(ctx, t, sb, h.Name, "demo1", marker)
			body, err := sb.Output(ctx, h.Name, "drover-demo", "get", "http://"+ip+":8080/hello")
			if err != nil {
				t.Fatalf("fetching from the container on %s: %v", h.Name, err)
			}
			if !strings.Contains(body, "marker="+marker) || !strings.Contains(body, "path=/hello") || !strings.Contains(body, ip) {
				t.Errorf("%s: reply %q lacks marker, path or address %s", h.Name, body, ip)
			}
		}
	})

	t.Run("hosts reach each other on the underlay", func(t *testing.T) {
		for _, from := range sb.Hosts() {
			for _, to := range sb.Hosts() {
				if from.Name == to.Name {
					continue
				}
				if _, err := sb.Output(ctx, from.Name, "ping", "-c1", "-W2", to.Addr.String()); err != nil {
					t.Errorf("%s cannot reach %s: %v", from.Name, to.Name, err)
				}
			}
		}
	})

	t.Run("root namespace has no route to the underlay", func(t *testing.T) {
		assertNoRootRoute(t, sandbox.Underlay)
		// The sandbox's addresses exist only inside its namespaces.
		out, _ := exec.Command("ip", "-o", "addr", "show").Output()
		if strings.Contains(string(out), "10.99.0.") {
			t.Errorf("root namespace holds an underlay address:\n%s", out)
		}
	})

	t.Run("the drover image builds offline from deploy/Dockerfile", func(t *testing.T) {
		dir := t.TempDir()
		bin, err := os.ReadFile(filepath.Join(harness.BinDir(t), "drover"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "drover"), bin, 0o755); err != nil {
			t.Fatal(err)
		}
		_, file, _, _ := runtime.Caller(0)
		dockerfile := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "Dockerfile")
		if out, err := sb.Output(ctx, "h1", "env", "DOCKER_BUILDKIT=0", "docker", "build", "-q", "-f", dockerfile, "-t", "drover:e2e", dir); err != nil {
			t.Fatalf("docker build: %v\n%s", err, out)
		}
		out, err := sb.Docker(ctx, "h1", "run", "--rm", "drover:e2e", "version")
		if err != nil || !strings.HasPrefix(out, "drover ") {
			t.Errorf("drover image: %q, %v", out, err)
		}
	})

	t.Run("partition and heal", func(t *testing.T) {
		if err := sb.Partition(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		if _, err := sb.Output(ctx, "h1", "ping", "-c1", "-W1", sb.Host(3).Addr.String()); err == nil {
			t.Errorf("h1 still reaches partitioned h3")
		}
		if err := sb.Heal(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 10*time.Second, "h1 reaches healed h3", func() error {
			_, err := sb.Output(ctx, "h1", "ping", "-c1", "-W1", sb.Host(3).Addr.String())
			return err
		})
	})

	t.Run("up again converges and restarts killed daemons", func(t *testing.T) {
		h2 := sb.Host(2)
		consulPID := sb.ProcessPID(sb.Host(1), sandbox.ProcConsul)
		killed, err := sb.Kill("h2", sandbox.ProcDockerd)
		if err != nil {
			t.Fatal(err)
		}
		if err := sb.Up(ctx); err != nil {
			t.Fatalf("second up: %v", err)
		}
		if got := sb.ProcessPID(sb.Host(1), sandbox.ProcConsul); got != consulPID {
			t.Errorf("second up restarted h1's consul (pid %d → %d); it should keep a running cluster", consulPID, got)
		}
		if got := sb.ProcessPID(h2, sandbox.ProcDockerd); got == 0 || got == killed {
			t.Errorf("h2's dockerd was not restarted (pid %d, killed %d)", got, killed)
		}
		if _, err := sb.Docker(ctx, "h2", "image", "inspect", sandbox.DemoImage); err != nil {
			t.Errorf("demo image missing on h2 after restart: %v", err)
		}
	})
}

// TestSandboxRecoversFromKilledRun leaves a half-built sandbox behind (as a
// killed `sandbox up` would) and checks that the next Up removes it and
// builds a working one.
func TestSandboxRecoversFromKilledRun(t *testing.T) {
	harness.Skip(t)
	opt := sandbox.Options{Prefix: "drvk" + os.Getenv("DROVER_E2E_PREFIX_SUFFIX"), Hosts: 1, BinDir: harness.BinDir(t)}
	sb, err := sandbox.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Cleanup(func() { _ = sb.Down(context.Background()) })
	// Stale state: a namespace, a link and a directory of the prefix, no state file.
	p := opt.Prefix
	for _, args := range [][]string{{"netns", "add", p + "-sw"}, {"netns", "add", p + "-h1"},
		{"-n", p + "-h1", "link", "add", "junk0", "type", "veth", "peer", "name", "junk1"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	if err := os.MkdirAll(sb.Options().Dir+"/h1/junk", 0o755); err != nil {
		t.Fatal(err)
	}
	sb2 := harness.Sandbox(t, opt)
	out, err := sb2.Output(ctx, "h1", "ip", "-o", "link")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "junk0") {
		t.Errorf("stale link survived up:\n%s", out)
	}
	if _, err := sb2.Output(ctx, "h1", "consul", "members"); err != nil {
		t.Errorf("consul after recovery: %v", err)
	}
}

// TestSandboxDownLeavesNothing checks teardown on its own, with a running
// container, by looking at the machine rather than at the sandbox's view.
func TestSandboxDownLeavesNothing(t *testing.T) {
	harness.Skip(t)
	opt := sandbox.Options{Prefix: "drvd" + os.Getenv("DROVER_E2E_PREFIX_SUFFIX"), Hosts: 2, BinDir: harness.BinDir(t)}
	sb, err := sandbox.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = sb.Down(context.Background()) })
	if err := sb.Up(ctx); err != nil {
		t.Fatal(err)
	}
	runDemo(ctx, t, sb, "h1", "demo1", "x")
	if err := sb.Down(ctx); err != nil {
		t.Fatalf("down: %v", err)
	}
	checks := map[string][]string{
		"netns":  {"ip", "netns", "list"},
		"links":  {"ip", "-o", "link"},
		"mounts": {"cat", "/proc/self/mountinfo"},
		"ps":     {"ps", "-eo", "pid,args"},
	}
	for what, argv := range checks {
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "drvd-") || strings.Contains(line, "/drvd-sandbox") {
				t.Errorf("%s still shows the sandbox: %s", what, line)
			}
		}
	}
	if left := sb.Leftovers(); len(left) > 0 {
		t.Errorf("leftovers: %v", left)
	}
}

// runDemo starts the demo image on host's bridge network "demo" and returns
// the container's address there.
func runDemo(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, host, name, marker string) string {
	t.Helper()
	if _, err := sb.Docker(ctx, host, "network", "inspect", "demo"); err != nil {
		if _, err := sb.Docker(ctx, host, "network", "create", "--subnet", "172.30.0.0/24", "demo"); err != nil {
			t.Fatalf("creating network on %s: %v", host, err)
		}
	}
	if _, err := sb.Docker(ctx, host, "run", "-d", "--name", name, "--hostname", name+"-"+host,
		"--network", "demo", "-e", "DEMO_MARKER="+marker, sandbox.DemoImage); err != nil {
		t.Fatalf("running the demo container on %s: %v", host, err)
	}
	out, err := sb.Docker(ctx, host, "inspect", "-f", "{{.NetworkSettings.Networks.demo.IPAddress}}", name)
	if err != nil {
		t.Fatal(err)
	}
	ip := strings.TrimSpace(out)
	harness.Eventually(t, 10*time.Second, "demo container on "+host+" listens", func() error {
		_, err := sb.Output(ctx, host, "drover-demo", "get", "-timeout", "1s", "http://"+ip+":8080/healthz")
		return err
	})
	return ip
}

func hasAliveMember(members, node string) bool {
	for _, line := range strings.Split(members, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == node && f[2] == "alive" {
			return true
		}
	}
	return false
}

// assertNoRootRoute fails t if any route of the root namespace, in any
// table, other than a default route, covers part of p.
func assertNoRootRoute(t *testing.T, p netip.Prefix) {
	t.Helper()
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "local" || dst == "broadcast" || dst == "unreachable" || dst == "blackhole" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if dst == "default" {
			continue
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		r, err := netip.ParsePrefix(dst)
		if err != nil || r.Bits() == 0 {
			continue
		}
		if r.Overlaps(p) {
			t.Errorf("root namespace has a route into %s: %s", p, line)
		}
	}

}
