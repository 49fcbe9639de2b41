package healthcheck

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-net/drover/discovery"
)

// DeregisterAfter is the dead-man switch on every container check: an
// instance critical this long is removed by Consul itself, even if no drover
// agent is left to do it.
const DeregisterAfter = "10m"

// DockerTTL is how long a bridged Docker HEALTHCHECK status stays valid
// without an update from the agent. It is long on purpose: while drover is
// down the last known Docker status stands, and the Consul-run check (if
// any) keeps judging the service on its own.
const DockerTTL = "1h"

// DockerRefresh is how often an unchanged Docker status is written again:
// a quarter of DockerTTL, so a healthy container never expires while drover
// runs, even when its status does not change for hours.
const DockerRefresh = 15 * time.Minute

// ConsulChecks returns the Consul checks of one registration: the
// Consul-run HTTP or TCP check from its definition (rise and fall as
// success_before_passing and failures_before_critical, so that health is
// judged while drover is down) and, when the container has a Docker
// HEALTHCHECK, a TTL check that carries its status. It is pure.
func ConsulChecks(r discovery.Registration) api.AgentServiceChecks {
	var out api.AgentServiceChecks
	target := net.JoinHostPort(r.Address.String(), strconv.Itoa(r.Port))
	c := r.Check
	deregister := DeregisterAfter
	if c.DeregisterAfter > 0 {
		deregister = c.DeregisterAfter.String()
	}
	base := api.AgentServiceCheck{
		Interval:                       c.Interval.String(),
		Timeout:                        c.Timeout.String(),
		SuccessBeforePassing:           c.Rise,
		FailuresBeforeCritical:         c.Fall,
		DeregisterCriticalServiceAfter: deregister,
		Status:                         c.InitialStatus,
	}
	method := c.Method
	if method == "" {
		method = "GET"
	}
	switch c.Kind {
	case "http", "https":
		ck := base
		ck.CheckID, ck.Name, ck.HTTP = r.ID+":"+c.Kind, strings.ToUpper(c.Kind)+" "+method+" "+c.Path, c.Kind+"://"+target+c.Path
		ck.Method, ck.TLSSkipVerify = c.Method, c.TLSSkipVerify
		out = append(out, &ck)
	case "tcp":
		ck := base
		ck.CheckID, ck.Name, ck.TCP = r.ID+":tcp", "TCP connect "+target, target
		out = append(out, &ck)
	case "grpc":
		ck := base
		ck.CheckID, ck.Name, ck.GRPC = r.ID+":grpc", "gRPC health "+target, target
		ck.GRPCUseTLS, ck.TLSSkipVerify = c.GRPCUseTLS, c.TLSSkipVerify
		out = append(out, &ck)
	case "ttl":
		// The application passes it itself (Consul's /v1/agent/check/pass).
		out = append(out, &api.AgentServiceCheck{
			CheckID: r.ID + ":ttl", Name: "TTL " + c.TTL.String() + " (passed by the application)",
			TTL: c.TTL.String(), Status: c.InitialStatus, DeregisterCriticalServiceAfter: deregister,
			Notes: "registered by drover from SERVICE_CHECK_TTL; the application updates it",
		})
	}
	if r.DockerHealth {
		out = append(out, &api.AgentServiceCheck{
			CheckID:                        DockerCheckID(r.ID),
			Name:                           "Docker HEALTHCHECK",
			TTL:                            DockerTTL,
			Status:                         DockerStatus(r.DockerStatus),
			Notes:                          "bridged from the container's Docker health status by drover",
			DeregisterCriticalServiceAfter: DeregisterAfter,
		})
	}
	return out
}

// DockerCheckID is the ID of the TTL check bridging a container's Docker
// health status.
func DockerCheckID(serviceID string) string { return serviceID + ":docker" }

// DockerStatus maps Docker's health status to Consul's.
func DockerStatus(s string) string {
	switch s {
	case "healthy":
		return api.HealthPassing
	case "unhealthy":
		return api.HealthCritical
	default: // starting
		return api.HealthWarning
	}
}

// FirstJudgment probes a new instance itself before it is registered: the
// check's kind and path against its overlay address, until Rise probes in
// a row pass (25 ms apart, each with the check's timeout capped at 250 ms)
// or JudgmentWindow ends. A container's process may not listen yet when
// Docker reports it started, so refused probes are retried within the
// window. When Rise probes pass, the Consul-run check starts passing;
// otherwise it keeps Consul's default (critical until Consul's own first
// run, which Consul staggers randomly within the interval). Consul judges
// it from then on, with the same rise and fall.
func FirstJudgment(ctx context.Context, r discovery.Registration, checks api.AgentServiceChecks) {
	c := r.Check
	if c.Kind != "http" && c.Kind != "tcp" {
		return
	}
	target := net.JoinHostPort(r.Address.String(), strconv.Itoa(r.Port))
	timeout := min(c.Timeout, 250*time.Millisecond)
	if timeout <= 0 {
		timeout = 250 * time.Millisecond
	}
	deadline := time.Now().Add(JudgmentWindow)
	for ok := 0; ok < max(c.Rise, 1); {
		if probe(ctx, c.Kind, target, c.Path, timeout) == nil {
			ok++
		} else {
			ok = 0
		}
		if ok >= max(c.Rise, 1) {
			break
		}
		if time.Now().Add(25 * time.Millisecond).After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(25 * time.Millisecond):
		}
	}
	for _, ck := range checks {
		if ck.HTTP != "" || ck.TCP != "" {
			ck.Status = api.HealthPassing
		}
	}
}

// JudgmentWindow bounds FirstJudgment: a new container is registered at
// most this much later than without it.
const JudgmentWindow = 500 * time.Millisecond

// probeTransport keeps no connections and ignores proxy settings: a probe
// goes straight to the instance, like Consul's own check.
var probeTransport = &http.Transport{DisableKeepAlives: true}

func probe(ctx context.Context, kind, target, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if kind == "tcp" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+target+path, nil)
	if err != nil {
		return err
	}
	resp, err := probeTransport.RoundTrip(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	// Consul's rule: 2xx passing, 429 warning, anything else critical.
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
