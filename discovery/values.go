package discovery

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/drover-net/drover/discovery/contract"
)

// checkValue checks one drover label value on its own; key is without the
// "drover." and port prefix.
func checkValue(key string, s setting) *fault {
	var f *fault
	switch key {
	case "service":
		_, f = parseName(s)
	case "port":
		if _, ok := parsePortNumber(s.value); !ok {
			f = badf(s, "want a port between 1 and 65535")
		}
	case "tags":
		_, f = parseTags(s)
	case "check":
		_, _, f = parseCheckKind(s)
	case "check.interval":
		_, f = parseInterval(s)
	case "check.timeout":
		_, f = parseTimeout(s)
	case "check.rise", "check.fall":
		_, f = parseIntRange(s, 1, maxRiseFall)
	case "check.grace":
		_, f = parseGrace(s)
	case "lb.mode":
		f = oneOf(s, "http", "tcp")
	case "lb.port":
		if _, ok := parsePortNumber(s.value); !ok {
			f = badf(s, "want a port between 1 and 65535")
		}
	case "lb.host":
		if !contract.ValidHost(s.value) {
			f = badf(s, "want a lower-case DNS name (labels of a-z, 0-9 and '-' separated by dots, at most 253 characters)")
		}
	case "lb.path":
		if !contract.ValidPath(s.value) {
			f = badf(s, `want a path starting with "/" without spaces`)
		}
	case "lb.balance":
		f = oneOf(s, "roundrobin", "leastconn", "source")
	case "lb.sticky":
		f = oneOf(s, "true", "false")
	case "lb.proxy-protocol":
		f = oneOf(s, "v1", "v2")
	case "lb.tunnel-timeout":
		_, f = parseTunnel(s)
	case "lb.tls":
		f = oneOf(s, "true", "false")
	case "lb.redirect":
		f = oneOf(s, "301", "308")
	case "lb.hsts":
		_, f = parseHSTS(s)
	case "weight":
		_, f = parseIntRange(s, 0, maxWeight)
	case "address":
		f = oneOf(s, "auto", "overlay", "host", "container")
	case "address.network":
		if s.value == "" || len(s.value) > 128 {
			f = badf(s, "want a Docker network name")
		}
	case "ignore":
		// checked by ignored
	default:
		f = &fault{perPort: s.perPort, reason: "unknown label " + s.key}
	}
	return f
}

func badf(s setting, want string) *fault {
	f := s.bad(want)
	return &f
}

func oneOf(s setting, allowed ...string) *fault {
	for _, a := range allowed {
		if s.value == a {
			return nil
		}
	}
	want := "want " + strings.Join(allowed[:len(allowed)-1], ", ") + " or " + allowed[len(allowed)-1]
	return badf(s, want)
}

func parseIntRange(s setting, lo, hi int) (int, *fault) {
	n, ok := parseCanonicalInt(s.value)
	if !ok || n < lo || n > hi {
		return 0, badf(s, fmt.Sprintf("want an integer between %d and %d", lo, hi))
	}
	return n, nil
}

// validName is ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$.
func validName(s string) bool {
	if len(s) < 1 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

const wantName = "want a name of lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit"

func parseName(s setting) (string, *fault) {
	if !validName(s.value) {
		return "", badf(s, wantName)
	}
	return s.value, nil
}

// imageName is the name part of an image reference, lower-cased:
// "registry.io:5000/team/web:1.2" → "web".
func imageName(image string) string {
	ref, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		ref = ref[i+1:]
	}
	ref, _, _ = strings.Cut(ref, ":")
	return strings.ToLower(ref)
}

// validTag is ^[A-Za-z0-9._:=/-]{1,64}$.
func validTag(s string) bool {
	return len(s) >= 1 && len(s) <= maxTagLen && alnumOr(s, "._:=/-")
}

// alnumOr reports whether s has only ASCII letters, digits and bytes of
// extra.
func alnumOr(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// parseTags splits a comma-separated list; the result is sorted, without
// duplicates, nil when empty.
func parseTags(s setting) ([]string, *fault) {
	set := map[string]bool{}
	for _, t := range strings.Split(s.value, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !validTag(t) {
			return nil, badf(s, fmt.Sprintf("tag %q: want comma-separated tags of letters, digits and ._:=/- (1 to 64 characters each)", t))
		}
		set[t] = true
	}
	if len(set) == 0 {
		return nil, nil
	}
	return slices.Sorted(maps.Keys(set)), nil
}

const wantCheck = "want http:/path, tcp or none"

// parseCheckKind parses drover.check: "http:/path", "tcp" or "none".
func parseCheckKind(s setting) (kind, path string, f *fault) {
	switch v := s.value; {
	case v == "tcp", v == "none":
		return v, "", nil
	case strings.HasPrefix(v, "http:"):
		p := strings.TrimPrefix(v, "http:")
		if !contract.ValidPath(p) {
			return "", "", badf(s, `want http:/path with a path starting with "/" without spaces`)
		}
		return "http", p, nil
	case strings.HasPrefix(v, "script"):
		return "", "", badf(s, "script checks are not supported; "+wantCheck)
	}
	return "", "", badf(s, wantCheck)
}

const wantInterval = "want a duration between 1s and 1h"

func parseInterval(s setting) (time.Duration, *fault) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d < minCheckInterval || d > maxCheckInterval {
		return 0, badf(s, wantInterval)
	}
	return d, nil
}

const wantGrace = "want a duration between 0s and 1h"

// parseGrace reads drover.check.grace: how long after the container starts
// failures count less (see Check.Grace).
func parseGrace(s setting) (time.Duration, *fault) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d < 0 || d > time.Hour {
		return 0, badf(s, wantGrace)
	}
	return d, nil
}

const wantHSTS = "want a duration of whole seconds between 1s and 17520h (two years)"

// parseHSTS reads drover.lb.hsts (the max-age).
func parseHSTS(s setting) (time.Duration, *fault) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d < time.Second || d > contract.MaxHSTS || d%time.Second != 0 {
		return 0, badf(s, wantHSTS)
	}
	return d, nil
}

const wantTunnel = "want a duration of whole seconds between 1s and 24h"

// parseTunnel reads drover.lb.tunnel-timeout.
func parseTunnel(s setting) (time.Duration, *fault) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d < contract.MinTunnel || d > contract.MaxTunnel || d%time.Second != 0 {
		return 0, badf(s, wantTunnel)
	}
	return d, nil
}

const wantTimeout = "want a duration between 100ms and the check interval"

// parseTimeout checks the timeout on its own; registration checks it
// against the interval.
func parseTimeout(s setting) (time.Duration, *fault) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d < minCheckTimeout || d >= maxCheckInterval {
		return 0, badf(s, wantTimeout)
	}
	return d, nil
}
