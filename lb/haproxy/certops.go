package haproxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/haproxytech/client-native/v5/models"
	cnruntime "github.com/haproxytech/client-native/v5/runtime"

	"github.com/drover-net/drover/internal/atomicfile"
)

// Runtime API answers ApplyCerts tolerates.
var (
	errCertExists   = errors.New("certificate already exists")
	errCertNotFound = errors.New("certificate not found")
)

// cliError types an error of client-native's certificate and crt-list
// calls. client-native wraps HAProxy's answer as text (its ErrGeneral,
// or its ErrNotFound whose text is the same "not found"), so this is the
// one place that reads the text: "already exists" becomes errCertExists
// and "not found" errCertNotFound, both wrapping err.
func cliError(err error) error {
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), "already exists"):
		return fmt.Errorf("%w: %w", errCertExists, err)
	case strings.Contains(err.Error(), "not found"):
		return fmt.Errorf("%w: %w", errCertNotFound, err)
	}
	return err
}

// ApplyCerts installs new and changed bundles and removes others, without
// a reload: each file is written first (0600, atomically; the crt-list
// too), so that a restart or the next reload serves it, then the running
// HAProxy is told through the runtime API (new ssl cert / set ssl cert /
// commit ssl cert, add/del ssl crt-list). When no HTTPS frontend runs yet
// (the crt-list is not loaded), the files are all there is to do: the
// reload that adds the frontend reads them.
func (h *HAProxy) ApplyCerts(ctx context.Context, add, update []CertFile, remove []string) error {
	var errs []error
	for _, c := range append(append([]CertFile(nil), add...), update...) {
		if err := atomicfile.Write(h.certPath(c.Name), c.Bundle, 0o600); err != nil {
			return fmt.Errorf("writing certificate %s: %w", c.Name, err)
		}
	}
	if err := h.writeCertList(); err != nil {
		return err
	}
	live, err := h.crtListLoaded(ctx)
	if err != nil {
		return err
	}
	if live {
		rt, err := h.runtime(ctx)
		if err != nil {
			return err
		}
		for _, c := range add {
			p := h.certPath(c.Name)
			if err := cliError(rt.NewCertEntry(p)); err != nil && !errors.Is(err, errCertExists) {
				errs = append(errs, fmt.Errorf("new ssl cert %s: %w", c.Name, err))
				continue
			}
			if err := setCert(rt, p, c.Bundle); err != nil {
				errs = append(errs, fmt.Errorf("certificate %s: %w", c.Name, err))
				continue
			}
			if err := rt.AddCrtListEntry(h.certList(), models.SslCrtListEntry{File: p}); err != nil {
				errs = append(errs, fmt.Errorf("add ssl crt-list %s: %w", c.Name, err))
			}
		}
		for _, c := range update {
			if err := setCert(rt, h.certPath(c.Name), c.Bundle); err != nil {
				errs = append(errs, fmt.Errorf("certificate %s: %w", c.Name, err))
			}
		}
		for _, n := range remove {
			p := h.certPath(n)
			if err := cliError(rt.DeleteCrtListEntry(h.certList(), p, nil)); err != nil && !errors.Is(err, errCertNotFound) {
				errs = append(errs, fmt.Errorf("del ssl crt-list %s: %w", n, err))
			}
			if err := cliError(rt.DeleteCertEntry(p)); err != nil && !errors.Is(err, errCertNotFound) {
				errs = append(errs, fmt.Errorf("del ssl cert %s: %w", n, err))
			}
		}
	}
	for _, n := range remove {
		if err := os.Remove(h.certPath(n)); err != nil && !os.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("removing certificate %s: %w", n, err))
		}
	}
	if err := h.writeCertList(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		h.resetRuntime()
	}
	return errors.Join(errs...)
}

// setCert replaces a certificate's content in the running HAProxy and
// commits it; an aborted transaction leaves the old one serving.
func setCert(rt cnruntime.Runtime, path string, bundle []byte) error {
	if err := rt.SetCertEntry(path, string(bundle)); err != nil {
		_ = rt.AbortCertEntry(path)
		return fmt.Errorf("set ssl cert: %w", err)
	}
	if err := rt.CommitCertEntry(path); err != nil {
		_ = rt.AbortCertEntry(path)
		return fmt.Errorf("commit ssl cert: %w", err)
	}
	return nil
}

// crtListLoaded reports whether the running HAProxy has the crt-list (an
// HTTPS frontend runs); false when HAProxy is not running.
func (h *HAProxy) crtListLoaded(ctx context.Context) (bool, error) {
	out, err := h.worker(ctx, "show ssl crt-list")
	if err != nil {
		return false, nil // not running: the files are what the start reads
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == h.certList() {
			return true, nil
		}
	}
	return false, nil
}
