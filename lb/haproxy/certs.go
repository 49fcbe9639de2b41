package haproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/drover-net/drover/internal/atomicfile"
)

// CertFile is one certificate bundle to install: its name (a file name
// without ".pem") and its PEM bundle (chain, then key).
type CertFile struct {
	Name   string
	Bundle []byte
}

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
