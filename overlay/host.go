package overlay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// HostState is the part of `drover status` about what drover keeps on the
// host outside the WireGuard device: the container network and the
// firewall rules, checked every few seconds and put back when someone else
// removed them (`nft flush ruleset`, a dockerd restart, `docker network
// rm`).
type HostState struct {
	Repairs    int       `json:"repairs"`               // repairs since start
	LastRepair string    `json:"last_repair,omitempty"` // what the last one put back
	RepairedAt time.Time `json:"repaired_at,omitempty"`
	LastError  string    `json:"last_error,omitempty"` // of the last check, empty when it held
	// Network is the container network's MTU state when it is not simply
	// drover0's: kept at an older MTU while containers are attached (TCP
	// MSS clamped meanwhile).
	Network string `json:"network,omitempty"`
}

// repairHost checks the container network and the firewall rules and puts
// back whatever drifted. It needs only the local Docker and kernel, never
// Consul, so it runs (and repairs) while Consul is away. The first check
// after Start counts nothing: Start has just written them.
func (c *Controller) repairHost(ctx context.Context) {
	c.mu.Lock()
	self, leaving, mtu, note := c.self, c.leaving, c.mtu, c.host.Network
	c.mu.Unlock()
	if leaving || !self.Subnet.IsValid() {
		return
	}
	var done []string
	var errs []error
	if c.bridge != nil {
		what, err := c.bridge.EnsureNetwork(ctx, self.Subnet, Gateway(self.Subnet), mtu)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("checking the container network: %w", err))
		case what == "adopted":
			note = ""
		case strings.HasPrefix(what, "kept at mtu"):
			// Containers keep their MTU until they leave; the MSS clamp
			// below makes their TCP fit the tunnel meanwhile.
			if what != note {
				c.opt.Log.Info("container network keeps its MTU while containers are attached; TCP MSS clamped to fit drover0", "network", what, "mss", mtu-40)
			}
			note = what
		case strings.HasPrefix(what, "recreated for mtu"):
			c.opt.Log.Info("container network follows drover0's MTU", "network", what)
			note = ""
		default:
			done = append(done, "container network "+what)
		}
	}
	c.mu.Lock()
	c.host.Network = note
	c.mu.Unlock()
	if c.fw != nil {
		fixed, err := c.fw.Ensure(ctx, self.Subnet, c.opt.ClusterCIDR, mtu)
		done = append(done, fixed...)
		if err != nil {
			errs = append(errs, fmt.Errorf("checking the firewall rules: %w", err))
		}
	}
	err := errors.Join(errs...)
	c.mu.Lock()
	prevErr := c.host.LastError
	c.host.LastError = ""
	if err != nil {
		c.host.LastError = err.Error()
	}
	if len(done) > 0 {
		c.host.Repairs++
		c.host.LastRepair = strings.Join(done, "; ")
		c.host.RepairedAt = time.Now()
	}
	c.mu.Unlock()
	if len(done) > 0 {
		c.opt.Log.Warn("host state repaired: something else had removed it", "repaired", strings.Join(done, "; "))
	}
	switch {
	case err != nil && err.Error() != prevErr:
		c.opt.Log.Warn("host state check failed", "err", err)
	case err == nil && prevErr != "":
		c.opt.Log.Info("host state check recovered")
	}
}

// Host returns the host-state part of the status.
func (c *Controller) Host() HostState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.host
}
