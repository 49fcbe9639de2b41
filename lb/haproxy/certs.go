package haproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/haproxytech/client-native/v5/models"
	cnruntime "github.com/haproxytech/client-native/v5/runtime"

	"github.com/drover-net/drover/internal/atomicfile"
	"github.com/drover-net/drover/lb"
)

// certDir holds the HTTPS frontends' certificates (0700, files 0600) and
// their crt-list.
func (h *HAProxy) certDir() string    { return filepath.Join(h.opt.Dir, "certs") }
func (h *HAProxy) certList() string   { return filepath.Join(h.certDir(), "crt-list") }
func (h *HAProxy) defaultPEM() string { return filepath.Join(h.certDir(), "default.pem") }

// ensureCerts makes the certificate directory and, when missing, a
// self-signed default certificate and a crt-list naming it: an HTTPS
// frontend needs one certificate to start, and a client that sends no
// known name gets this one (and a name mismatch) rather than another
// service's.
func (h *HAProxy) ensureCerts() error {
	if err := os.MkdirAll(h.certDir(), 0o700); err != nil {
		return fmt.Errorf("making %s: %w", h.certDir(), err)
	}
	if _, err := os.Stat(h.defaultPEM()); err != nil {
		b, err := selfSignedBundle("drover-default.invalid", time.Now())
		if err != nil {
			return fmt.Errorf("making the default certificate: %w", err)
		}
		if err := atomicfile.Write(h.defaultPEM(), b, 0o600); err != nil {
			return err
		}
	}
	if _, err := os.Stat(h.certList()); err != nil {
		if err := atomicfile.Write(h.certList(), []byte(h.defaultPEM()+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// selfSignedBundle is a PEM bundle (certificate, then PKCS#8 key) for name,
// valid ten years from now.
func selfSignedBundle(name string, now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...), nil
}

// certPath is the file of bundle name.
func (h *HAProxy) certPath(name string) string { return filepath.Join(h.certDir(), name+".pem") }

// InstalledCerts returns the bundles in the certificate directory (name →
// SHA-256 of the leaf, hex), the self-signed default left out.
func (h *HAProxy) InstalledCerts() (map[string]string, error) {
	ents, err := os.ReadDir(h.certDir())
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", h.certDir(), err)
	}
	out := map[string]string{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".pem")
		if !ok || name == "default" || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(h.certDir(), e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading certificate %s: %w", name, err)
		}
		out[name] = leafFingerprint(b)
	}
	return out, nil
}

// leafFingerprint is the hex SHA-256 of the first certificate in b, "" if
// there is none.
func leafFingerprint(b []byte) string {
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return ""
		}
		if blk.Type == "CERTIFICATE" {
			sum := sha256.Sum256(blk.Bytes)
			return hex.EncodeToString(sum[:])
		}
	}
}

// ApplyCerts installs new and changed bundles and removes others, without
// a reload: each file is written first (0600, atomically; the crt-list
// too), so that a restart or the next reload serves it, then the running
// HAProxy is told through the runtime API (new ssl cert / set ssl cert /
// commit ssl cert, add/del ssl crt-list). When no HTTPS frontend runs yet
// (the crt-list is not loaded), the files are all there is to do: the
// reload that adds the frontend reads them.
func (h *HAProxy) ApplyCerts(ctx context.Context, add, update []lb.Cert, remove []string) error {
	var errs []error
	for _, c := range append(append([]lb.Cert(nil), add...), update...) {
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
			if err := rt.NewCertEntry(p); err != nil && !strings.Contains(err.Error(), "already exists") {
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
			if err := rt.DeleteCrtListEntry(h.certList(), p, nil); err != nil && !strings.Contains(err.Error(), "not found") {
				errs = append(errs, fmt.Errorf("del ssl crt-list %s: %w", n, err))
			}
			if err := rt.DeleteCertEntry(p); err != nil && !strings.Contains(err.Error(), "not found") {
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

// writeCertList writes the crt-list: the default certificate first (for
// clients that send no known name), then every bundle in the directory.
func (h *HAProxy) writeCertList() error {
	ents, err := os.ReadDir(h.certDir())
	if err != nil {
		return fmt.Errorf("listing %s: %w", h.certDir(), err)
	}
	lines := []string{h.defaultPEM()}
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".pem"); ok && name != "default" && !e.IsDir() {
			lines = append(lines, h.certPath(name))
		}
	}
	sort.Strings(lines[1:])
	return atomicfile.Write(h.certList(), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
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
