//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/internal/webui"
	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// uiHostile are strings that become markup or script in a careless page;
// each marks success of an injection on the document (data-pwned, an
// element with id pwned, window.__pwned), which the test looks for.
var uiHostile = []string{
	"<script>window.__pwned=1</script>",
	"<img src=x onerror=document.body.dataset.pwned=1>",
	`"><svg onload=document.body.dataset.pwned=1>`,
	`'><iframe id=pwned src=javascript:window.__pwned=1>`,
	"</td></tr></table><b id=pwned>x</b>",
	"javascript:window.__pwned=1",
	"{{constructor.constructor('window.__pwned=1')()}}",
	"&lt;b&gt;not bold&lt;/b&gt;",
	"x\n    server evil 1.2.3.4:80",
	"${HOME} %[src] ünïcödé \u2028",
}

// pageState is what the test reads out of the rendered page.
type pageState struct {
	Updated   string      `json:"updated"`
	Cells     [][3]string `json:"cells"` // from, to, state
	Instances []struct {
		Service, Node, Address, Port, Tags, Checks string
	} `json:"instances"`
	Refused []struct{ Node, Container, Reason string } `json:"refused"`
	Servers []struct{ Backend, Addr, Status string }   `json:"servers"`
	Events  int                                        `json:"events"`
	Text    string                                     `json:"text"`
	Pwned   bool                                       `json:"pwned"`
	Scripts []string                                   `json:"scripts"`
	// Injected counts elements no string of the API may create.
	Injected int `json:"injected"`
}

const readPage = `(() => {
  const q = (s) => [...document.querySelectorAll(s)];
  const cells = (tr) => [...tr.cells].map((c) => c.textContent);
  return {
    updated: document.body.dataset.updated || "",
    cells: q("#mesh-matrix td.cell").map((td) => [td.dataset.from, td.dataset.to, td.dataset.state]),
    instances: q("#services tr.instance").map((tr) => { const c = cells(tr); return {Service: tr.dataset.service, Node: tr.dataset.node, Address: c[2], Port: c[3], Tags: c[4], Checks: c[5]}; }),
    refused: q("#refused tr.refusal").map((tr) => { const c = cells(tr); return {Node: tr.dataset.node, Container: c[1], Reason: c[3]}; }),
    servers: q("#lb tr.server").map((tr) => ({Backend: tr.dataset.backend, Addr: tr.dataset.addr, Status: tr.dataset.status})),
    events: q("#events li").length,
    text: document.body.textContent,
    pwned: window.__pwned !== undefined || document.body.dataset.pwned !== undefined || document.getElementById("pwned") !== null,
    scripts: q("script").map((s) => s.getAttribute("src") || "inline"),
    injected: q("main img, main svg, main iframe, main b, main script, main object, main embed, main a, main input").length,
  };
})()`

// matrix returns the state of every cell by "from>to".
func (p pageState) matrix() map[string]string {
	m := map[string]string{}
	for _, c := range p.Cells {
		m[c[0]+">"+c[1]] = c[2]
	}
	return m
}

// meshIs reports nil when every cell between hosts is want, except those
// touching host odd, which must be oddWant ("" for no exception).
func (p pageState) meshIs(hosts []string, want, odd, oddWant string) error {
	m := p.matrix()
	if len(m) != len(hosts)*len(hosts) {
		return fmt.Errorf("%d cells, want %d×%d: %v", len(m), len(hosts), len(hosts), m)
	}
	for _, a := range hosts {
		for _, b := range hosts {
			w := want
			switch {
			case a == b:
				w = webui.CellSelf
			case a == odd || b == odd:
				w = oddWant
			}
			if got := m[a+">"+b]; got != w {
				return fmt.Errorf("cell %s→%s is %q, want %q (all: %v)", a, b, got, w, m)
			}
		}
	}
	return nil
}

// TestUI opens h1's web UI in headless chromium through the sandbox relay
// and checks what a person would see: the 3×3 mesh, the services with
// their instances, the lb's backends with their servers, a refused
// container with its reason, hostile strings shown as text and never as
// markup, the CSP header, and a partition of h3 turning its row and column
// red within 10 s and back after the heal.
func TestUI(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvu", Hosts: 3, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	hosts := []string{"h1", "h2", "h3"}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = sb.ListenAgentUI(ctx, ln, "h1") }()
	base := "http://" + ln.Addr().String()

	runLB(ctx, t, sb, "h2", "web-a")
	runLB(ctx, t, sb, "h3", "web-b")
	if out, err := sb.Docker(ctx, "h1", "run", "-d", "--name", "demo-h1", "--network", "drover", "-l", "drover.service=demo", sandbox.DemoImage); err != nil {
		t.Fatalf("docker run demo-h1: %v %s", err, out)
	}
	badTag := uiHostile[1]
	if out, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "badlabel", "--network", "drover",
		"-l", "drover.service=bad", "-l", "drover.tags="+badTag, sandbox.DemoImage); err != nil {
		t.Fatalf("docker run badlabel: %v %s", err, out)
	}

	t.Run("CSP and security headers from the agent", func(t *testing.T) {
		harness.Eventually(t, 30*time.Second, "h1's UI answers through the relay", func() error {
			for _, p := range []string{"/ui/", "/ui/app.js", "/api/v1/mesh"} {
				resp, err := http.Get(base + p)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					return fmt.Errorf("GET %s: %s", p, resp.Status)
				}
				if got := resp.Header.Get("Content-Security-Policy"); got != webui.CSP {
					return fmt.Errorf("GET %s: Content-Security-Policy %q", p, got)
				}
				if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
					return fmt.Errorf("GET %s: no nosniff", p)
				}
			}
			req, _ := http.NewRequest("POST", base+"/api/v1/mesh", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				return fmt.Errorf("POST: %s, want 405", resp.Status)
			}
			return nil
		})
	})

	b := startBrowser(ctx, t)
	if err := b.navigate(ctx, base+"/ui/"); err != nil {
		t.Fatal(err)
	}
	read := func() (pageState, error) {
		var p pageState
		err := b.eval(ctx, readPage, &p)
		return p, err
	}
	var last pageState

	t.Run("mesh, services, lb and refusals rendered", func(t *testing.T) {
		harness.Eventually(t, 90*time.Second, "the page shows the healthy cluster", func() error {
			p, err := read()
			if err != nil {
				return err
			}
			last = p
			if err := p.meshIs(hosts, webui.CellReachable, "", ""); err != nil {
				return err
			}
			nodes := map[string][]string{}
			addrs := map[string]bool{}
			for _, in := range p.Instances {
				nodes[in.Service] = append(nodes[in.Service], in.Node)
				if in.Service == "web" {
					addrs[in.Address+":"+in.Port] = true
					if !strings.Contains(in.Checks, "passing") {
						return fmt.Errorf("web on %s: checks %q, want a passing one", in.Node, in.Checks)
					}
				}
			}
			for svc, want := range map[string][]string{"web": {"h2", "h3"}, "demo": {"h1"}, "drover-node": hosts} {
				got := nodes[svc]
				sort.Strings(got)
				if !slices.Equal(got, want) {
					return fmt.Errorf("service %s on %v, want %v", svc, got, want)
				}
			}
			var up []string
			for _, s := range p.Servers {
				if s.Backend == "web" && strings.HasPrefix(s.Status, "UP") {
					up = append(up, s.Addr)
					if !addrs[s.Addr] {
						return fmt.Errorf("lb server %s is no web instance's address %v", s.Addr, addrs)
					}
				}
			}
			if len(up) != 2 {
				return fmt.Errorf("backend web servers UP: %v (all %+v)", up, p.Servers)
			}
			found := false
			for _, r := range p.Refused {
				if r.Node == "h2" && r.Container == "badlabel" && strings.Contains(r.Reason, "drover.tags") && strings.Contains(r.Reason, badTag) {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("badlabel not refused on h2 with its reason: %+v", p.Refused)
			}
			if p.Events == 0 {
				return fmt.Errorf("no events")
			}
			return nil
		})
		t.Logf("rendered: %d cells, %d instances, %d lb servers, %d refused, %d events", len(last.Cells), len(last.Instances), len(last.Servers), len(last.Refused), last.Events)
		saveScreenshot(ctx, t, b)
	})

	t.Run("hostile strings are text, never markup or script", func(t *testing.T) {
		reg := map[string]any{"ID": "hostile-1", "Name": "hostile", "Port": 8080, "Address": "10.42.3.250",
			"Tags": uiHostile, "Meta": map[string]string{"note": uiHostile[0], "other": uiHostile[2]}}
		body, _ := json.Marshal(reg)
		var out strings.Builder
		code, err := sb.Exec(ctx, "h3", strings.NewReader(string(body)), &out, &out,
			"curl", "-sS", "--fail-with-body", "-X", "PUT", "--data-binary", "@-", "https://127.0.0.1:8501/v1/agent/service/register")
		if err != nil || code != 0 {
			t.Fatalf("registering the hostile service in Consul: code %d %v %s", code, err, out.String())
		}
		harness.Eventually(t, 30*time.Second, "the hostile service's tags shown as text", func() error {
			p, err := read()
			if err != nil {
				return err
			}
			last = p
			var tags string
			for _, in := range p.Instances {
				if in.Service == "hostile" {
					tags = in.Tags
				}
			}
			for _, h := range uiHostile {
				if !strings.Contains(tags, h) {
					return fmt.Errorf("tag %q not shown as text (tags cell %q)", h, tags)
				}
			}
			return nil
		})
		if last.Pwned || last.Injected != 0 {
			t.Fatalf("an injection took effect: pwned=%v, %d injected elements", last.Pwned, last.Injected)
		}
		if !slices.Equal(last.Scripts, []string{"app.js"}) {
			t.Fatalf("scripts in the page: %v, want only app.js", last.Scripts)
		}
		if !strings.Contains(last.Text, badTag) {
			t.Fatalf("the refused container's hostile label is not in the page's text")
		}
	})

	t.Run("partition h3: its row and column unreachable within 10 s, back after heal", func(t *testing.T) {
		begin := time.Now()
		if err := sb.Partition(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		healed := false
		defer func() {
			if !healed {
				_ = sb.Heal(context.Background(), "h3")
			}
		}()
		harness.Eventually(t, 10*time.Second, "h3's row and column unreachable in the browser", func() error {
			p, err := read()
			if err != nil {
				return err
			}
			return p.meshIs(hosts, webui.CellReachable, "h3", webui.CellUnreachable)
		})
		t.Logf("h3 shown unreachable %s after the partition", time.Since(begin).Round(100*time.Millisecond))
		if err := sb.Heal(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		healed = true
		begin = time.Now()
		harness.Eventually(t, 60*time.Second, "every cell reachable again after the heal", func() error {
			p, err := read()
			if err != nil {
				return err
			}
			return p.meshIs(hosts, webui.CellReachable, "", "")
		})
		t.Logf("h3 shown reachable %s after the heal", time.Since(begin).Round(100*time.Millisecond))
	})

	t.Run("drover leave on h3: it leaves the page, its row deleted", func(t *testing.T) {
		if out, err := sb.Output(ctx, "h3", "drover", "leave"); err != nil {
			t.Fatalf("drover leave on h3: %v %s", err, out)
		}
		harness.Eventually(t, 30*time.Second, "a 2×2 matrix of h1 and h2", func() error {
			p, err := read()
			if err != nil {
				return err
			}
			return p.meshIs([]string{"h1", "h2"}, webui.CellReachable, "", "")
		})
		out, err := sb.Output(ctx, "h1", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", sandbox.ConsulURL+"/v1/kv/"+webui.MeshPrefix+"h3")
		if err != nil || strings.TrimSpace(out) != "404" {
			t.Errorf("h3's row after leave: HTTP %s %v, want 404", out, err)
		}
	})
}

// saveScreenshot writes the page as ui.png to $DROVER_ARTIFACTS (else
// bin/artifacts), and to $DROVER_UI_SCREENSHOT when set (make screenshot).
func saveScreenshot(ctx context.Context, t *testing.T, b *browser) {
	t.Helper()
	dir := os.Getenv("DROVER_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(harness.BinDir(t), "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ui.png")
	if err := b.screenshot(ctx, path); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	t.Logf("screenshot: %s", path)
	if extra := os.Getenv("DROVER_UI_SCREENSHOT"); extra != "" {
		png, _ := os.ReadFile(path)
		if err := os.WriteFile(extra, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot also written to %s", extra)
	}
}
