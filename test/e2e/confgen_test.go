//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
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

// TestConfgen runs `drover confgen` in watch mode against the sandbox's
// Consul: re-render and reload on a KV change, one reload for a burst, a
// failing check_cmd, a full disk and Consul down all keep the old file.
func TestConfgen(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvg", Hosts: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	full := filepath.Join(dir, "full")
	for _, d := range []string{filepath.Join(dir, "conf.d"), filepath.Join(dir, "templates"), out, full} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reloads := filepath.Join(dir, "reloads")
	write("templates/app.tmpl", "greeting={{getv \"/greeting\"}}\n{{range gets \"/servers/*\"}}server {{base .Key}} {{.Value}}\n{{end}}")
	write("conf.d/app.toml", fmt.Sprintf(`[template]
src = "app.tmpl"
dest = %q
keys = ["/greeting", "/servers"]
prefix = "/app"
mode = "0640"
check_cmd = "grep -q greeting= {{.src}} && ! grep -q BROKEN {{.src}}"
reload_cmd = "echo reload >> %s"
min_wait = "300ms"
max_wait = "5s"
`, filepath.Join(out, "app.conf"), reloads))
	write("templates/fast.tmpl", "n={{getv \"/fast/n\"}}\n")
	write("conf.d/fast.toml", fmt.Sprintf(`[template]
src = "fast.tmpl"
dest = %q
keys = ["/fast"]
min_wait = "5ms"
max_wait = "100ms"
`, filepath.Join(out, "fast.conf")))
	write("templates/small.tmpl", "value={{getv \"/small/value\"}}\n")
	write("conf.d/small.toml", fmt.Sprintf(`[template]
src = "small.tmpl"
dest = %q
keys = ["/small"]
`, filepath.Join(full, "small.conf")))

	kvPut := func(k, v string) {
		t.Helper()
		if out, err := sb.Output(ctx, "h1", "consul", "kv", "put", k, v); err != nil {
			t.Fatalf("consul kv put %s: %v %s", k, err, out)
		}
	}
	kvPut("app/greeting", "hello")
	kvPut("app/servers/a", "10.42.0.2:8080")
	kvPut("small/value", "one")
	kvPut("fast/n", "0")
	// A small tmpfs in h1's own mount namespace holds small.conf.
	if out, err := sb.Output(ctx, "h1", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", full); err != nil {
		t.Fatalf("tmpfs: %v %s", err, out)
	}

	cmd := startConfgen(ctx, t, sb, dir)
	app := filepath.Join(out, "app.conf")
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	countReloads := func() int { return strings.Count(read(reloads), "reload") }
	harness.Eventually(t, 10*time.Second, "first render and reload", func() error {
		if got := read(app); got != "greeting=hello\nserver a 10.42.0.2:8080\n" || countReloads() != 1 {
			return fmt.Errorf("app.conf = %q, %d reloads", got, countReloads())
		}
		return nil
	})
	if fi, err := os.Stat(app); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("app.conf mode: %v %v", fi.Mode(), err)
	}

	t.Run("a KV change re-renders and reloads", func(t *testing.T) {
		before := countReloads()
		kvPut("app/servers/b", "10.42.1.2:8080")
		changed := time.Now()
		harness.Eventually(t, 5*time.Second, "re-render with b", func() error {
			if !strings.Contains(read(app), "server b 10.42.1.2:8080") || countReloads() != before+1 {
				return fmt.Errorf("app.conf %q, reloads %d", read(app), countReloads())
			}
			return nil
		})
		t.Logf("file and reload %s after the change (min_wait 300ms)", time.Since(changed).Round(time.Millisecond))
	})

	t.Run("change-to-file latency", func(t *testing.T) {
		client, err := sb.ConsulClient(sb.Host(1), "")
		if err != nil {
			t.Fatal(err)
		}
		fast := filepath.Join(out, "fast.conf")
		var lat []time.Duration
		for i := 1; i <= 40; i++ {
			want := fmt.Sprintf("n=%d\n", i)
			begin := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, sandbox.ConsulURL+"/v1/kv/fast/n", strings.NewReader(fmt.Sprint(i)))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for read(fast) != want {
				if time.Since(begin) > 5*time.Second {
					t.Fatalf("change %d not rendered: %q", i, read(fast))
				}
				time.Sleep(time.Millisecond)
			}
			lat = append(lat, time.Since(begin))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("KV write → file replaced, %d changes, min_wait 5ms: p50 %s, p99 %s, max %s",
			len(lat), lat[len(lat)/2].Round(100*time.Microsecond), lat[len(lat)*99/100].Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))
	})

	t.Run("100 rapid changes give one reload", func(t *testing.T) {
		before := countReloads()
		// One HTTP client dialing inside h1: 100 writes in well under the
		// 300 ms quiet period's reach of each other.
		client, err := sb.ConsulClient(sb.Host(1), "")
		if err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		for i := 1; i <= 100; i++ {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, sandbox.ConsulURL+"/v1/kv/app/greeting", strings.NewReader(fmt.Sprintf("hello-%d", i)))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		t.Logf("100 changes written in %s", time.Since(begin).Round(time.Millisecond))
		harness.Eventually(t, 10*time.Second, "the last value rendered and reloaded", func() error {
			if !strings.Contains(read(app), "greeting=hello-100\n") || countReloads() < before+1 {
				return fmt.Errorf("app.conf %q, %d reloads", read(app), countReloads()-before)
			}
			return nil
		})
		// No second render may follow: watch past the quiet period.
		deadline := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if n := countReloads() - before; n != 1 {
				t.Fatalf("%d reloads for the burst, want 1", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("a failing check_cmd keeps the old file", func(t *testing.T) {
		good := read(app)
		kvPut("app/greeting", "BROKEN")
		// Give the watcher time to try (and fail); the file must not move.
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if read(app) != good {
				t.Fatalf("app.conf changed to %q despite the failing check", read(app))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if log := read(filepath.Join(dir, "confgen.log")); !strings.Contains(log, "check_cmd") {
			t.Errorf("the failed check is not reported:\n%s", log)
		}
		leftovers, _ := filepath.Glob(filepath.Join(out, ".app.conf.drover-*"))
		if len(leftovers) != 0 {
			t.Errorf("staged files left behind: %v", leftovers)
		}
		kvPut("app/greeting", "fixed")
		harness.Eventually(t, 10*time.Second, "fixed value rendered", func() error {
			if !strings.Contains(read(app), "greeting=fixed") {
				return fmt.Errorf("app.conf %q", read(app))
			}
			return nil
		})
	})

	t.Run("a full disk keeps the old file and converges when space returns", func(t *testing.T) {
		small := filepath.Join(full, "small.conf")
		// The tmpfs exists only in h1's mount namespace: read through it.
		readNS := func(p string) string { out, _ := sb.Output(ctx, "h1", "cat", p); return out }
		harness.Eventually(t, 5*time.Second, "small rendered", func() error {
			if readNS(small) != "value=one\n" {
				return fmt.Errorf("small.conf %q", readNS(small))
			}
			return nil
		})
		if out, err := sb.Output(ctx, "h1", "sh", "-c", "dd if=/dev/zero of="+full+"/filler bs=1k count=100 2>/dev/null; true"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		kvPut("small/value", strings.Repeat("x", 8000))
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if readNS(small) != "value=one\n" {
				t.Fatalf("small.conf changed on a full disk: %q", readNS(small)[:20])
			}
			time.Sleep(50 * time.Millisecond)
		}
		if out, err := sb.Output(ctx, "h1", "rm", "-f", full+"/filler"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		harness.Eventually(t, 40*time.Second, "small converges once space returns", func() error {
			if !strings.HasPrefix(readNS(small), "value=xxxx") {
				return fmt.Errorf("small.conf %q", readNS(small))
			}
			return nil
		})
	})

	t.Run("Consul down keeps the old file", func(t *testing.T) {
		good := read(app)
		if _, err := sb.Kill("h1", sandbox.ProcConsul); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if read(app) != good {
				t.Fatalf("app.conf changed while Consul was down: %q", read(app))
			}
			time.Sleep(100 * time.Millisecond)
		}
		if cmd.ProcessState != nil {
			t.Fatalf("confgen exited while Consul was down")
		}
		if err := sb.Start(ctx, "h1", sandbox.ProcConsul); err != nil {
			t.Fatal(err)
		}
		kvPut("app/greeting", "back")
		harness.Eventually(t, 30*time.Second, "renders again after Consul returns", func() error {
			if !strings.Contains(read(app), "greeting=back") {
				return fmt.Errorf("app.conf %q", read(app))
			}
			return nil
		})
	})
}

// TestConfgenInAgent runs confgen inside `drover agent --confdir` and reads
// its resources back from `drover status`.
func TestConfgenInAgent(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvg", Hosts: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"templates/motd.tmpl": "{{getv \"/motd/text\"}} ({{len (service \"drover-node\")}} drover nodes)\n",
		"conf.d/motd.toml":    fmt.Sprintf("[template]\nsrc = \"motd.tmpl\"\ndest = %q\nkeys = [\"/motd\"]\n", filepath.Join(dir, "motd")),
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := sb.Output(ctx, "h1", "consul", "kv", "put", "motd/text", "welcome"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	// The agent's token reads only what its policy grants: confgen's
	// prefix is added as `drover acl-policy --confgen-prefix motd` would.
	if err := sb.GrantConfgen(ctx, sb.Host(1), "motd"); err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(ctx, "h1", sandbox.ProcAgent, "--confdir", dir); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, "motd rendered by the agent", func() error {
		b, _ := os.ReadFile(filepath.Join(dir, "motd"))
		if string(b) != "welcome (1 drover nodes)\n" {
			return fmt.Errorf("motd = %q", b)
		}
		return nil
	})
	out, err := sb.Output(ctx, "h1", "drover", "status")
	if err != nil || !strings.Contains(out, "motd.toml") {
		t.Errorf("drover status lacks the confgen resource: %v\n%s", err, out)
	}
	m, err := sb.Output(ctx, "h1", "curl", "-sf", "http://127.0.0.1:9714/metrics")
	if err != nil || !strings.Contains(m, `drover_confgen_changes_total{resource="motd.toml"} 1`) {
		t.Errorf("metrics lack the confgen change: %v\n%s", err, grepLines(m, "confgen"))
	}
}

// TestConfgenHAProxy renders an HAProxy config from the `service` data of
// containers on two hosts, checks it with the real HAProxy (check_cmd),
// starts it (reload_cmd), and fetches through it from both replicas — one
// of them across the mesh — then scales to three replicas and sees the
// config follow.
func TestConfgenHAProxy(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvg", Hosts: 2, Agents: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, d := range []string{"conf.d", "templates", "out"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg, pid := filepath.Join(dir, "out", "haproxy.cfg"), filepath.Join(dir, "haproxy.pid")
	files := map[string]string{
		"templates/haproxy.tmpl": `global
    log stdout format raw local0 err
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend web
    bind 127.0.0.1:8081
    default_backend web
backend web
    balance roundrobin
{{- range service "web"}}
    server {{replace .ID ":" "_" -1}} {{.Address}}:{{.Port}} check inter 1s
{{- end}}
`,
		"conf.d/haproxy.toml": fmt.Sprintf(`[template]
src = "haproxy.tmpl"
dest = %q
keys = ["/unused"]
check_cmd = "haproxy -c -q -f {{.src}}"
reload_cmd = "haproxy -D -f %s -p %s $( [ -s %s ] && echo -sf $(cat %s) )"
min_wait = "200ms"
`, cfg, cfg, pid, pid, pid),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := sb.Output(ctx, "h1", "consul", "kv", "put", "unused", "x"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for _, h := range []string{"h1", "h2"} {
		runLabelled(ctx, t, sb, h, "web-"+h)
	}
	startConfgen(ctx, t, sb, dir)
	t.Cleanup(func() {
		if t.Failed() {
			c, _ := os.ReadFile(cfg)
			t.Logf("haproxy.cfg:\n%s", c)
		}
	})
	answers := func() map[string]bool {
		seen := map[string]bool{}
		for i := 0; i < 12; i++ {
			out, err := sb.Output(ctx, "h1", "drover-demo", "get", "-timeout", "2s", "http://127.0.0.1:8081/")
			if err == nil {
				for _, f := range strings.Fields(out) {
					if strings.HasPrefix(f, "host=") {
						seen[strings.TrimPrefix(f, "host=")] = true
					}
				}
			}
		}
		return seen
	}
	harness.Eventually(t, 30*time.Second, "HAProxy on h1 answers from both replicas", func() error {
		if seen := answers(); !seen["web-h1"] || !seen["web-h2"] {
			return fmt.Errorf("answers from %v", seen)
		}
		return nil
	})
	runLabelled(ctx, t, sb, "h2", "web-h2b")
	harness.Eventually(t, 30*time.Second, "the third replica joins the rendered config", func() error {
		if seen := answers(); !seen["web-h2b"] {
			return fmt.Errorf("answers from %v", seen)
		}
		return nil
	})
}

// runLabelled starts a demo container registered as service "web" with an
// HTTP check, and waits until Consul sees it passing.
func runLabelled(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, host, name string) {
	t.Helper()
	if _, err := sb.Docker(ctx, host, "run", "-d", "--name", name, "--hostname", name, "--network", "drover",
		"-l", "drover.service=web", "-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s", sandbox.DemoImage); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, name+" passing in Consul", func() error {
		es, err := healthService(ctx, sb, "h1", "web", true)
		if err != nil {
			return err
		}
		for _, e := range es {
			if e.Service.Meta["container_name"] == name {
				return nil
			}
		}
		return fmt.Errorf("not passing yet")
	})
}

// startConfgen runs `drover confgen --confdir dir` in h1 until the test
// ends, logging to dir/confgen.log (shown when the test fails).
func startConfgen(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, dir string) *exec.Cmd {
	t.Helper()
	cmd, err := sb.Command(ctx, "h1", "drover", "confgen", "--confdir", dir)
	if err != nil {
		t.Fatal(err)
	}
	logf, _ := os.Create(filepath.Join(dir, "confgen.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "confgen.log"))
			t.Logf("confgen log:\n%s", b)
		}
	})
	return cmd
}
