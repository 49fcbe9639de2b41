package discovery

import (
	"fmt"

	"github.com/drover-net/drover/discovery/contract"
)

// check resolves the health check of one port.
func (r *labelReader) check(port int, faults []fault) (Check, []fault) {
	add := func(f *fault) {
		if f != nil {
			faults = append(faults, *f)
		}
	}
	ck := DefaultCheck
	if s, ok := r.lookup(port, "check"); ok {
		ck.Kind, ck.Path, _ = parseCheckKind(s)
	} else if s, ok := r.registrator(envCheckHTTP); ok {
		if contract.ValidPath(s.value) {
			ck.Kind, ck.Path = "http", s.value
		} else {
			add(badf(s, `want a path starting with "/" without spaces`))
		}
	} else if s, ok := r.registrator(envCheckTCP); ok {
		switch s.value {
		case "true":
			ck.Kind = "tcp"
		case "false":
		default:
			add(badf(s, "want true or false"))
		}
	}

	interval, intervalSet := r.lookup(port, "check.interval")
	if !intervalSet {
		interval, intervalSet = r.registrator(envCheckIntvl)
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
		timeout, timeoutSet = r.registrator(envCheckTmout)
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
	return ck, faults
}
