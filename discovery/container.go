package discovery

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/drover-net/drover/discovery/contract"
)

// Container is what discovery needs of a Docker container. It is built from
// an inspect response by ContainerFromInspect (pure).
type Container struct {
	ID       string
	Name     string // without the leading "/"
	Image    string // as the operator gave it (Config.Image)
	Labels   map[string]string
	Env      map[string]string // only SERVICE_* variables (registrator compatibility)
	Running  bool
	Networks map[string]netip.Addr // network name → IPv4 address
	Exposed  []int                 // exposed TCP ports, sorted
	// Health is Docker's HEALTHCHECK status: "" (no healthcheck),
	// "starting", "healthy" or "unhealthy".
	Health string
	// HealthInterval is the HEALTHCHECK interval (0 when none or default).
	HealthInterval time.Duration
	// StartedAt is when the container last started.
	StartedAt time.Time
}

// ContainerFromInspect converts a Docker inspect response. It is pure.
func ContainerFromInspect(r container.InspectResponse) Container {
	c := Container{Labels: map[string]string{}, Env: map[string]string{}, Networks: map[string]netip.Addr{}}
	if r.ContainerJSONBase != nil {
		c.ID = r.ID
		c.Name = strings.TrimPrefix(r.Name, "/")
		if r.State != nil {
			c.Running = r.State.Running && !r.State.Paused && !r.State.Restarting
			if r.State.Health != nil {
				c.Health = string(r.State.Health.Status)
			}
			c.StartedAt, _ = time.Parse(time.RFC3339Nano, r.State.StartedAt)
		}
	}
	if r.Config != nil {
		c.Image = r.Config.Image
		for k, v := range r.Config.Labels {
			c.Labels[k] = v
		}
		for _, kv := range r.Config.Env {
			if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "SERVICE_") {
				c.Env[k] = v
			}
		}
		for p := range r.Config.ExposedPorts {
			if p.Proto() == "tcp" {
				if n, err := strconv.Atoi(p.Port()); err == nil {
					c.Exposed = append(c.Exposed, n)
				}
			}
		}
		sort.Ints(c.Exposed)
		if hc := r.Config.Healthcheck; hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE" {
			c.HealthInterval = hc.Interval
		}
	}
	if r.NetworkSettings != nil {
		for name, ep := range r.NetworkSettings.Networks {
			if ep == nil {
				continue
			}
			if a, err := netip.ParseAddr(ep.IPAddress); err == nil {
				c.Networks[name] = a
			}
		}
	}
	return c
}

// Check is a health check definition (the registration contract's type:
// the same definition goes to Consul and, for lb services, into meta).
type Check = contract.Check

// Registration is one Consul service instance for one container port.
type Registration struct {
	ID      string // drover:<node>:<container id 12>:<port>
	Name    string
	Address netip.Addr // the container's overlay address
	Port    int
	Tags    []string          // sorted, no duplicates
	Meta    map[string]string // drover_node, container_id, container_name, image, lb_*, weight
	Check   Check
	// DockerHealth is true when the container has a Docker HEALTHCHECK,
	// whose status is bridged into Consul as a TTL check.
	DockerHealth bool
	// DockerStatus is that status now ("starting", "healthy", "unhealthy").
	DockerStatus string
	// Started is when the container last started (for the check's grace).
	Started time.Time
}

// InGrace returns r with its check adjusted for the initial grace at time
// now (Fall raised while the grace lasts) and when the grace ends (zero when
// it is over or there is none). It is pure.
func (r Registration) InGrace(now time.Time) (Registration, time.Time) {
	c := r.Check
	if c.Grace <= 0 || r.Started.IsZero() || c.Interval <= 0 {
		return r, time.Time{}
	}
	end := r.Started.Add(c.Grace)
	if !now.Before(end) {
		return r, time.Time{}
	}
	extra := int((c.Grace + c.Interval - 1) / c.Interval)
	r.Check.Fall += extra
	return r, end
}

// Problem is a container (or one of its ports) that discovery skipped, and
// why. Port is 0 when the whole container was skipped.
type Problem struct {
	ContainerID   string `json:"container_id"`
	ContainerName string `json:"container_name"`
	Port          int    `json:"port,omitempty"`
	Reason        string `json:"reason"`
}
