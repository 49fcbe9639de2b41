//go:build e2e

package e2e

// A small client of the Chrome DevTools protocol, enough to drive Debian's
// chromium headless from a test: open a page, evaluate JavaScript in it,
// take a screenshot. One browser per test; calls are sequential.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// browser is a headless chromium and one page of it.
type browser struct {
	cmd     *exec.Cmd
	profile string // throw-away user data dir, removed by close
	conn    *websocket.Conn
	session string
	next    int
}

// startBrowser starts chromium headless with a throw-away profile and
// every background fetch it would make off loopback turned off, and opens
// one page. It is stopped when the test ends.
func startBrowser(ctx context.Context, t testing.TB) *browser {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("end-to-end UI test skipped: chromium not installed; run `make deps` (Debian package chromium)")
	}
	// The profile is not a t.TempDir: chromium's helper processes may
	// still write to it for a moment after the browser is killed.
	profile, err := os.MkdirTemp("", "drover-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
		"--user-data-dir="+profile, "--window-size=1400,1800", "--hide-scrollbars",
		"--no-first-run", "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
		"--disable-client-side-phishing-detection", "--metrics-recording-only", "--no-pings", "--disable-breakpad",
		"--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication",
		"about:blank")
	// Its own process group, so that close ends its helpers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	b := &browser{cmd: cmd, profile: profile}
	t.Cleanup(b.close)
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`DevTools listening on (ws://\S+)`)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
	}()
	var ws string
	select {
	case ws = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("chromium did not print its DevTools address within 30 s")
	}
	conn, _, err := websocket.Dial(ctx, ws, nil)
	if err != nil {
		t.Fatalf("connecting to chromium's DevTools: %v", err)
	}
	conn.SetReadLimit(64 << 20)
	b.conn = conn
	var target struct{ TargetID string }
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		t.Fatal(err)
	}
	var att struct{ SessionID string }
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		t.Fatal(err)
	}
	b.session = att.SessionID
	return b
}

func (b *browser) close() {
	if b.conn != nil {
		b.conn.Close(websocket.StatusNormalClosure, "")
	}
	if b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		_ = b.cmd.Wait()
	}
	for range 50 {
		if os.RemoveAll(b.profile) == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// call sends one DevTools command (to the page when session is set) and
// decodes its result into out; events in between are skipped.
func (b *browser) call(ctx context.Context, session, method string, params any, out any) error {
	b.next++
	id := b.next
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	raw, _ := json.Marshal(msg)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.conn.Write(ctx, websocket.MessageText, raw); err != nil {
		return fmt.Errorf("devtools %s: %w", method, err)
	}
	for {
		_, data, err := b.conn.Read(ctx)
		if err != nil {
			return fmt.Errorf("devtools %s: %w", method, err)
		}
		var resp struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &resp); err != nil || resp.ID != id {
			continue
		}
		if resp.Error != nil {
			return fmt.Errorf("devtools %s: %s", method, resp.Error.Message)
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(resp.Result, out)
	}
}

// navigate opens url in the page.
func (b *browser) navigate(ctx context.Context, url string) error {
	return b.call(ctx, b.session, "Page.navigate", map[string]any{"url": url}, nil)
}

// eval evaluates a JavaScript expression in the page and decodes its value
// (returned by value) into out.
func (b *browser) eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(ctx, b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if e := r.ExceptionDetails; e != nil {
		return fmt.Errorf("evaluating in the page: %s %s", e.Text, e.Exception.Description)
	}
	if len(r.Result.Value) == 0 {
		return errors.New("evaluating in the page: no value")
	}
	return json.Unmarshal(r.Result.Value, out)
}

// screenshot writes a PNG of the whole page to path.
func (b *browser) screenshot(ctx context.Context, path string) error {
	var r struct{ Data string }
	if err := b.call(ctx, b.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	if !strings.HasPrefix(string(png), "\x89PNG") {
		return errors.New("screenshot: not a PNG")
	}
	return os.WriteFile(path, png, 0o644)
}
