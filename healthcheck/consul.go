package healthcheck

import (
	"net"
	"strconv"

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

// ConsulChecks returns the Consul checks of one registration: the
// Consul-run HTTP or TCP check from its definition (rise and fall as
// success_before_passing and failures_before_critical, so that health is
// judged while drover is down) and, when the container has a Docker
// HEALTHCHECK, a TTL check that carries its status. It is pure.
func ConsulChecks(r discovery.Registration) api.AgentServiceChecks {
	var out api.AgentServiceChecks
	target := net.JoinHostPort(r.Address.String(), strconv.Itoa(r.Port))
	c := r.Check
	base := api.AgentServiceCheck{
		Interval:                       c.Interval.String(),
		Timeout:                        c.Timeout.String(),
		SuccessBeforePassing:           c.Rise,
		FailuresBeforeCritical:         c.Fall,
		DeregisterCriticalServiceAfter: DeregisterAfter,
	}
	switch c.Kind {
	case "http":
		ck := base
		ck.CheckID, ck.Name, ck.HTTP = r.ID+":http", "HTTP GET "+c.Path, "http://"+target+c.Path
		out = append(out, &ck)
	case "tcp":
		ck := base
		ck.CheckID, ck.Name, ck.TCP = r.ID+":tcp", "TCP connect "+target, target
		out = append(out, &ck)
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
