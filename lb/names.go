package lb

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/drover-net/drover/discovery/contract"
)

// maxName bounds backend and server names: HAProxy's server-state-file
// lines and runtime-API commands are read into bounded buffers.
const maxName = 100

// sanitize replaces every character outside [A-Za-z0-9_.-] by "_"; a name
// longer than maxName keeps its first part and ends with a hash of the
// whole, so distinct long names stay distinct.
func sanitize(s string) string {
	if s == "" {
		return "_"
	}
	if len(s) > maxName {
		s = s[:maxName-9] + "_" + shortHash(s)
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// isSlotName reports whether n has the form of an empty slot's name
// ("slot<i>"), which a server must not take.
func isSlotName(n string) bool {
	d, ok := strings.CutPrefix(n, "slot")
	if !ok || d == "" {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
	}
	return true
}

func shortHash(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}

// fmtDur writes a duration the way haproxy.cfg takes it.
func fmtDur(d time.Duration) string { return contract.FormatDuration(d) }
