//go:build e2e && faults

package e2e

// The fault suite (issue 12, docs/reliability.md): each TestFault… case
// injects one fault of the matrix in shared/reference/reliability.md §3
// into a real sandbox, measures the figures the matrix names, and records
// one result with recordFault. `make test-faults` runs them all and then
// test/faults/report turns the results into docs/reliability.md.
//
// The build tag `faults` keeps them out of `make test` (tags e2e only).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
)

// faultResult is one line of the results file (JSON lines): what
// test/faults/report reads.
type faultResult struct {
	Case     string   `json:"case"`     // "T2"
	Title    string   `json:"title"`    // what was done
	Promises []string `json:"promises"` // "P1", …
	Figures  string   `json:"figures"`  // "invalid=0 leftover_tmp=0 …"
	Target   string   `json:"target"`   // "invalid=0, leftover_tmp=0"
	Pass     bool     `json:"pass"`
	Note     string   `json:"note,omitempty"` // why it failed, or what it does not measure
	Seconds  float64  `json:"seconds"`        // the case's run time
	Time     string   `json:"time"`           // RFC 3339, UTC
}

var faultsMu sync.Mutex // guards appends to the results file

// faultsOut is the results file: $DROVER_FAULTS_OUT, else faults.jsonl
// next to the binaries.
func faultsOut(t testing.TB) string {
	if p := os.Getenv("DROVER_FAULTS_OUT"); p != "" {
		return p
	}
	return filepath.Join(harness.BinDir(t), "faults.jsonl")
}

// recordFault prints the case's FAULT line, appends it to the results file
// and fails t when the figures miss the target.
func recordFault(t testing.TB, begin time.Time, r faultResult) {
	t.Helper()
	r.Seconds = time.Since(begin).Round(100 * time.Millisecond).Seconds()
	r.Time = time.Now().UTC().Format(time.RFC3339)
	verdict := "PASS"
	if !r.Pass {
		verdict = "OPEN"
	}
	line := fmt.Sprintf("FAULT %s %s: %s (target %s) %s", r.Case, r.Title, r.Figures, r.Target, verdict)
	if r.Note != "" {
		line += " — " + r.Note
	}
	t.Log(line)
	fmt.Println(line) // also visible without -v, for the summary
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	faultsMu.Lock()
	defer faultsMu.Unlock()
	f, err := os.OpenFile(faultsOut(t), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatalf("opening the results file: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		t.Fatalf("writing the results file: %v", err)
	}
	if !r.Pass {
		t.Errorf("%s misses its target", r.Case)
	}
}

// kv formats figures as "k=v k=v", in the order given.
func kv(pairs ...any) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%v=%v", pairs[i], pairs[i+1])
	}
	return b.String()
}

// envInt returns the integer in environment variable key, else def.
func envInt(key string, def int) int {
	var n int
	if _, err := fmt.Sscan(os.Getenv(key), &n); err == nil && n > 0 {
		return n
	}
	return def
}

// envDuration returns the duration in environment variable key, else def.
func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil && d > 0 {
		return d
	}
	return def
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// killPIDHard sends SIGKILL to pid.
func killPIDHard(pid int) error {
	if pid <= 1 {
		return fmt.Errorf("no such process (pid %d)", pid)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}
