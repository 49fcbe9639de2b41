// Package docker is the Docker adapter: a thin wrapper of
// github.com/docker/docker/client for the calls drover makes. It returns
// SDK types or plain values and knows nothing of drover's domain.
package docker

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

// Client talks to one dockerd.
type Client struct{ c *client.Client }

// New returns a client for host (a DOCKER_HOST-style address; empty means
// DOCKER_HOST or the default socket), negotiating the API version.
func New(host string) (*Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Client{c: c}, nil
}

// Close releases the client.
func (d *Client) Close() error { return d.c.Close() }

// NetworkSpec describes a bridge network.
type NetworkSpec struct {
	Name    string
	Subnet  netip.Prefix
	Gateway netip.Addr
	MTU     int
	Bridge  string            // Linux bridge name
	Masq    bool              // Docker's own IP masquerade
	Labels  map[string]string // marks the network as ours
}

// EnsureNetwork creates the bridge network, or adopts an existing one of the
// same name, subnet and MTU. A network of that name with another subnet or
// MTU is recreated when no container uses it; with containers attached,
// another subnet is refused and another MTU kept (their MTU cannot change
// under them; the caller clamps TCP MSS meanwhile). It reports what it did:
// see NetworkAction.
func (d *Client) EnsureNetwork(ctx context.Context, spec NetworkSpec) (string, error) {
	cur, err := d.c.NetworkInspect(ctx, spec.Name, network.InspectOptions{})
	switch {
	case err == nil:
		facts := NetworkFacts{Containers: len(cur.Containers), MTU: DefaultMTU}
		for _, cfg := range cur.IPAM.Config {
			if p, perr := netip.ParsePrefix(cfg.Subnet); perr == nil {
				facts.Subnets = append(facts.Subnets, p)
			}
		}
		if m, perr := strconv.Atoi(cur.Options[mtuOption]); perr == nil && m > 0 {
			facts.MTU = m
		}
		what, err := NetworkAction(facts, spec)
		if err != nil || !strings.HasPrefix(what, "recreated") {
			return what, err
		}
		if err := d.c.NetworkRemove(ctx, cur.ID); err != nil {
			return "", fmt.Errorf("removing docker network %s to recreate it (%s): %w", spec.Name, what, err)
		}
		if err := d.create(ctx, spec); err != nil {
			return "", err
		}
		return what, nil
	case errdefs.IsNotFound(err):
		if err := d.create(ctx, spec); err != nil {
			return "", err
		}
		return "created", nil
	default:
		return "", fmt.Errorf("inspecting docker network %s: %w", spec.Name, err)
	}
}

// DefaultMTU is the MTU of a Docker bridge network created without one.
const DefaultMTU = 1500

const mtuOption = "com.docker.network.driver.mtu"

// NetworkFacts is what EnsureNetwork reads of an existing network.
type NetworkFacts struct {
	Subnets    []netip.Prefix
	MTU        int // DefaultMTU when the network sets none
	Containers int // attached containers
}

// NetworkAction decides what to do with an existing network for spec. It
// returns "adopted" (nothing to do), "recreated" (wrong subnet, no
// container), "recreated for mtu N (was M)" (no container), or "kept at mtu
// M (want N): K containers attached", and an error for a wrong subnet with
// containers attached. An MTU of 0 in spec accepts any. It is pure.
func NetworkAction(cur NetworkFacts, spec NetworkSpec) (string, error) {
	subnetOK := false
	for _, p := range cur.Subnets {
		subnetOK = subnetOK || p == spec.Subnet
	}
	switch {
	case !subnetOK && cur.Containers > 0:
		return "", fmt.Errorf("docker network %s has subnet %v, not %s, and %d containers use it: disconnect them or remove the network", spec.Name, cur.Subnets, spec.Subnet, cur.Containers)
	case !subnetOK:
		return "recreated", nil
	case spec.MTU <= 0 || cur.MTU == spec.MTU:
		return "adopted", nil
	case cur.Containers > 0:
		return fmt.Sprintf("kept at mtu %d (want %d): %d containers attached", cur.MTU, spec.MTU, cur.Containers), nil
	default:
		return fmt.Sprintf("recreated for mtu %d (was %d)", spec.MTU, cur.MTU), nil
	}
}

func (d *Client) create(ctx context.Context, spec NetworkSpec) error {
	opts := map[string]string{
		"com.docker.network.bridge.enable_ip_masquerade": strconv.FormatBool(spec.Masq),
	}
	if spec.MTU > 0 {
		opts[mtuOption] = strconv.Itoa(spec.MTU)
	}
	if spec.Bridge != "" {
		opts["com.docker.network.bridge.name"] = spec.Bridge
	}
	_, err := d.c.NetworkCreate(ctx, spec.Name, network.CreateOptions{
		Driver:  "bridge",
		IPAM:    &network.IPAM{Config: []network.IPAMConfig{{Subnet: spec.Subnet.String(), Gateway: spec.Gateway.String()}}},
		Options: opts,
		Labels:  spec.Labels,
	})
	if err != nil {
		return fmt.Errorf("creating docker network %s (%s): %w", spec.Name, spec.Subnet, err)
	}
	return nil
}

// RemoveNetwork removes the network if it exists and no container uses it.
func (d *Client) RemoveNetwork(ctx context.Context, name string) error {
	cur, err := d.c.NetworkInspect(ctx, name, network.InspectOptions{})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspecting docker network %s: %w", name, err)
	}
	if len(cur.Containers) > 0 {
		return fmt.Errorf("docker network %s still has %d containers; left in place", name, len(cur.Containers))
	}
	return d.c.NetworkRemove(ctx, cur.ID)
}

// Containers lists the running containers, each inspected (labels, env,
// networks, health). A container that vanishes between list and inspect is
// left out.
func (d *Client) Containers(ctx context.Context) ([]container.InspectResponse, error) {
	list, err := d.c.ContainerList(ctx, container.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	out := make([]container.InspectResponse, 0, len(list))
	for _, c := range list {
		r, err := d.c.ContainerInspect(ctx, c.ID)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("inspecting container %s: %w", c.ID[:12], err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Events streams container events until ctx ends or the stream fails.
func (d *Client) Events(ctx context.Context) (<-chan events.Message, <-chan error) {
	return d.c.Events(ctx, events.ListOptions{Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)))})
}
