package main

import (
	"bytes"
	"strings"
	"testing"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb}
	code := c.main(args)
	return code, out.String(), errb.String()
}

func TestHelpForEveryCommand(t *testing.T) {
	code, out, _ := runCLI("--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, cmd := range commands() {
		if !strings.Contains(out, cmd.name) {
			t.Errorf("top-level help lacks %s", cmd.name)
		}
		code, _, errOut := runCLI(cmd.name, "--help")
		if code != 0 || !strings.Contains(errOut, "Usage: drover "+cmd.name) {
			t.Errorf("%s --help: exit %d, output %q", cmd.name, code, errOut)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	code, _, errOut := runCLI("frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI("version")
	if code != 0 || !strings.HasPrefix(out, "drover ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestLeaseArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"lease"}, 2, "Usage: drover lease"},
		{[]string{"lease", "grab", "10.42.0.0/24"}, 2, "Usage: drover lease"},
		{[]string{"lease", "release"}, 2, "Usage: drover lease"},
		{[]string{"lease", "release", "10.42.0.1/24"}, 1, "is not a subnet"},
		{[]string{"lease", "release", "nonsense", "--force"}, 1, "is not a subnet"},
		{[]string{"lease", "release", "10.42.0.0/24", "10.42.1.0/24"}, 2, "Usage: drover lease"},
	} {
		code, _, errOut := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
}

// TestAgentRefusesAPublicUIWithoutToken: the agent exits at once, before
// touching Consul, Docker or the network, saying what to do.
func TestAgentRefusesAPublicUIWithoutToken(t *testing.T) {
	for _, args := range [][]string{
		{"agent", "--ui", "0.0.0.0:9716", "--data-dir", t.TempDir()},
		{"agent", "--metrics-addr", "10.99.0.11:9714", "--data-dir", t.TempDir()},
	} {
		code, _, errOut := runCLI(args...)
		if code != 1 || !strings.Contains(errOut, "not a loopback address") || !strings.Contains(errOut, "--ui-token-file") {
			t.Errorf("%v: exit %d, stderr %q; want 1 and a message naming --ui-token-file", args, code, errOut)
		}
	}
}

func TestUIWithoutAgent(t *testing.T) {
	code, _, errOut := runCLI("ui", "--status-socket", t.TempDir()+"/none.sock")
	if code != 1 || !strings.Contains(errOut, "is `drover agent` running?") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
