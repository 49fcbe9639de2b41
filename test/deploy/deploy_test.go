// Package deploy checks the deploy files: the systemd unit verifies with
// systemd-analyze, and the example config loads.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestSystemdUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (make deps installs it)")
	}
	drover := filepath.Join(root(), "bin", "drover")
	if _, err := os.Stat(drover); err != nil {
		t.Skipf("%s not built; run make build", drover)
	}
	unit, err := os.ReadFile(filepath.Join(root(), "deploy", "drover.service"))
	if err != nil {
		t.Fatal(err)
	}
	// Verify the unit as it is, with only the binary's path pointed at the
	// built one (verify checks that ExecStart is executable).
	dir := t.TempDir()
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/drover", drover)
	path := filepath.Join(dir, "drover.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "drover.service:") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	drover := filepath.Join(root(), "bin", "drover")
	if _, err := os.Stat(drover); err != nil {
		t.Skipf("%s not built; run make build", drover)
	}
	// --help after a bad config would not load it; an invalid key makes the
	// agent fail before touching anything, so load it with a flag that
	// stops right after validation: an impossible --resync is reported
	// together with any problem of the file.
	out, _ := exec.Command(drover, "agent", "--config", filepath.Join(root(), "deploy", "drover.toml"), "--resync", "0s").CombinedOutput()
	if !strings.Contains(string(out), "--resync > 0") || strings.Contains(string(out), "config file") {
		t.Errorf("example config: %s", out)
	}
}

// TestComposeFileValidates checks deploy/docker-compose.yml with
// docker-compose's own validator, with the variables it requires set and,
// separately, without them (which must fail with the documented message).
func TestComposeFileValidates(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose not installed (make deps installs it)")
	}
	file := filepath.Join(root(), "deploy", "docker-compose.yml")
	cmd := exec.Command(bin, "-f", file, "config", "-q")
	cmd.Env = append(os.Environ(), "HOST_IP=10.0.0.11", "CONSUL_RETRY_JOIN=10.0.0.2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	cmd = exec.Command(bin, "-f", file, "config", "-q")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "HOST_IP") {
		t.Errorf("without HOST_IP: err %v, output %s; want a clear error naming HOST_IP", err, out)
	}
	// The compose file drives drover through DROVER_* variables: each must
	// be a real agent flag.
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	help, _ := exec.Command(filepath.Join(root(), "bin", "drover"), "agent", "--help").CombinedOutput()
	for _, line := range strings.Split(string(b), "\n") {
		k, _, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(k, "DROVER_") {
			continue
		}
		flag := "-" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "DROVER_")), "_", "-")
		if len(help) > 0 && !strings.Contains(string(help), flag+" ") && !strings.Contains(string(help), flag+"\n") {
			t.Errorf("%s in the compose file is not an agent flag (%s)", k, flag)
		}
	}
}
