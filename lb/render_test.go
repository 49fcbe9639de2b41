package lb

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/drover-net/drover/discovery"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from Render")

// goldenCases lists the cases in testdata: <case>.input holds the services
// map as JSON, <case>.golden the rendered haproxy.cfg.
func goldenCases(t *testing.T) []string {
	t.Helper()
	ins, err := filepath.Glob("testdata/*.input")
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) == 0 {
		t.Fatal("no testdata/*.input")
	}
	var cases []string
	for _, in := range ins {
		cases = append(cases, strings.TrimSuffix(filepath.Base(in), ".input"))
	}
	return cases
}

func TestRenderGolden(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", c+".input"))
			if err != nil {
				t.Fatal(err)
			}
			var services map[string][]discovery.Instance
			if err := json.Unmarshal(raw, &services); err != nil {
				t.Fatalf("parsing %s.input: %v", c, err)
			}
			// <case>.options, when present, holds the Options as JSON.
			var opt Options
			if raw, err := os.ReadFile(filepath.Join("testdata", c+".options")); err == nil {
				if err := json.Unmarshal(raw, &opt); err != nil {
					t.Fatalf("parsing %s.options: %v", c, err)
				}
			}
			st, probs := Desired(opt, services)
			for _, p := range probs {
				t.Logf("problem: %s", p)
			}
			got := Render(st, DefaultGlobals)
			if again := Render(st, DefaultGlobals); !bytes.Equal(got, again) {
				t.Fatal("two renders of one state differ")
			}
			st2, _ := Desired(opt, services)
			if again := Render(st2, DefaultGlobals); !bytes.Equal(got, again) {
				t.Fatal("renders of two Desired calls differ")
			}
			golden := filepath.Join("testdata", c+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./lb/ -run TestRenderGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Render (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRenderHAProxyCheck validates every golden file with haproxy -c. The
// socket and state-file paths are moved into a temporary directory, since
// /run/drover may not exist here.
func TestRenderHAProxyCheck(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not on PATH")
	}
	for _, c := range goldenCases(t) {
		t.Run(c, func(t *testing.T) {
			cfg, err := os.ReadFile(filepath.Join("testdata", c+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			s := string(cfg)
			for _, p := range []string{DefaultGlobals.StatsSocket, DefaultGlobals.StateFile} {
				if !strings.Contains(s, p) {
					t.Fatalf("golden does not contain %s", p)
				}
				s = strings.ReplaceAll(s, p, filepath.Join(dir, filepath.Base(p)))
			}
			// drover keeps the state file; one with only a version line stands in.
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(DefaultGlobals.StateFile)), []byte("1\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "-c", "-f", f).CombinedOutput()
			if err != nil {
				t.Fatalf("haproxy -c: %v\n%s", err, out)
			}
			if bytes.Contains(out, []byte("[WARNING]")) {
				t.Errorf("haproxy -c warns:\n%s", out)
			}
		})
	}
}
