package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/drover-net/drover/internal/atomicfile"
)

// Config is one haproxy.cfg to install and what goes with it.
type Config struct {
	// Bytes is the config exactly as it is validated and installed.
	Bytes []byte
	// Record is the caller's description of what this config runs, saved
	// beside it (RecordPath) once it is installed and given back by
	// Record; nil saves nothing.
	Record []byte
	// KeepState filters HAProxy's `show servers state` dump down to the
	// lines still true under this config, for the server-state file
	// (nil keeps none).
	KeepState func(dump string) string
}

// ErrInvalid is wrapped by every error of a config `haproxy -c` refused;
// such a config is never installed.
var ErrInvalid = errors.New("haproxy -c rejected the config")

// Validate runs `haproxy -c` on cfg exactly as it would be installed. A
// refusal wraps ErrInvalid.
func (h *HAProxy) Validate(ctx context.Context, cfg []byte) error {
	f, err := os.CreateTemp(h.opt.Dir, checkPrefix+"*")
	if err != nil {
		return fmt.Errorf("staging config for validation: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(cfg); err != nil {
		f.Close()
		return fmt.Errorf("staging config for validation: %w", err)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, h.opt.Bin, "-c", "-q", "-f", f.Name()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %w: %s", ErrInvalid, err, bytes.TrimSpace(out))
	}
	return nil
}

// swap installs cfg as the config atomically (write, fsync, rename, fsync
// the directory), keeping the previous one as the last-known-good.
func (h *HAProxy) swap(cfg []byte) error {
	if cur, err := os.ReadFile(h.opt.ConfigPath); err == nil {
		if err := writeAtomic(h.lkgPath(), cur); err != nil {
			return fmt.Errorf("keeping last-known-good config: %w", err)
		}
	}
	if err := writeAtomic(h.opt.ConfigPath, cfg); err != nil {
		return fmt.Errorf("installing haproxy config: %w", err)
	}
	return nil
}

// writeAtomic replaces path with data (mode 0644: HAProxy may run as
// another user).
func writeAtomic(path string, data []byte) error { return atomicfile.Write(path, data, 0o644) }

// Record returns the record saved with the config last installed, and
// whether there is one.
func (h *HAProxy) Record() ([]byte, bool) {
	b, err := os.ReadFile(h.RecordPath())
	if err != nil {
		return nil, false
	}
	return b, true
}

func (h *HAProxy) saveRecord(rec []byte) error {
	if rec == nil {
		return nil
	}
	if err := writeAtomic(h.RecordPath(), rec); err != nil {
		return fmt.Errorf("saving running state: %w", err)
	}
	return nil
}

// Persist writes the files for c, the config runtime operations led to,
// so that the file always matches what runs and a restart or the next
// reload starts from it: the config (validated as installed, swapped
// atomically), the server-state file (`show servers state` kept only
// where c.KeepState agrees, so that a restarted HAProxy brings back no
// older address, port or admin state) and the record. It is safe to call
// concurrently with Apply, not with itself or Reload.
func (h *HAProxy) Persist(ctx context.Context, c Config) error {
	if err := h.Validate(ctx, c.Bytes); err != nil {
		// The runtime already runs it; the file keeps the previous valid
		// config and the next reload renders again.
		return fmt.Errorf("config for the runtime changes does not validate (not written): %w", err)
	}
	serr := h.saveServerState(ctx, c.KeepState)
	if err := h.swap(c.Bytes); err != nil {
		return err
	}
	if err := h.saveRecord(c.Record); err != nil {
		return err
	}
	if serr != nil {
		h.opt.Log.Warn("server state not saved; health restarts on the next HAProxy start", "err", serr)
	}
	return nil
}

// saveServerState writes the server-state file from the current worker's
// `show servers state`, keeping only the lines keep lets through. When
// the worker cannot be read, the file is emptied (its version line only):
// losing saved health is better than a start bringing back an older state.
func (h *HAProxy) saveServerState(ctx context.Context, keep func(string) string) error {
	state := "1\n"
	dump, derr := h.worker(ctx, "show servers state")
	if derr == nil && keep != nil {
		state = keep(dump)
	}
	if err := writeAtomic(h.stateFile(), []byte(state)); err != nil {
		return fmt.Errorf("saving server state: %w", err)
	}
	if derr != nil {
		return fmt.Errorf("reading server state (state file emptied): %w", derr)
	}
	return nil
}
