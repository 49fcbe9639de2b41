package overlay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"
)

// ReachableWithin is how recent a handshake must be for a peer to count as
// reachable (WireGuard re-handshakes every 2 minutes while traffic or
// keepalives flow).
const ReachableWithin = 3 * time.Minute

// PeerStatus is one peer as `drover status` shows it.
type PeerStatus struct {
	Node          string    `json:"node"`
	PublicKey     string    `json:"public_key"`
	Endpoint      string    `json:"endpoint"`
	Subnet        string    `json:"subnet"`
	Health        string    `json:"consul_health"`
	LastHandshake time.Time `json:"last_handshake"`
	HandshakeAge  string    `json:"handshake_age"`
	RxBytes       int64     `json:"rx_bytes"`
	TxBytes       int64     `json:"tx_bytes"`
	Reachable     bool      `json:"reachable"`
	// FailingFor is how long, on this host's monotonic clock, the node has
	// been critical in Consul or its record absent ("" when it is not).
	FailingFor string `json:"failing_for,omitempty"`
}

// Status is the overlay's part of `drover status`.
type Status struct {
	Node        string        `json:"node"`
	PublicKey   string        `json:"public_key"`
	Subnet      string        `json:"subnet"`
	Interface   string        `json:"interface"`
	Endpoint    string        `json:"endpoint"`
	MTU         int           `json:"mtu"`
	Peers       []PeerStatus  `json:"peers"`
	Rejections  []Rejection   `json:"rejections"`
	LastError   string        `json:"last_error,omitempty"`
	LastApplied time.Time     `json:"last_applied"`
	LastPlan    string        `json:"last_plan"`
	Applies     int           `json:"applies"`
	Reconciles  int           `json:"reconciles"`
	LastSuccess time.Time     `json:"last_success"`
	LastPassDur time.Duration `json:"last_pass_duration_ns"`
	Host        HostState     `json:"host"`
	// RecordRepairs counts the times this host's drover-node record was
	// missing or changed on the local Consul agent and written back.
	RecordRepairs int `json:"record_repairs"`
}

// Status reports the overlay's state, joining what was desired with what
// the device says (handshakes, bytes).
func (c *Controller) Status() Status {
	c.mu.Lock()
	st := Status{Node: c.self.Name, PublicKey: c.self.PublicKey.String(), Subnet: c.self.Subnet.String(),
		Interface: c.opt.Interface, Endpoint: c.endpoint.String(), MTU: c.mtu,
		Rejections: append([]Rejection(nil), c.rejections...), LastApplied: c.lastApplied, LastPlan: c.lastPlan, Applies: c.applies,
		Reconciles: c.reconciles, LastSuccess: c.lastSuccess, LastPassDur: c.lastDuration, Host: c.host, RecordRepairs: c.recordRepairs}
	if c.lastErr != nil {
		st.LastError = c.lastErr.Error()
	}
	prev := c.prev
	failing := map[string]time.Duration{}
	for name, since := range c.failingSince {
		failing[name] = time.Since(since).Round(time.Second)
	}
	c.mu.Unlock()
	dev, err := c.wg.Device(c.opt.Interface)
	if err != nil && st.LastError == "" {
		st.LastError = fmt.Sprintf("reading %s: %v", c.opt.Interface, err)
	}
	now := time.Now()
	for key, p := range prev.Peers {
		ps := PeerStatus{Node: p.Name, PublicKey: key.String(), Endpoint: p.Endpoint.String(), Subnet: p.Subnet.String(), Health: p.Health}
		if d, ok := failing[p.Name]; ok {
			ps.FailingFor = d.String()
		}
		if dev != nil {
			for _, dp := range dev.Peers {
				if dp.PublicKey != key {
					continue
				}
				if dp.Endpoint != nil {
					ps.Endpoint = dp.Endpoint.String()
				}
				ps.LastHandshake, ps.RxBytes, ps.TxBytes = dp.LastHandshakeTime, dp.ReceiveBytes, dp.TransmitBytes
				if !dp.LastHandshakeTime.IsZero() {
					age := now.Sub(dp.LastHandshakeTime)
					ps.HandshakeAge = age.Round(time.Second).String()
					ps.Reachable = age < ReachableWithin
				}
			}
		}
		st.Peers = append(st.Peers, ps)
	}
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Node < st.Peers[j].Node })
	return st
}

// Leave takes this host out of the mesh for good: the record is withdrawn,
// the lease released (the explicit withdrawal: every other host removes its
// peer and route at once) and its local cache removed. The caller removes the interface afterwards.
func (c *Controller) Leave(ctx context.Context) error {
	c.annMu.Lock()
	defer c.annMu.Unlock()
	c.mu.Lock()
	self := c.self
	c.leaving = true
	c.mu.Unlock()
	var errs []error
	if err := c.ann.Withdraw(ctx); err != nil {
		errs = append(errs, err)
	}
	if self.Subnet.IsValid() {
		if err := Release(ctx, c.kv, self.Subnet, Lease{Node: self.Name, PublicKey: self.PublicKey.String()}); err != nil {
			errs = append(errs, err)
		}
	}
	if c.fw != nil {
		if err := c.fw.Remove(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(c.leaseFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	c.opt.Log.Info("left the mesh", "node", self.Name, "subnet", self.Subnet)
	return errors.Join(errs...)
}
