package discovery

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The drover.* keys, without the "drover." prefix. Every one but port and
// ignore may also be given per port as drover.<port>.<key>.
var droverKeys = map[string]bool{
	"service": true, "tags": true,
	"check": true, "check.interval": true, "check.timeout": true, "check.rise": true, "check.fall": true, "check.grace": true,
	"lb.mode": true, "lb.port": true, "lb.host": true, "lb.path": true, "lb.balance": true,
	"lb.sticky": true, "lb.proxy-protocol": true, "lb.tunnel-timeout": true,
	"lb.tls": true, "lb.redirect": true, "lb.hsts": true,
	"weight": true,
	"port":   false, "ignore": false, // container-wide only
}

// Registrator's names (labels or environment variables).
const (
	envName        = "SERVICE_NAME"
	envTags        = "SERVICE_TAGS"
	envIgnore      = "SERVICE_IGNORE"
	envCheckPrefix = "SERVICE_CHECK_"
	envCheckHTTP   = "SERVICE_CHECK_HTTP"
	envCheckTCP    = "SERVICE_CHECK_TCP"
	envCheckIntvl  = "SERVICE_CHECK_INTERVAL"
	envCheckTmout  = "SERVICE_CHECK_TIMEOUT"
	envCheckScript = "SERVICE_CHECK_SCRIPT"
	envCheckCmd    = "SERVICE_CHECK_CMD"
)

// setting is one label (or registrator variable) value and where it came from.
type setting struct {
	key     string // as the user wrote it; "env SERVICE_…" for environment variables
	value   string
	perPort bool // a per-port key: a bad value skips only that port
}

func (s setting) bad(want string) fault {
	return fault{perPort: s.perPort, reason: fmt.Sprintf("%s %q: %s", s.key, s.value, want)}
}

// fault is one reason to skip a port, or the whole container when !perPort.
type fault struct {
	perPort bool
	reason  string
}

// labelReader reads the settings of one container.
type labelReader struct {
	c       Container
	common  map[string]setting         // drover.<key> by key
	perPort map[int]map[string]setting // drover.<port>.<key> by port, key
	names   map[int]setting            // SERVICE_<port>_NAME by port
	faults  []fault                    // found while reading the keys
}

// labelled reports whether c asks for discovery at all, in drover's or
// registrator's words.
func labelled(c Container) bool {
	for k := range c.Labels {
		if strings.HasPrefix(k, "drover.") || registratorKey(k) {
			return true
		}
	}
	for k := range c.Env {
		if registratorKey(k) {
			return true
		}
	}
	return false
}

func registratorKey(k string) bool {
	switch {
	case k == envName, k == envTags, k == envIgnore, strings.HasPrefix(k, envCheckPrefix):
		return true
	}
	_, ok := registratorPortName(k)
	return ok
}

// registratorPortName returns the port digits of SERVICE_<digits>_NAME.
func registratorPortName(k string) (string, bool) {
	rest, ok := strings.CutPrefix(k, "SERVICE_")
	if !ok {
		return "", false
	}
	digits, ok := strings.CutSuffix(rest, "_NAME")
	if !ok || digits == "" || !allDigits(digits) {
		return "", false
	}
	return digits, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// registrator returns a registrator variable, from the labels first, else
// from the environment.
func (r *labelReader) registrator(name string) (setting, bool) {
	if v, ok := r.c.Labels[name]; ok {
		return setting{key: name, value: v}, true
	}
	if v, ok := r.c.Env[name]; ok {
		return setting{key: "env " + name, value: v}, true
	}
	return setting{}, false
}

// lookup returns drover.<port>.<key>, else drover.<key>.
func (r *labelReader) lookup(port int, key string) (setting, bool) {
	if s, ok := r.perPort[port][key]; ok {
		return s, true
	}
	s, ok := r.common[key]
	return s, ok
}

func newLabelReader(c Container) *labelReader {
	r := &labelReader{c: c, common: map[string]setting{}, perPort: map[int]map[string]setting{}, names: map[int]setting{}}
	keys := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, "drover.")
		if !ok {
			continue
		}
		s := setting{key: k, value: c.Labels[k]}
		if _, ok := droverKeys[rest]; ok {
			r.common[rest] = s
			continue
		}
		digits, key, ok := strings.Cut(rest, ".")
		if !ok || digits == "" || !allDigits(digits) {
			r.faults = append(r.faults, fault{reason: "unknown label " + k})
			continue
		}
		port, ok := parsePortNumber(digits)
		if !ok {
			r.faults = append(r.faults, fault{reason: fmt.Sprintf("label %s: want drover.<port>.<key> with a port between 1 and 65535", k)})
			continue
		}
		s.perPort = true
		if r.perPort[port] == nil {
			r.perPort[port] = map[string]setting{}
		}
		// Unknown per-port keys are kept, so that the port is selected
		// and then skipped with the reason.
		r.perPort[port][key] = s
	}
	for _, src := range []struct {
		m   map[string]string
		env bool
	}{{c.Labels, false}, {c.Env, true}} {
		for k, v := range src.m {
			digits, ok := registratorPortName(k)
			if !ok {
				continue
			}
			s := setting{key: k, value: v, perPort: true}
			if src.env {
				s.key = "env " + k
			}
			port, ok := parsePortNumber(digits)
			if !ok {
				r.faults = append(r.faults, fault{reason: fmt.Sprintf("%s: want SERVICE_<port>_NAME with a port between 1 and 65535", s.key)})
				continue
			}
			if _, seen := r.names[port]; !seen { // labels first
				r.names[port] = s
			}
		}
	}
	return r
}

// parsePortNumber parses a canonical decimal port, 1..65535.
func parsePortNumber(s string) (int, bool) {
	n, ok := parseCanonicalInt(s)
	return n, ok && n >= 1 && n <= 65535
}

// parseCanonicalInt accepts plain decimal digits without sign or leading
// zeros, so that every accepted value has one spelling.
func parseCanonicalInt(s string) (int, bool) {
	if s == "" || len(s) > 9 || !allDigits(s) || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// ignored reports whether the container asks not to be registered; a bad
// value is a fault.
func (r *labelReader) ignored() (bool, *fault) {
	if s, ok := r.common["ignore"]; ok {
		switch s.value {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		f := s.bad("want true or false")
		return false, &f
	}
	if s, ok := r.registrator(envIgnore); ok {
		switch s.value {
		case "true", "1":
			return true, nil
		case "false", "0", "":
			return false, nil
		}
		f := s.bad("want true, 1, false or 0")
		return false, &f
	}
	return false, nil
}
