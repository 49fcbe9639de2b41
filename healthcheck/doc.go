// Package healthcheck owns each service's check definition (HTTP or TCP,
// interval, timeout, rise, fall) and places it where it keeps working while
// drover is down: Consul-run checks and HAProxy server checks. It bridges
// Docker HEALTHCHECK status into Consul and probes every mesh peer end to
// end.
//
// It does not register services (discovery) nor configure HAProxy (lb); it
// hands both the one definition they render.
package healthcheck
