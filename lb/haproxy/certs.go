package haproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/drover-net/drover/internal/atomicfile"
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
