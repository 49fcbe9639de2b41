package discovery

import "errors"

// ACLDenied reports whether err is, or wraps, a refusal by Consul's ACLs:
// the Consul adapter's errors say so with an ACLDenied() bool method. Loops
// retry those every second (a new token file must work within seconds) and
// never treat them as an answer about the data.
func ACLDenied(err error) bool {
	var d interface{ ACLDenied() bool }
	return errors.As(err, &d) && d.ACLDenied()
}
