package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// loadLine matches load's result line.
var loadLine = regexp.MustCompile(`^load ok=(\d+) failed=(\d+) p50_ms=(\d+\.\d+) p99_ms=(\d+\.\d+) max_ms=(\d+\.\d+) fail_span_ms=(\d+\.\d+) by=(\S*)$`)

type loadOut struct {
	ok, failed int
	failSpan   float64
	by         string
	stderr     string
}

// runLoadCmd runs load with args and parses its one stdout line.
func runLoadCmd(t *testing.T, args ...string) loadOut {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := load(args, &stdout, &stderr); err != nil {
		t.Fatalf("load %q: %v\nstderr:\n%s", args, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout has %d lines, want 1:\n%s", len(lines), stdout.String())
	}
	m := loadLine.FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("stdout line %q does not match %s", lines[0], loadLine)
	}
	ok, _ := strconv.Atoi(m[1])
	failed, _ := strconv.Atoi(m[2])
	p50, _ := strconv.ParseFloat(m[3], 64)
	p99, _ := strconv.ParseFloat(m[4], 64)
	mx, _ := strconv.ParseFloat(m[5], 64)
	if !(p50 <= p99 && p99 <= mx) {
		t.Errorf("latencies out of order in %q", lines[0])
	}
	span, _ := strconv.ParseFloat(m[6], 64)
	if (failed == 0) != (span == 0) {
		t.Errorf("fail_span_ms must be 0 exactly when no request failed: %q", lines[0])
	}
	t.Logf("%s\nstderr:\n%s", lines[0], stderr.String())
	return loadOut{ok: ok, failed: failed, failSpan: span, by: m[7], stderr: stderr.String()}
}

// demoServer answers like serve mode: "host=<name> addrs=... path=...".
func demoServer(t *testing.T, host string, fail func(n int64) bool) *httptest.Server {
	t.Helper()
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail != nil && fail(n.Add(1)) {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "host=%s addrs=10.0.0.1 path=%s n=1\n", host, r.URL.Path)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestLoadOK(t *testing.T) {
	t.Parallel()
	s := demoServer(t, "web-a", nil)
	got := runLoadCmd(t, "-rate", "100", "-duration", "1s", "-concurrency", "4", s.URL+"/x")
	if got.ok == 0 || got.failed != 0 {
		t.Errorf("ok=%d failed=%d, want ok > 0 and failed = 0", got.ok, got.failed)
	}
	if want := fmt.Sprintf("web-a:%d", got.ok); got.by != want {
		t.Errorf("by=%s, want %s", got.by, want)
	}
}

func TestLoadCountsFailures(t *testing.T) {
	t.Parallel()
	s := demoServer(t, "web-b", func(n int64) bool { return n%2 == 0 })
	got := runLoadCmd(t, "-rate", "100", "-duration", "1s", s.URL)
	if got.failed == 0 || got.ok == 0 {
		t.Errorf("ok=%d failed=%d, want both > 0", got.ok, got.failed)
	}
	if !strings.Contains(got.stderr, "status 500 Internal Server Error") {
		t.Errorf("stderr does not list the 500s:\n%s", got.stderr)
	}
}

func TestLoadStopFile(t *testing.T) {
	t.Parallel()
	s := demoServer(t, "web-c", nil)
	stop := filepath.Join(t.TempDir(), "stop")
	if err := os.WriteFile(stop, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	got := runLoadCmd(t, "-duration", "1m", "-stop-file", stop, s.URL)
	if el := time.Since(begin); el > 10*time.Second {
		t.Errorf("load ran %s with the stop file present", el)
	}
	if got.ok != 0 || got.failed != 0 || got.by != "" {
		t.Errorf("got %+v, want no requests", got)
	}
}

func TestLoadUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-rate", "0", "http://x/"},
		{"-rate", "5001", "http://x/"},
		{"-rate", "NaN", "http://x/"},
		{"-duration", "11m", "http://x/"},
		{"-duration", "0s", "http://x/"},
		{"-concurrency", "0", "http://x/"},
		{"-timeout", "0s", "http://x/"},
		{"-report", "-1s", "http://x/"},
		{"ftp://x/"},
		{"x/"},
		{"http://x/", "http://y/"},
	} {
		var stdout, stderr bytes.Buffer
		if err := load(args, &stdout, &stderr); err == nil {
			t.Errorf("load %q: no error", args)
		}
		if stdout.Len() > 0 {
			t.Errorf("load %q printed %q", args, stdout.String())
		}
	}
}
