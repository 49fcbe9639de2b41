package execcmd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunOutput(t *testing.T) {
	out, err := Shell{}.Run(context.Background(), "echo hello; echo oops >&2")
	if err != nil || string(out) != "hello\noops\n" {
		t.Fatalf("got %q, %v", out, err)
	}
	if _, err := (Shell{}).Run(context.Background(), "exit 3"); err == nil {
		t.Error("a failing command returned no error")
	}
}

// A timeout kills the whole process group: children holding the output
// pipe no longer stretch a 300 ms timeout to their own lifetime (issue 12,
// defect 7: it took 3 s), and they do not outlive it.
func TestTimeoutKillsChildren(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "child-survived")
	start := time.Now()
	_, err := Shell{Timeout: 300 * time.Millisecond}.Run(context.Background(),
		"(sleep 3; touch "+mark+") & sleep 3")
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("a 300 ms timeout took %s", took)
	}
	time.Sleep(3500 * time.Millisecond)
	if _, err := os.Stat(mark); err == nil {
		t.Error("the background child survived the timeout")
	}
}
