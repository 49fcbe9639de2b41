// Package harness starts and stops sandboxes from `go test` and waits for
// conditions with deadlines. End-to-end tests use it; production code never
// imports it.
//
// Tests that need a sandbox call Sandbox(t, opts); it skips the test with a
// clear reason when the machine cannot run one (not root, binaries not
// built), brings the sandbox up and registers its teardown, which fails the
// test if anything with the sandbox's prefix is left behind.
package harness

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/sandbox"
)

// BinDir returns the directory with the built binaries: $DROVER_BIN_DIR, else
// bin/ at the repository root.
func BinDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("DROVER_BIN_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin")
}

// Skip skips t unless it may build sandboxes: root, the binaries built, and
// the tools installed. The reason says exactly what is missing.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test skipped: it needs root (network namespaces, dockerd); run `sudo make test`")
	}
	bin := BinDir(t)
	for _, b := range []string{"consul", "drover", "drover-demo"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Skipf("end-to-end test skipped: %s missing; run `make build deps` first", filepath.Join(bin, b))
		}
	}
	for _, tool := range []string{"ip", "nsenter", "unshare", "dockerd", "docker"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("end-to-end test skipped: %s not installed; run `make deps`", tool)
		}
	}
}

// Sandbox brings up a sandbox with opt (prefix defaults to "drvt", so that a
// test never touches a user's demo) and tears it down when the test ends,
// failing the test if anything is left behind.
func Sandbox(t testing.TB, opt sandbox.Options) *sandbox.Sandbox {
	t.Helper()
	Skip(t)
	if opt.Prefix == "" {
		opt.Prefix = "drvt"
	}
	// Two checkouts may run their end-to-end tests side by side: each sets
	// its own DROVER_E2E_PREFIX_SUFFIX so that their sandboxes never share a
	// name.
	opt.Prefix += os.Getenv("DROVER_E2E_PREFIX_SUFFIX")
	if opt.BinDir == "" {
		opt.BinDir = BinDir(t)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	sb, err := sandbox.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, sb)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := sb.Down(ctx); err != nil {
			t.Errorf("sandbox down: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	begin := time.Now()
	if err := sb.Up(ctx); err != nil {
		t.Fatalf("sandbox up: %v", err)
	}
	t.Logf("sandbox %s up with %d hosts in %s", opt.Prefix, sb.Options().Hosts, time.Since(begin).Round(time.Millisecond))
	if opt.Agents {
		waitNetworks(ctx, t, sb)
	}
	return sb
}

// waitNetworks waits (at most a minute) until every host's agent has made
// the drover Docker network: an agent answers its status before its first
// overlay pass is through, and a container started before then fails with
// "network drover not found". A host still without it is logged, not
// failed: the test then says what it needs.
func waitNetworks(ctx context.Context, t testing.TB, sb *sandbox.Sandbox) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, h := range sb.Hosts() {
		for {
			if _, err := sb.Docker(ctx, h.Name, "network", "inspect", "drover"); err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Logf("the drover network is not on %s after a minute", h.Name)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// dumpLogs prints the tail of every daemon log of the sandbox, and each
// host's WireGuard, route and address state.
func dumpLogs(t testing.TB, sb *sandbox.Sandbox) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range sb.Hosts() {
		for _, argv := range [][]string{{"wg", "show"}, {"ip", "route"}, {"ip", "-br", "addr"}} {
			out, err := sb.Output(ctx, h.Name, argv...)
			t.Logf("--- %s: %s (err %v)\n%s", h.Name, strings.Join(argv, " "), err, out)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(sb.Options().Dir, "*", "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		t.Logf("--- %s (last %d lines)\n%s", l, len(lines), strings.Join(lines, "\n"))
	}
}

// Eventually calls f until it returns nil or timeout passes, then fails t
// with f's last error. It polls every 100 ms; it never sleeps a fixed time
// to "let things settle".
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	if err := Wait(timeout, f); err != nil {
		t.Fatalf("%s: not true after %s: %v", what, timeout, err)
	}
}

// Wait calls f until it returns nil or timeout passes, and returns f's last
// error.
func Wait(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
