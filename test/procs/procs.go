// Package procs reads the process table for tests: which HAProxy masters
// run a config. It is imported only by _test.go files and e2e tests; out of
// scope: starting or stopping anything.
package procs

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// HAProxyMasters lists the live HAProxy masters running config cfg: the
// master-worker processes (-W) whose command line names cfg and whose
// parent is not one of them (workers are their masters' children, and a
// worker forked before any reload has its master's command line). More
// than one means two masters share the frontends' ports.
func HAProxyMasters(cfg string) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cl), "\x00-W\x00") || !strings.Contains(string(cl), cfg+"\x00") {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 1 && f[0] != "Z" {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	var out []int
	for pid, pp := range parent {
		if _, child := parent[pp]; !child {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}
