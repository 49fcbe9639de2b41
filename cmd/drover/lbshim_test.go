package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/drover-net/drover/lb"
	"github.com/drover-net/drover/lb/haproxy"
)

// The adapter's validation refusal reaches lb as lb.ErrInvalidConfig with
// its text unchanged; other errors pass as they are.
func TestLBError(t *testing.T) {
	refused := fmt.Errorf("validating new config: %w: exit status 1: [ALERT] bad", haproxy.ErrInvalid)
	got := lbError(refused)
	if !errors.Is(got, lb.ErrInvalidConfig) || !errors.Is(got, haproxy.ErrInvalid) || got.Error() != refused.Error() {
		t.Errorf("lbError(%v) = %v: want lb.ErrInvalidConfig and haproxy.ErrInvalid, same text", refused, got)
	}
	other := errors.New("haproxy refused the new config (failed reloads 0 → 1)")
	if got := lbError(other); got != other {
		t.Errorf("lbError(%v) = %v, want it unchanged", other, got)
	}
	if lbError(nil) != nil {
		t.Error("lbError(nil) != nil")
	}
}
