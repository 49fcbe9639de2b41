package haproxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Reload installs next and reloads HAProxy seamlessly: validate the exact
// bytes, save the health of servers that stay (server-state-file), swap
// atomically, `reload` on the master socket, then check `show proc` for a
// new worker and no new failed reload. If the reload fails, the
// last-known-good config is put back and reloaded, and the error is
// returned; the record is saved only on success. A config `haproxy -c`
// refuses is never installed, and the error wraps ErrInvalid.
func (h *HAProxy) Reload(ctx context.Context, next Config) error {
	if err := h.Validate(ctx, next.Bytes); err != nil {
		return fmt.Errorf("validating new config: %w", err)
	}
	if err := h.saveServerState(ctx, next.KeepState); err != nil {
		h.opt.Log.Warn("could not save server state; health restarts after this reload", "err", err)
	}
	before, err := h.Procs(ctx)
	if err != nil {
		return fmt.Errorf("reading haproxy processes before reload: %w", err)
	}
	if err := h.swap(next.Bytes); err != nil {
		return err
	}
	rerr := h.reloadAndCheck(ctx, before)
	if rerr == nil {
		return h.saveRecord(next.Record)
	}
	// Put the last-known-good config back and reload it.
	if lkg, err := os.ReadFile(h.lkgPath()); err == nil {
		if err := writeAtomic(h.opt.ConfigPath, lkg); err != nil {
			return fmt.Errorf("%w; restoring last-known-good config also failed: %v", rerr, err)
		}
		if cur, err := h.Procs(ctx); err == nil {
			if err := h.reloadAndCheck(ctx, cur); err != nil {
				return fmt.Errorf("%w; reloading the last-known-good config also failed: %v", rerr, err)
			}
		}
	}
	return fmt.Errorf("%w (last-known-good config restored)", rerr)
}

// reloadAndCheck sends `reload` to the master and waits up to 10 s for
// `show proc` to show a new worker (success) or a new failed reload
// (HAProxy refused the config).
func (h *HAProxy) reloadAndCheck(ctx context.Context, before Procs) error {
	h.resetRuntime()
	if _, err := h.master(ctx, "reload"); err != nil && !errors.Is(err, errClosed) {
		return fmt.Errorf("sending reload to the master socket: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(20 * time.Millisecond)
		p, err := h.Procs(ctx)
		if err == nil {
			if p.FailedReloads > before.FailedReloads {
				return fmt.Errorf("haproxy refused the new config (failed reloads %d → %d; see %s)", before.FailedReloads, p.FailedReloads, h.logPath())
			}
			if p.Reloads > before.Reloads && p.Worker != 0 && p.Worker != before.Worker {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no new haproxy worker within 10s of the reload (last show proc error: %v)", err)
		}
	}
}
