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
	// Published maps an exposed TCP port to the first host binding Docker
	// made for it (-p); with --net=host every exposed port is bound on the
	// host as itself.
	Published map[int]HostBinding
	// NetworkMode is Docker's HostConfig.NetworkMode: "default", "bridge",
	// "host", "none", "container:<id>" or a network name.
	NetworkMode string
	// Health is Docker's HEALTHCHECK status: "" (no healthcheck),
	// "starting", "healthy" or "unhealthy".
	Health string
	// HealthInterval is the HEALTHCHECK interval (0 when none or default).
	HealthInterval time.Duration
	// StartedAt is when the container last started.
	StartedAt time.Time
}

// HostBinding is where a container port is published on the host. IP is
// invalid when it is bound on every address (0.0.0.0, ::).
type HostBinding struct {
	IP   netip.Addr
	Port int
}

// ContainerFromInspect converts a Docker inspect response. It is pure.
func ContainerFromInspect(r container.InspectResponse) Container {
	c := Container{Labels: map[string]string{}, Env: map[string]string{}, Networks: map[string]netip.Addr{}, Published: map[int]HostBinding{}}
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
	if r.ContainerJSONBase != nil && r.HostConfig != nil {
		c.NetworkMode = string(r.HostConfig.NetworkMode)
	}
	if c.NetworkMode == "host" {
		for _, p := range c.Exposed {
			c.Published[p] = HostBinding{Port: p}
		}
	}
	if r.NetworkSettings != nil {
		for port, bindings := range r.NetworkSettings.Ports {
			n, err := strconv.Atoi(port.Port())
			if port.Proto() != "tcp" || err != nil {
				continue
			}
			for _, b := range bindings {
				hp, err := strconv.Atoi(b.HostPort)
				if err != nil || hp < 1 || hp > 65535 {
					continue
				}
				hb := HostBinding{Port: hp}
				if ip, err := netip.ParseAddr(b.HostIP); err == nil && !ip.IsUnspecified() {
					hb.IP = ip.Unmap()
				}
				c.Published[n] = hb // the first (Docker lists 0.0.0.0 before ::)
				break
			}
		}
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
	ID      string // drover:<node>:<container id 12>:<container port>, or SERVICE_ID
	Name    string
	Address netip.Addr // where it is reached (see AddressMode)
	Port    int        // the port at Address: the container port, or the published one
	// ContainerPort is the container's own port (Port in overlay and
	// container modes).
	ContainerPort int
	// AddressMode is how Address was chosen, AddressWhy why (for status).
	AddressMode AddressMode
	AddressWhy  string
	// Warnings are settings drover did not follow although it registers
	// the port (a script check, an unknown check key, a reserved meta key).
	Warnings []string
	Tags     []string          // sorted, no duplicates
	Meta     map[string]string // drover_node, container_id, container_name, image, lb_*, weight
	Check    Check
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

// Meta keys drover writes on every registration besides MetaNode.
const (
	// MetaAddressMode says how the address was chosen: overlay, host or
	// container.
	MetaAddressMode = "address_mode"
	// MetaOwnID marks a registration whose ID came from SERVICE_ID, so that
	// the agent still knows it as its own.
	MetaOwnID = "drover_own_id"
)

// Problem is a container (or one of its ports) that discovery skipped, and
// why. Port is 0 when the whole container was skipped.
type Problem struct {
	ContainerID   string `json:"container_id"`
	ContainerName string `json:"container_name"`
	Port          int    `json:"port,omitempty"`
	Reason        string `json:"reason"`
}
