package haproxy

import (
	"context"
	"fmt"
	"net"
	"strconv"

	cnruntime "github.com/haproxytech/client-native/v5/runtime"
	cnoptions "github.com/haproxytech/client-native/v5/runtime/options"
)

// OpKind is what a ServerOp does to a server line.
type OpKind string

// Server operations.
const (
	SetAddr      OpKind = "set-addr"      // set server addr: Addr is host:port
	SetWeight    OpKind = "set-weight"    // set server weight: Weight
	Enable       OpKind = "enable"        // set server state ready
	DrainDisable OpKind = "drain-disable" // set server state drain, then maint
)

// ServerOp is one runtime change to one server of a running backend.
type ServerOp struct {
	Kind    OpKind
	Backend string
	Server  string
	Addr    string // SetAddr: host:port
	Weight  int    // SetWeight
}

// String names the operation, as it appears in errors.
func (o ServerOp) String() string {
	switch o.Kind {
	case SetAddr:
		return fmt.Sprintf("set-addr %s/%s %s", o.Backend, o.Server, o.Addr)
	case SetWeight:
		return fmt.Sprintf("set-weight %s/%s %d", o.Backend, o.Server, o.Weight)
	default:
		return fmt.Sprintf("%s %s/%s", o.Kind, o.Backend, o.Server)
	}
}

// runtime returns the client-native runtime client over the master socket
// (to worker 1), connecting on first use.
func (h *HAProxy) runtime(ctx context.Context) (cnruntime.Runtime, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rt != nil {
		return h.rt, nil
	}
	rt, err := cnruntime.New(ctx, cnoptions.MasterSocket(h.opt.MasterSocket, 1))
	if err != nil {
		return nil, fmt.Errorf("connecting to haproxy runtime API at %s: %w", h.opt.MasterSocket, err)
	}
	h.rt = rt
	return rt, nil
}

// resetRuntime drops the runtime client: after a reload or an error the
// next use connects again (to the new worker).
func (h *HAProxy) resetRuntime() {
	h.mu.Lock()
	h.rt = nil
	h.mu.Unlock()
}

// Apply runs runtime operations through the runtime API and touches no
// file: Persist brings the files up to date afterwards. A drained server
// is first set to drain (no new connections) and then to maintenance;
// HAProxy lets the requests it is serving finish.
func (h *HAProxy) Apply(ctx context.Context, ops []ServerOp) error {
	rt, err := h.runtime(ctx)
	if err != nil {
		return err
	}
	for _, op := range ops {
		if err := applyOp(rt, op); err != nil {
			h.resetRuntime()
			return fmt.Errorf("runtime %s: %w", op, err)
		}
	}
	return nil
}

func applyOp(rt cnruntime.Runtime, op ServerOp) error {
	switch op.Kind {
	case SetAddr:
		host, port, err := net.SplitHostPort(op.Addr)
		if err != nil {
			return err
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return err
		}
		return rt.SetServerAddr(op.Backend, op.Server, host, p)
	case SetWeight:
		return rt.SetServerWeight(op.Backend, op.Server, strconv.Itoa(op.Weight))
	case Enable:
		return rt.SetServerState(op.Backend, op.Server, "ready")
	case DrainDisable:
		if err := rt.SetServerState(op.Backend, op.Server, "drain"); err != nil {
			return err
		}
		return rt.SetServerState(op.Backend, op.Server, "maint")
	default:
		return fmt.Errorf("unknown op kind %q", op.Kind)
	}
}
