package discovery

import (
	"fmt"
	"maps"
	"slices"
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
	"weight": true, "address": true, "address.network": true,
	"port": false, "ignore": false, // container-wide only
}

// Registrator's keys (labels or environment variables) are SERVICE_<key>
// for every port or SERVICE_<port>_<key> for one; reg keys are <key>
// upper-cased (registrator ignores case). Keys drover does not read become
// service meta, lower-cased (registrator's attributes).
const (
	regName   = "NAME"
	regTags   = "TAGS"
	regID     = "ID"
	regIgnore = "IGNORE"
	regCheck  = "CHECK_" // prefix of the check keys, see checks.go
	envPrefix = "SERVICE_"
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
	// quiet: nothing to register rather than something wrong (no port
	// published, as registrator skips it); unlabelled containers that
	// --register all brings in are skipped without a problem.
	quiet bool
}

// labelReader reads the settings of one container.
type labelReader struct {
	c       Container
	common  map[string]setting         // drover.<key> by key
	perPort map[int]map[string]setting // drover.<port>.<key> by port, key
	// Registrator's keys: regCommon by lower-case key (SERVICE_NAME is
	// "name"), regPort by port, key (SERVICE_80_NAME); labels win over
	// environment variables.
	regCommon map[string]setting
	regPort   map[int]map[string]setting
	faults    []fault // found while reading the keys
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

// droverLabelled reports whether c has any drover.* label: drover's port
// rules apply then; a container with registrator's keys only is read as
// registrator reads it (every port a service, see ports).
func droverLabelled(c Container) bool {
	for k := range c.Labels {
		if strings.HasPrefix(k, "drover.") {
			return true
		}
	}
	return false
}

// registratorKey reports whether k is one of registrator's keys that asks
// for registration: a name, tags, a check or ignore, for every port or for
// one. Attributes and SERVICE_ID alone do not.
func registratorKey(k string) bool {
	_, key, ok := splitRegistrator(k)
	return ok && (key == regName || key == regTags || key == regIgnore || strings.HasPrefix(key, regCheck))
}

// splitRegistrator splits SERVICE_<port>_<key> into its port digits and
// upper-case key, or SERVICE_<key> into "" and the key.
func splitRegistrator(k string) (digits, key string, ok bool) {
	rest, ok := strings.CutPrefix(k, envPrefix)
	if !ok || rest == "" {
		return "", "", false
	}
	if d, key, cut := strings.Cut(rest, "_"); cut && d != "" && allDigits(d) {
		if key == "" {
			return "", "", false
		}
		return d, strings.ToUpper(key), true
	}
	return "", strings.ToUpper(rest), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// reg returns registrator's key for port: SERVICE_<port>_<key>, else
// SERVICE_<key>.
func (r *labelReader) reg(port int, key string) (setting, bool) {
	if s, ok := r.regPort[port][key]; ok {
		return s, true
	}
	s, ok := r.regCommon[key]
	return s, ok
}

// eachReg calls f for every registrator key that applies to port, in key
// order, the per-port one where both are set.
func (r *labelReader) eachReg(port int, f func(key string, s setting)) {
	keys := map[string]bool{}
	for k := range r.regPort[port] {
		keys[k] = true
	}
	for k := range r.regCommon {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		s, _ := r.reg(port, k)
		f(k, s)
	}
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
	r := &labelReader{c: c, common: map[string]setting{}, perPort: map[int]map[string]setting{},
		regCommon: map[string]setting{}, regPort: map[int]map[string]setting{}}
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
	}{{c.Labels, false}, {c.Env, true}} { // labels first
		for _, k := range slices.Sorted(maps.Keys(src.m)) {
			digits, key, ok := splitRegistrator(k)
			if !ok {
				continue
			}
			s := setting{key: k, value: src.m[k]}
			if src.env {
				s.key = "env " + k
			}
			if digits == "" {
				if _, seen := r.regCommon[key]; !seen {
					r.regCommon[key] = s
				}
				continue
			}
			port, ok := parsePortNumber(digits)
			if !ok {
				r.faults = append(r.faults, fault{reason: fmt.Sprintf("%s: want SERVICE_<port>_<key> with a port between 1 and 65535", s.key)})
				continue
			}
			s.perPort = true
			if r.regPort[port] == nil {
				r.regPort[port] = map[string]setting{}
			}
			if _, seen := r.regPort[port][key]; !seen {
				r.regPort[port][key] = s
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
	if s, ok := r.regCommon[regIgnore]; ok {
		return parseRegIgnore(s)
	}
	return false, nil
}

// parseRegIgnore reads SERVICE_IGNORE or SERVICE_<port>_IGNORE.
func parseRegIgnore(s setting) (bool, *fault) {
	switch s.value {
	case "true", "1":
		return true, nil
	case "false", "0", "":
		return false, nil
	}
	return false, badf(s, "want true, 1, false or 0")
}
