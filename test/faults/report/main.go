// Command report turns the fault suite's results (JSON lines written by the
// TestFault… cases in test/e2e, see `make test-faults`) into the summary
// table it prints and into docs/reliability.md: one row per case of the
// fault matrix T1–T33 (shared/reference/reliability.md §3) with its
// promises, the figures of the run, the target and pass/open, and a reason
// for every case the run did not measure.
//
//	go run ./test/faults/report [-in bin/faults.jsonl] [-out docs/reliability.md] [-commit REV]
//
// When a case was recorded more than once, the last record counts. It
// exits 1 when a recorded case missed its target, so that the make target
// that runs it fails too.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// result is one line of the results file (test/e2e/faults_test.go).
type result struct {
	Case     string   `json:"case"`
	Title    string   `json:"title"`
	Promises []string `json:"promises"`
	Figures  string   `json:"figures"`
	Target   string   `json:"target"`
	Pass     bool     `json:"pass"`
	Note     string   `json:"note"`
	Seconds  float64  `json:"seconds"`
	Time     string   `json:"time"`
}

// matrixCase is one row of the fault matrix.
type matrixCase struct {
	id, fault, promises string
	// why is the reason the suite has no case for it (empty: it has one).
	why string
}

// matrix is reliability.md §3 with, for the cases the suite does not run,
// the reason.
var matrix = []matrixCase{
	{"T1", "kill -9 drover in steady state", "P16, P5, P6", "not in the suite: measured by TestLB/\"agent restart under load\" (failed requests 0, reloads 0, runtime ops 0) and TestOverlay/\"kill -9 of the agent does not cut a transfer or touch peers\", run by `make test`"},
	{"T2", "kill -9 drover at random points of render/validate/swap/reload", "P1, P16", ""},
	{"T3", "Consul leader loss", "P2, P9", ""},
	{"T4", "quorum loss (2 of 3 servers)", "P2", ""},
	{"T5", "local Consul client agent down", "P2, P6", "not in the suite: TestDiscovery/\"Consul agent down: registration queued and applied on return\" (make test) covers it"},
	{"T6", "Consul client agent restarted with a wiped data dir", "P6", "not in the suite: TestRecords/\"consul agent restarted with a wiped data dir under load\" (make test) measures it: records back ≤ 5 s after the node is accepted, 0 failed requests, peer kept"},
	{"T7", "Consul snapshot restore (index goes back)", "P8", ""},
	{"T8", "index 0 / same index forever (fault proxy)", "P8", ""},
	{"T9", "empty answer with KnownLeader=false (fault proxy)", "P2", ""},
	{"T10", "partition of one host", "P12, P14", "not in the suite: TestOverlay/\"partition keeps peers and heals\" (make test)"},
	{"T11", "30 % one-way loss on the underlay", "P3", ""},
	{"T12", "dockerd restart", "P6, P7", "not in the suite: TestDiscovery/\"dockerd restart: reconnect, resync, register new containers\" and TestHostState/\"dockerd restart keeps traffic and rules\" (make test)"},
	{"T13", "SIGSTOP drover while 500 container events happen", "P6, P7", ""},
	{"T14", "container churn: crash loop, rename, same-name recreate, create/destroy", "P6, P7, P17", ""},
	{"T15", "container dies while drover is dead", "P5", "not in the suite: TestDiscovery/\"agent down: Consul judges health; restart deregisters at once\" (make test)"},
	{"T16", "disk full / read-only when writing configs", "P1", "not in the suite: TestConfgen/\"a full disk keeps the old file and converges when space returns\" (make test) covers confgen; the HAProxy config under a full disk is not measured"},
	{"T17", "HAProxy master and worker kill -9 under load", "P1, P4", ""},
	{"T18", "1 reload/s under load incl. long-lived connections", "P3", ""},
	{"T19", "1,000 runtime add/enable/disable/del cycles under traffic", "P3, P4", ""},
	{"T20", "invalid/malicious labels and template input", "P18", "not in the suite: lb/hostile_test.go and discovery label tests (unit, `make test`), TestDiscovery/\"unlabelled, ignored and badly labelled containers never appear\""},
	{"T21", "scale: 2,000 services × 3 instances, 10,000 KV keys", "P17, P8", "not in the suite: `make bench-lb` (BenchmarkLBApply1000x10) and `make bench-confgen` measure render/apply at scale; the connection count under 2,000 services is not measured"},
	{"T22", "peers added/removed while a transfer runs between two others", "P11", ""},
	{"T23", "key rotation on one host", "P10", "not reachable: drover has no key-rotation command yet"},
	{"T24", "host disappears for good", "P12, P14", "not in the suite: TestRecords/\"drover leases and lease release\" (make test) covers the release path"},
	{"T25", "two hosts claim one subnet / same node name", "P12, P13", "not in the suite: TestRecords/\"a vanished lease never has two owners\", TestOverlay/\"forged records are refused\", TestConsulNodeID (make test)"},
	{"T26", "endpoint roaming (underlay address of a host changes)", "P11", ""},
	{"T27", "underlay MTU 1400: large transfers", "P15", ""},
	{"T28", "clock skew ±5 min on one host", "P14", "not reachable: libfaketime does not move a Go binary's clock (measured: `faketime -f +5m date` is 5 min ahead, a Go program under the same faketime, static or cgo, prints the real time: Go reads the clock through the vDSO, not libc); Linux time namespaces offset only CLOCK_MONOTONIC/BOOTTIME, not the wall clock; moving the machine's clock would move every host and other people's tests"},
	{"T29", "ACL token revoked / token file replaced", "P19", "not in the suite: TestConsulSecured/\"revoked token keeps the data plane\" (make test)"},
	{"T30", "Consul TLS cert expired or wrong CA", "P19", "not in the suite: TestConsulSecured/\"HTTP API only over verified TLS\" (make test) covers the wrong-CA refusal"},
	{"T31", "agent http_max_conns_per_client = 10", "P2, P8", ""},
	{"T32", "2 s RTT to the Consul servers", "P8", ""},
	{"T33", "flapping checks on 10 services", "P3", ""},
	{"kernel WireGuard", "every case above with the kernel module instead of wireguard-go", "P16, P11", "not reachable: the kernel has no WireGuard module (CONFIG_WIREGUARD is not set); every case ran on the embedded wireguard-go"},
}

func main() {
	in := flag.String("in", "bin/faults.jsonl", "results file (JSON lines)")
	out := flag.String("out", "docs/reliability.md", "markdown file to write (empty: none)")
	commit := flag.String("commit", "", "commit the run was made from (default: git describe --always --dirty)")
	elapsed := flag.Int("elapsed", 0, "wall-clock seconds the run took, sandboxes included (0: unknown)")
	flag.Parse()
	if err := run(*in, *out, *commit, *elapsed, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

var errOpen = errors.New("some cases missed their targets")

func run(in, out, commit string, elapsed int, stdout io.Writer) error {
	rs, err := readResults(in)
	if err != nil {
		return err
	}
	if commit == "" {
		b, _ := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
		commit = strings.TrimSpace(string(b))
	}
	date := time.Now().UTC().Format("2006-01-02 15:04 UTC")
	if len(rs) > 0 {
		date = rs[len(rs)-1].Time
	}
	md, open := render(rs, commit, date, elapsed)
	fmt.Fprint(stdout, summary(rs))
	if elapsed > 0 {
		fmt.Fprintf(stdout, "== the run took %.1f min (wall clock, sandboxes included)\n", float64(elapsed)/60)
	}
	if out != "" {
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", out, err)
		}
		fmt.Fprintf(stdout, "wrote %s (%d recorded cases, commit %s)\n", out, len(rs), commit)
	}
	if open > 0 {
		return fmt.Errorf("%d of %d recorded cases open: %w", open, len(rs), errOpen)
	}
	return nil
}

// readResults returns the last record of each case, in the order of the
// matrix (then by case name).
func readResults(path string) ([]result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading results: %w", err)
	}
	defer f.Close()
	last := map[string]result{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		last[r.Case] = r
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	rs := make([]result, 0, len(last))
	for _, r := range last {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool {
		a, b := caseNum(rs[i].Case), caseNum(rs[j].Case)
		if a != b {
			return a < b
		}
		return rs[i].Case < rs[j].Case
	})
	return rs, nil
}

// caseNum is N of "TN" or "TN-variant".
func caseNum(c string) int {
	base, _, _ := strings.Cut(strings.TrimPrefix(c, "T"), "-")
	n, err := strconv.Atoi(base)
	if err != nil {
		return 1 << 20
	}
	return n
}

func baseCase(c string) string { b, _, _ := strings.Cut(c, "-"); return b }

func verdict(r result) string {
	if r.Pass {
		return "pass"
	}
	return "open"
}

// summary is the table printed at the end of `make test-faults`.
func summary(rs []result) string {
	var b strings.Builder
	b.WriteString("\n== fault suite summary\n")
	fmt.Fprintf(&b, "%-12s %-5s %-8s %s\n", "CASE", "", "SECONDS", "FIGURES (TARGET)")
	pass := 0
	for _, r := range rs {
		if r.Pass {
			pass++
		}
		fmt.Fprintf(&b, "%-12s %-5s %8.1f %s (%s)\n", r.Case, strings.ToUpper(verdict(r)), r.Seconds, r.Figures, r.Target)
	}
	fmt.Fprintf(&b, "== %d cases: %d pass, %d open\n", len(rs), pass, len(rs)-pass)
	return b.String()
}

func cell(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }

// render returns docs/reliability.md and the number of open cases.
func render(rs []result, commit, date string, elapsed int) (string, int) {
	byBase := map[string][]result{}
	for _, r := range rs {
		byBase[baseCase(r.Case)] = append(byBase[baseCase(r.Case)], r)
	}
	var b strings.Builder
	b.WriteString(`# Reliability: the fault suite

Generated by ` + "`go run ./test/faults/report`" + ` from the results of a run of the fault suite
(` + "`make test-faults`" + `, cases in ` + "`test/e2e/faults_*_test.go`" + `, build tags ` + "`e2e faults`" + `). Do not edit by
hand: run the suite again. Each case injects one fault of the matrix in issue 12 (T1–T33) into a real
sandbox (Consul with ACLs and TLS, dockerd, HAProxy, wireguard-go, network namespaces) and records the
figures the matrix names. **open** means the figure misses its target: a defect, described in the
note. Promises P1–P19 are those of the research note the matrix comes from.

`)
	took := ""
	if elapsed > 0 {
		took = fmt.Sprintf(", %.0f min wall clock", float64(elapsed)/60)
	}
	fmt.Fprintf(&b, "Run: %s, commit `%s`, %d recorded cases%s.\n\n", date, commit, len(rs), took)
	b.WriteString("| Case | Promises | Fault | Figures | Target | Result |\n|---|---|---|---|---|---|\n")
	open := 0
	for _, m := range matrix {
		got := byBase[m.id]
		if len(got) == 0 {
			why := m.why
			if why == "" {
				why = "not measured in this run"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | — | — | %s |\n", m.id, m.promises, cell(m.fault), cell(why))
			continue
		}
		for _, r := range got {
			res := "**" + verdict(r) + "**"
			if !r.Pass {
				open++
			}
			if r.Note != "" {
				res += ": " + r.Note
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Case, strings.Join(r.Promises, ", "), cell(r.Title),
				cell(r.Figures), cell(r.Target), cell(res))
		}
	}
	b.WriteString(`
## CI

` + ciNote + `
`)
	return b.String(), open
}

// ciNote says how the suite relates to CI (the Makefile's FAULTS_CI).
const ciNote = "`make test` without the subset takes about 14-24 minutes on this machine. The run's wall time is above; each title says " +
	"how long its case ran (the defaults are T4 5 min, T18 and T32 10 min each; shorter runs set the knobs below). At " +
	"full length the suite takes about an hour, so the whole suite in CI would pass the 60-minute budget. The CI subset is `make test-faults-ci`: T3, T8, T13, T14 and T17 in their " +
	"short variants (`DROVER_FAULTS_SHORT=1`: T8 windows of 10 s, T13 300 events, T14 20 s of churn); from the case " +
	"times of this run it adds about 8 minutes (sandboxes included). It holds only cases that pass; an open case joins " +
	"it once its defect is fixed. `make test` (what CI runs) runs it after the e2e tests; a run of its own on this " +
	"machine: 7 cases, 7 pass, 6.1 min. " +
	"Knobs for a quicker full run: `DROVER_FAULTS_T4_FOR`, `DROVER_FAULTS_T18_FOR`, `DROVER_FAULTS_T32_FOR`, " +
	"`DROVER_FAULTS_T11_FOR`, `DROVER_FAULTS_T14_FOR`, `DROVER_FAULTS_T33_FOR` (durations), `DROVER_FAULTS_T2_ITER`, " +
	"`DROVER_FAULTS_T13_EVENTS`, `DROVER_FAULTS_T19_CYCLES`, `DROVER_FAULTS_T22_ROUNDS` (counts), " +
	"`DROVER_FAULTS_PROXY_WINDOW`; each case's title says what it ran."
