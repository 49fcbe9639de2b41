//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/discovery/contract"
	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// lbProblems returns the lb's refusals in h1's `drover status --json`.
func lbProblems(ctx context.Context, t testing.TB, sb *sandbox.Sandbox) []string {
	t.Helper()
	out, err := sb.Output(ctx, "h1", "drover", "status", "--json")
	if err != nil {
		t.Fatalf("drover status on h1: %v", err)
	}
	var st struct {
		LB struct {
			Problems []string `json:"problems"`
		} `json:"lb"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("drover status --json: %v", err)
	}
	return st.LB.Problems
}

// waitProblem waits until a refusal containing every one of parts is in
// h1's status.
func waitProblem(ctx context.Context, t testing.TB, sb *sandbox.Sandbox, parts ...string) string {
	t.Helper()
	var found string
	harness.Eventually(t, 30*time.Second, fmt.Sprintf("a refusal with %q", parts), func() error {
		ps := lbProblems(ctx, t, sb)
	next:
		for _, p := range ps {
			for _, w := range parts {
				if !strings.Contains(p, w) {
					continue next
				}
			}
			found = p
			return nil
		}
		return fmt.Errorf("refusals: %q", ps)
	})
	return found
}

// TestLBIngress covers what fronting real web apps needs (issue 14): the
// label's check is HAProxy's check, the backend learns the client's
// address (a spoofed X-Forwarded-For is replaced), cookie stickiness that
// moves a client only when its server goes, an idle WebSocket that lives
// through 90 s and a reload, a conflicting newcomer refused alone under
// load, and registrations at loopback, link-local or another node's
// subnet never proxied.
func TestLBIngress(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvi", Hosts: 2, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	h1, err := sb.HostByName("h1")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(sb.LBDir(h1), "haproxy.cfg")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(cfgPath)
			t.Logf("h1 haproxy.cfg:\n%s", b)
			out, _ := sb.Output(context.Background(), "h1", "drover", "status")
			t.Logf("h1 drover status:\n%s", out)
		}
	})
	app := func(host, name string, extra ...string) {
		t.Helper()
		args := []string{"run", "-d", "--name", name, "--hostname", name, "--network", "drover",
			"-l", "drover.service=app", "-l", "drover.lb.mode=http", "-l", "drover.lb.host=app.example",
			"-l", "drover.lb.sticky=true", "-l", "drover.check=http:/healthz",
			"-l", "drover.check.interval=10s", "-l", "drover.check.fall=5"}
		args = append(append(args, extra...), sandbox.DemoImage)
		if out, err := sb.Docker(ctx, host, args...); err != nil {
			t.Fatalf("docker run %s on %s: %v %s", name, host, err, out)
		}
	}
	curl := func(args ...string) (string, error) {
		return sb.Output(ctx, "h1", append([]string{"curl", "-sS", "-m", "5", "-H", "Host: app.example"}, args...)...)
	}

	t.Run("the label's check is exactly HAProxy's check", func(t *testing.T) {
		app("h2", "app-1")
		app("h2", "app-2")
		waitUp(ctx, t, sb, "app", 2)
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		cfg := string(b)
		i := strings.Index(cfg, "\nbackend app\n")
		if i < 0 {
			t.Fatalf("no backend app in haproxy.cfg")
		}
		be := cfg[i:]
		if j := strings.Index(be[1:], "\nbackend "); j >= 0 {
			be = be[:j+1]
		}
		for _, want := range []string{"option httpchk GET /healthz", "check inter 10s fall 5 rise 1", "cookie drv_"} {
			if !strings.Contains(be, want) {
				t.Errorf("backend app lacks %q:\n%s", want, be)
			}
		}
		t.Logf("backend app as rendered:\n%s", strings.SplitN(be, "\n    server slot", 2)[0])
	})

	t.Run("HAProxy's workers do not run as root", func(t *testing.T) {
		procs := lbState(ctx, t, sb).LB.Procs
		if procs == nil || procs.Worker == 0 {
			t.Fatalf("no worker in the status")
		}
		out, err := sb.Output(ctx, "h1", "ps", "-o", "user=", "-p", fmt.Sprint(procs.Worker))
		t.Logf("worker %d runs as %s", procs.Worker, strings.TrimSpace(out))
		if err != nil || strings.TrimSpace(out) == "root" || strings.TrimSpace(out) == "" {
			t.Errorf("worker user %q (%v), want haproxy", out, err)
		}
	})

	t.Run("the backend sees the client's address; spoofed headers are replaced", func(t *testing.T) {
		out, err := curl("-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Forwarded-Proto: https", "-H", "X-Forwarded-Port: 1",
			"http://127.0.0.1:80/headers")
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
		t.Logf("backend saw: %s", strings.TrimSpace(out))
		if strings.Contains(out, "6.6.6.6") || !strings.Contains(out, `xff="127.0.0.1"`) ||
			!strings.Contains(out, `xfproto="http"`) || !strings.Contains(out, `xfport="80"`) {
			t.Errorf("want X-Forwarded-For 127.0.0.1, -Proto http, -Port 80 and no spoofed value; got %s", out)
		}
	})

	t.Run("PROXY protocol to a labelled backend carries the client's address", func(t *testing.T) {
		if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "pp", "--hostname", "pp", "--network", "drover",
			"-l", "drover.service=pp", "-l", "drover.lb.mode=http", "-l", "drover.lb.host=pp.example",
			"-l", "drover.lb.proxy-protocol=v2", "-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s",
			sandbox.DemoImage, "serve", "-proxy-protocol"); err != nil {
			t.Fatalf("docker run pp: %v %s", err, out)
		}
		var out string
		harness.Eventually(t, 60*time.Second, "pp answers through the lb", func() error {
			var err error
			out, err = sb.Output(ctx, "h1", "curl", "-sS", "-m", "3", "-H", "Host: pp.example", "http://127.0.0.1:80/headers")
			if err != nil || !strings.Contains(out, "host=pp") {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
		t.Logf("backend behind PROXY v2 saw: %s", strings.TrimSpace(out))
		// Without PROXY protocol the backend sees the lb's own address
		// (10.42.x.1 after masquerade); with it, the client's.
		if !strings.Contains(out, "remote=127.0.0.1:") {
			t.Errorf("want the client's address 127.0.0.1 as the remote address, got %s", out)
		}
	})

	t.Run("one access log line per request; /metrics counts every request", func(t *testing.T) {
		// A scrape whose show stat did not answer within its 2 s lacks the
		// HAProxy counters (seen once on a loaded machine): ask again.
		metric := func() float64 {
			var v float64
			harness.Eventually(t, 10*time.Second, "a request counter for backend app in /metrics", func() error {
				out, err := sb.Output(ctx, "h1", "curl", "-sf", "http://127.0.0.1:9714/metrics")
				if err != nil {
					return fmt.Errorf("metrics: %v", err)
				}
				for _, l := range strings.Split(out, "\n") {
					if strings.HasPrefix(l, `drover_lb_requests_total{kind="backend",proxy="app",server="BACKEND"}`) {
						fmt.Sscan(strings.Fields(l)[1], &v)
						return nil
					}
				}
				return fmt.Errorf("no request counter for backend app in:\n%s", out)
			})
			return v
		}
		before := metric()
		path := fmt.Sprintf("/count-%d", time.Now().UnixNano())
		out, err := sb.Output(ctx, "h1", "sh", "-c", "for i in $(seq 1 50); do curl -s -o /dev/null -H 'Host: app.example' http://127.0.0.1:80"+path+"; done")
		if err != nil {
			t.Fatalf("requests: %v %s", err, out)
		}
		logFile := filepath.Join(h1.Dir, "agent.log")
		var lines []string
		harness.Eventually(t, 10*time.Second, "50 access log lines", func() error {
			b, _ := os.ReadFile(logFile)
			lines = lines[:0]
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "msg=access") && strings.Contains(l, "path="+path) {
					lines = append(lines, l)
				}
			}
			if len(lines) != 50 {
				return fmt.Errorf("%d lines", len(lines))
			}
			return nil
		})
		t.Logf("access log: %s", lines[0])
		for _, w := range []string{"status=200", "backend=app", "total_ms=", "response_ms=", "method=GET"} {
			if !strings.Contains(lines[0], w) {
				t.Errorf("access line lacks %s", w)
			}
		}
		if d := metric() - before; d != 50 {
			t.Errorf("drover_lb_requests_total for backend app grew by %v, want 50", d)
		} else {
			t.Logf("drover_lb_requests_total{backend app} grew by 50 for 50 requests")
		}
	})

	t.Run("a sticky client stays on one server and moves, without a failure, when it goes", func(t *testing.T) {
		// The first answer sets the cookie; the client sends it back.
		hdrs, err := curl("-D", "-", "-o", "/dev/null", "http://127.0.0.1:80/")
		if err != nil {
			t.Fatalf("curl: %v %s", err, hdrs)
		}
		cookie := ""
		for _, l := range strings.Split(hdrs, "\n") {
			if l = strings.TrimSpace(l); len(l) > 12 && strings.EqualFold(l[:12], "set-cookie: ") {
				cookie, _, _ = strings.Cut(l[12:], ";")
			}
		}
		if !strings.HasPrefix(cookie, "drv_") {
			t.Fatalf("no persistence cookie in the answer:\n%s", hdrs)
		}
		script := `for i in $(seq 1 %d); do r=$(curl -s -m 5 -w ' code=%%{http_code}' -H 'Cookie: ` + cookie +
			`' -H 'Host: app.example' http://127.0.0.1:80/); echo $r; sleep 0.05; done`
		out, err := sb.Output(ctx, "h1", "sh", "-c", fmt.Sprintf(script, 100))
		if err != nil {
			t.Fatalf("requests: %v %s", err, out)
		}
		by := hostsOf(out)
		if len(by) != 1 || by[""] > 0 {
			t.Fatalf("100 sticky requests reached %v, want one server", by)
		}
		var first string
		for h := range by {
			first = h
		}
		t.Logf("100 requests with the cookie all reached %s", first)
		// Now that server goes while the client keeps asking.
		cmd, err := sb.Command(ctx, "h1", "sh", "-c", fmt.Sprintf(script, 200))
		if err != nil {
			t.Fatal(err)
		}
		var buf strings.Builder
		cmd.Stdout = &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if out, err := sb.Docker(ctx, "h2", "stop", "-t", "10", first); err != nil {
			t.Fatalf("docker stop %s: %v %s", first, err, out)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("requests: %v", err)
		}
		by = hostsOf(buf.String())
		failed := strings.Count(buf.String(), "code=") - strings.Count(buf.String(), "code=200")
		t.Logf("while %s stopped: replies by server %v, failed %d", first, by, failed)
		if failed != 0 || by[""] > 0 {
			t.Errorf("%d failed requests while the sticky server drained:\n%s", failed, buf.String())
		}
		if len(by) != 2 {
			t.Errorf("the client did not move to the other server: %v", by)
		}
		_, _ = sb.Docker(ctx, "h2", "rm", first)
		app("h2", "app-3")
		waitUp(ctx, t, sb, "app", 2)
	})

	t.Run("an idle WebSocket lives through 90 s and a reload", func(t *testing.T) {
		cmd, err := sb.Command(ctx, "h1", "drover-demo", "ws", "-idle", "90s", "-host", "app.example", "ws://127.0.0.1:80/ws")
		if err != nil {
			t.Fatal(err)
		}
		pr, pw, _ := os.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		lines := make(chan string, 8)
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		select {
		case l := <-lines:
			if l != "open" {
				t.Fatalf("websocket: %s", l)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("websocket did not open")
		}
		before := lbState(ctx, t, sb).LB.Reloads
		// A structural change: a new frontend, one reload.
		if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "other", "--network", "drover",
			"-l", "drover.service=other", "-l", "drover.lb.mode=http", "-l", "drover.lb.port=8081", sandbox.DemoImage); err != nil {
			t.Fatalf("docker run other: %v %s", err, out)
		}
		harness.Eventually(t, 60*time.Second, "a reload for the new frontend", func() error {
			if r := lbState(ctx, t, sb).LB.Reloads; r <= before {
				return fmt.Errorf("reloads %d", r)
			}
			return nil
		})
		t.Logf("reloaded while the WebSocket was idle")
		var rest []string
		for l := range lines {
			rest = append(rest, l)
		}
		err = cmd.Wait()
		t.Logf("websocket: %s", strings.Join(rest, "; "))
		if err != nil || len(rest) == 0 || !strings.HasPrefix(rest[len(rest)-1], "alive after") {
			t.Errorf("the idle WebSocket did not survive: %v %q", err, rest)
		}
	})

	t.Run("a conflicting newcomer is refused alone, under load, with 0 failed", func(t *testing.T) {
		wait := startLoad(ctx, t, sb, "http://127.0.0.1:80/", 50, 25*time.Second, "-concurrency", "8", "-host", "app.example")
		time.Sleep(2 * time.Second)
		// Another service claiming app's route, and an app replica with
		// another balance.
		if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "intruder", "--network", "drover",
			"-l", "drover.service=intruder", "-l", "drover.lb.mode=http", "-l", "drover.lb.host=app.example", sandbox.DemoImage); err != nil {
			t.Fatalf("docker run intruder: %v %s", err, out)
		}
		app("h2", "app-odd", "-l", "drover.lb.balance=leastconn")
		// Two tcp services on one port: the first keeps it.
		for _, n := range []string{"tcp-first", "tcp-second"} {
			if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", n, "--network", "drover", "-l", "drover.service="+n,
				"-l", "drover.lb.mode=tcp", "-l", "drover.lb.port=7000", sandbox.DemoImage); err != nil {
				t.Fatalf("docker run %s: %v %s", n, err, out)
			}
			if n == "tcp-first" {
				waitUp(ctx, t, sb, "tcp-first", 1) // registered, and served, first
			}
		}
		p1 := waitProblem(ctx, t, sb, "service intruder", "taken by service app")
		p2 := waitProblem(ctx, t, sb, "service app instance", "disagree", "instance left out")
		p3 := waitProblem(ctx, t, sb, "service tcp-second", "tcp port 7000 is taken by service tcp-first")
		t.Logf("refused: %s", p1)
		t.Logf("refused: %s", p2)
		t.Logf("refused: %s", p3)
		r := wait()
		if r.Failed != 0 || r.OK < 500 {
			t.Errorf("want 0 failed requests to the incumbent: %s", r.Line)
		}
		// HAProxy's view right after tcp-first's reload can lag a check
		// (the new worker's first one); the load above is what proves
		// both servers kept serving.
		harness.Eventually(t, 15*time.Second, "app's 2 servers UP after the newcomers", func() error {
			if up := lbState(ctx, t, sb).upServers("app"); len(up) != 2 {
				return fmt.Errorf("UP: %v", up)
			}
			return nil
		})
	})

	t.Run("a port another program holds is refused; a new service still appears within one reload", func(t *testing.T) {
		before := lbState(ctx, t, sb).LB.Reloads
		// The agent's own /metrics listens on 127.0.0.1:9714 on h1.
		if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "taken", "--network", "drover",
			"-l", "drover.service=taken", "-l", "drover.lb.mode=tcp", "-l", "drover.lb.port=9714", sandbox.DemoImage); err != nil {
			t.Fatalf("docker run taken: %v %s", err, out)
		}
		t.Logf("refused: %s", waitProblem(ctx, t, sb, "service taken", "port 9714 cannot be bound on this host"))
		if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "fresh", "--network", "drover",
			"-l", "drover.service=fresh", "-l", "drover.lb.mode=http", "-l", "drover.lb.port=8082", sandbox.DemoImage); err != nil {
			t.Fatalf("docker run fresh: %v %s", err, out)
		}
		harness.Eventually(t, 60*time.Second, "the new service answers on 8082", func() error {
			out, err := sb.Output(ctx, "h1", "curl", "-sS", "-m", "2", "http://127.0.0.1:8082/")
			if err != nil || !strings.Contains(out, "host=") {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
		st := lbState(ctx, t, sb).LB
		t.Logf("reloads %d → %d, failed reloads %d", before, st.Reloads, st.FailedReloads)
		if st.FailedReloads != 0 {
			t.Errorf("%d failed reloads: the unbindable port reached HAProxy", st.FailedReloads)
		}
	})

	t.Run("loopback, link-local and other nodes' addresses are never proxied", func(t *testing.T) {
		reg := func(name, addr string, meta ...string) {
			args := []string{"consul", "services", "register", "-name", name, "-id", name, "-address", addr, "-port", "8501",
				"-meta", contract.KeyLBMode + "=http", "-meta", contract.KeyLBHost + "=" + name + ".example"}
			for _, m := range meta {
				args = append(args, "-meta", m)
			}
			if out, err := sb.Output(ctx, "h1", args...); err != nil {
				t.Fatalf("registering %s: %v %s", name, err, out)
			}
		}
		reg("evil-loop", "127.0.0.1", "drover_node=h1")
		reg("evil-meta", "169.254.169.254", "drover_node=h1")
		reg("evil-nonode", "10.42.9.9")
		// The lb host's own underlay address, named as h1's published port.
		reg("evil-own", h1.Addr.String(), "drover_node=h1")
		// h2's subnet and name, but registered by h1's Consul agent.
		out, err := sb.Output(ctx, "h2", "drover", "status", "--json")
		var h2st struct {
			Overlay struct {
				Subnet string `json:"subnet"`
			} `json:"overlay"`
		}
		if err != nil || json.Unmarshal([]byte(out), &h2st) != nil || !strings.HasSuffix(h2st.Overlay.Subnet, ".0/24") {
			t.Fatalf("h2's subnet: %v %s", err, out)
		}
		h2sub := strings.TrimSuffix(h2st.Overlay.Subnet, ".0/24")
		reg("evil-forged", h2sub+".250", "drover_node=h2")
		for _, want := range [][]string{
			{"evil-loop", "loopback"}, {"evil-meta", "link-local"},
			{"evil-nonode", "not registered by a drover agent"}, {"evil-forged", "runs on"},
			{"evil-own", "the lb host's own addresses"},
		} {
			t.Logf("refused: %s", waitProblem(ctx, t, sb, want...))
		}
		b, _ := os.ReadFile(cfgPath)
		if strings.Contains(string(b), "evil") {
			t.Errorf("haproxy.cfg names an evil service")
		}
	})
}

// hostsOf counts the replies per server in drover-demo's "host=NAME"
// answers; "" counts lines with a code but no host (failures).
func hostsOf(out string) map[string]int {
	by := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, "code=") {
			continue
		}
		h := ""
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "host="); ok {
				h = v
			}
		}
		by[h]++
	}
	return by
}
