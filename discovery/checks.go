package discovery

import (
	"fmt"
	"strings"
	"time"

	"github.com/drover-net/drover/discovery/contract"
)

// Registrator's check keys (after SERVICE_ or SERVICE_<port>_).
// Of the kinds, the first one set is used, in registrator's order.
const (
	regCheckHTTP        = "CHECK_HTTP"
	regCheckHTTPMethod  = "CHECK_HTTP_METHOD"
	regCheckHTTPS       = "CHECK_HTTPS"
	regCheckHTTPSMethod = "CHECK_HTTPS_METHOD"
	regCheckCmd         = "CHECK_CMD"
	regCheckScript      = "CHECK_SCRIPT"
	regCheckTTL         = "CHECK_TTL"
	regCheckTCP         = "CHECK_TCP"
	regCheckGRPC        = "CHECK_GRPC"
	regCheckGRPCTLS     = "CHECK_GRPC_USE_TLS"
	regCheckSkipVerify  = "CHECK_TLS_SKIP_VERIFY"
	regCheckInterval    = "CHECK_INTERVAL"
	regCheckTimeout     = "CHECK_TIMEOUT"
	regCheckInitial     = "CHECK_INITIAL_STATUS"
	regCheckDeregister  = "CHECK_DEREGISTER_AFTER"
)

// regCheckKeys are every check key drover reads; another SERVICE_CHECK_*
// is reported and ignored.
var regCheckKeys = map[string]bool{
	regCheckHTTP: true, regCheckHTTPMethod: true, regCheckHTTPS: true, regCheckHTTPSMethod: true,
	regCheckCmd: true, regCheckScript: true, regCheckTTL: true, regCheckTCP: true,
	regCheckGRPC: true, regCheckGRPCTLS: true, regCheckSkipVerify: true,
	regCheckInterval: true, regCheckTimeout: true, regCheckInitial: true, regCheckDeregister: true,
}

// Bounds of registrator's check values.
const (
	minTTL             = time.Second
	maxTTL             = 24 * time.Hour
	minDeregisterAfter = time.Minute // Consul's own minimum
	maxDeregisterAfter = 30 * 24 * time.Hour
)

// check resolves the health check of one port; warnings are settings it
// did not follow, said once, with the port still registered.
func (r *labelReader) check(port int, faults []fault) (Check, []fault, []string) {
	var warnings []string
	add := func(f *fault) {
		if f != nil {
			faults = append(faults, *f)
		}
	}
	ck := DefaultCheck
	reg := func(key string) (setting, bool) { return r.reg(port, key) }
	if s, ok := r.lookup(port, "check"); ok {
		ck.Kind, ck.Path, _ = parseCheckKind(s)
	} else if s, ok := reg(regCheckHTTP); ok {
		ck.Kind, ck.Path = "http", checkPath(s, add)
		ck.Method = checkMethod(reg, regCheckHTTPMethod, add)
	} else if s, ok := reg(regCheckHTTPS); ok {
		ck.Kind, ck.Path = "https", checkPath(s, add)
		ck.Method = checkMethod(reg, regCheckHTTPSMethod, add)
		ck.TLSSkipVerify = regBool(reg, regCheckSkipVerify, add)
	} else if _, ok := firstOf(reg, regCheckCmd, regCheckScript); ok {
		// Said below; the default check stands in.
	} else if s, ok := reg(regCheckTTL); ok {
		d, err := time.ParseDuration(s.value)
		if err != nil || d < minTTL || d > maxTTL {
			add(badf(s, "want a duration between 1s and 24h"))
		}
		ck.Kind, ck.TTL = "ttl", d
	} else if s, ok := reg(regCheckTCP); ok {
		switch s.value {
		case "true":
			ck.Kind = "tcp"
		case "false":
		default:
			add(badf(s, "want true or false"))
		}
	} else if s, ok := reg(regCheckGRPC); ok {
		if s.value != "true" {
			add(badf(s, "want true"))
		}
		ck.Kind = "grpc"
		ck.GRPCUseTLS = regBool(reg, regCheckGRPCTLS, add)
		ck.TLSSkipVerify = regBool(reg, regCheckSkipVerify, add)
	}
	if s, ok := firstOf(reg, regCheckCmd, regCheckScript); ok {
		warnings = append(warnings, fmt.Sprintf("%s: not run, drover never runs commands from labels; the service is registered with the %s check instead", s.key, checkName(ck)))
	}

	interval, intervalSet := r.lookup(port, "check.interval")
	if !intervalSet {
		interval, intervalSet = reg(regCheckInterval)
	}
	intervalOK := true
	if intervalSet {
		d, f := parseInterval(interval)
		add(f)
		if intervalOK = f == nil; intervalOK {
			ck.Interval = d
			ck.Timeout = min(DefaultCheck.Timeout, d/2)
		}
	}
	timeout, timeoutSet := r.lookup(port, "check.timeout")
	if !timeoutSet {
		timeout, timeoutSet = reg(regCheckTimeout)
	}
	if timeoutSet {
		d, f := parseTimeout(timeout)
		add(f)
		if f == nil {
			if intervalOK && d >= ck.Interval {
				add(&fault{
					perPort: timeout.perPort || (intervalSet && interval.perPort),
					reason:  fmt.Sprintf("%s %q: %s (%s)", timeout.key, timeout.value, wantTimeout, ck.Interval),
				})
			}
			ck.Timeout = d
		}
	}
	if s, ok := r.lookup(port, "check.rise"); ok {
		ck.Rise, _ = parseIntRange(s, 1, maxRiseFall)
	}
	if s, ok := r.lookup(port, "check.fall"); ok {
		ck.Fall, _ = parseIntRange(s, 1, maxRiseFall)
	}
	if s, ok := r.lookup(port, "check.grace"); ok {
		ck.Grace, _ = parseGrace(s)
	}
	if s, ok := reg(regCheckInitial); ok {
		switch s.value {
		case "passing", "warning", "critical":
			ck.InitialStatus = s.value
		default:
			add(badf(s, "want passing, warning or critical"))
		}
	}
	if s, ok := reg(regCheckDeregister); ok {
		d, err := time.ParseDuration(s.value)
		if err != nil || d < minDeregisterAfter || d > maxDeregisterAfter {
			add(badf(s, "want a duration between 1m and 720h"))
		}
		ck.DeregisterAfter = d
	}
	for _, s := range r.regCheckUnknown(port) {
		warnings = append(warnings, fmt.Sprintf("%s: not a check setting drover knows; ignored", s.key))
	}
	return ck, faults, warnings
}

// checkName names the kind of a check for a warning.
func checkName(c Check) string {
	if c.Kind == "none" {
		return "no"
	}
	return strings.ToUpper(c.Kind)
}

func firstOf(reg func(string) (setting, bool), keys ...string) (setting, bool) {
	for _, k := range keys {
		if s, ok := reg(k); ok {
			return s, true
		}
	}
	return setting{}, false
}

// checkPath reads an HTTP(S) check path.
func checkPath(s setting, add func(*fault)) string {
	if !contract.ValidPath(s.value) {
		add(badf(s, `want a path starting with "/" without spaces`))
		return "/"
	}
	return s.value
}

// checkMethod reads the HTTP method key: upper-case letters ("" when unset).
func checkMethod(reg func(string) (setting, bool), key string, add func(*fault)) string {
	s, ok := reg(key)
	if !ok {
		return ""
	}
	if len(s.value) < 1 || len(s.value) > 16 || strings.Trim(s.value, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		add(badf(s, "want an HTTP method such as GET or HEAD"))
		return ""
	}
	return s.value
}

// regBool reads a registrator flag key (false when unset): registrator
// takes any non-empty value as true; drover wants true or false.
func regBool(reg func(string) (setting, bool), key string, add func(*fault)) bool {
	s, ok := reg(key)
	if !ok {
		return false
	}
	switch s.value {
	case "true":
		return true
	case "false":
		return false
	}
	add(badf(s, "want true or false"))
	return false
}

// regCheckUnknown lists the SERVICE_CHECK_* keys for port that drover does
// not know, sorted.
func (r *labelReader) regCheckUnknown(port int) []setting {
	var out []setting
	r.eachReg(port, func(k string, s setting) {
		if strings.HasPrefix(k, regCheck) && !regCheckKeys[k] {
			out = append(out, s)
		}
	})
	return out
}
