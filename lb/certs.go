package lb

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Cert is one certificate bundle the HTTPS frontends serve: the
// certificate chain (leaf first), then its private key, as one PEM file.
// HAProxy chooses it by SNI from the leaf's names.
type Cert struct {
	Name        string    // the bundle's name (its KV key or file name), safe as a file name
	Source      string    // where it came from: "kv" or "dir"
	Names       []string  // the leaf's DNS names
	NotAfter    time.Time // the leaf's expiry
	Fingerprint string    // SHA-256 of the leaf, hex: what identifies a version
	Bundle      []byte    `json:"-"` // the PEM bundle; never logged or shown
}

// CertProblem is a bundle that was refused, and why. The reason never holds
// key material.
type CertProblem struct {
	Name, Source, Reason string
}

func (p CertProblem) String() string {
	return fmt.Sprintf("certificate %s (%s) refused: %s", p.Name, p.Source, p.Reason)
}

// ParseBundle checks one PEM bundle and returns it as a Cert, or an error
// saying what is wrong: no certificate, no or more than one private key, a
// key that does not match the leaf, a leaf not valid at now, no DNS name,
// or anything that is not PEM. It is pure.
func ParseBundle(name, source string, b []byte, now time.Time) (Cert, error) {
	c := Cert{Name: name, Source: source}
	var certs []*x509.Certificate
	var keys []crypto.PrivateKey
	rest := bytes.TrimSpace(b)
	for len(rest) > 0 {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return c, errors.New("not a PEM bundle (want the certificate chain, then the private key)")
		}
		rest = bytes.TrimSpace(rest)
		switch blk.Type {
		case "CERTIFICATE":
			crt, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return c, fmt.Errorf("certificate %d does not parse: %v", len(certs)+1, err)
			}
			certs = append(certs, crt)
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			k, err := parseKey(blk)
			if err != nil {
				return c, fmt.Errorf("the private key does not parse (%s)", blk.Type)
			}
			keys = append(keys, k)
		default:
			return c, fmt.Errorf("unexpected PEM block %q", blk.Type)
		}
	}
	switch {
	case len(certs) == 0:
		return c, errors.New("no certificate in the bundle")
	case len(keys) == 0:
		return c, errors.New("no private key in the bundle (want the chain, then the key)")
	case len(keys) > 1:
		return c, errors.New("more than one private key in the bundle")
	}
	leaf := certs[0]
	if !keyMatches(keys[0], leaf.PublicKey) {
		return c, errors.New("the private key does not match the certificate (the first one in the bundle must be the leaf)")
	}
	if now.Before(leaf.NotBefore) {
		return c, fmt.Errorf("not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(leaf.NotAfter) {
		return c, fmt.Errorf("expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, n := range leaf.DNSNames {
		c.Names = append(c.Names, strings.ToLower(n))
	}
	if len(c.Names) == 0 {
		return c, errors.New("the certificate names no DNS host (subjectAltName)")
	}
	sort.Strings(c.Names)
	sum := sha256.Sum256(leaf.Raw)
	c.Fingerprint = hex.EncodeToString(sum[:])
	c.NotAfter = leaf.NotAfter
	c.Bundle = append([]byte(nil), b...)
	return c, nil
}

func parseKey(blk *pem.Block) (crypto.PrivateKey, error) {
	switch blk.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(blk.Bytes)
	default:
		return x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
}

func keyMatches(k crypto.PrivateKey, pub any) bool {
	type publicKeyer interface{ Public() crypto.PublicKey }
	p, ok := k.(publicKeyer)
	if !ok {
		return false
	}
	switch pk := p.Public().(type) {
	case *rsa.PublicKey:
		return pk.Equal(pub)
	case *ecdsa.PublicKey:
		return pk.Equal(pub)
	case ed25519.PublicKey:
		return pk.Equal(pub)
	}
	return false
}

// CertName turns a KV key's last part or a file name into a bundle name:
// [a-z0-9._-] only (others become "_"), at most 100 bytes, never "default"
// (the self-signed fallback's).
func CertName(s string) string {
	s = strings.TrimSuffix(strings.ToLower(s), ".pem")
	if s == "" {
		s = "_"
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	s = string(b)
	if len(s) > maxName {
		s = s[:maxName-9] + "_" + shortHash(s)
	}
	if s == "default" || strings.HasPrefix(s, ".") {
		s = "_" + s
	}
	return s
}

// CertPlan is what to do to the installed certificates.
type CertPlan struct {
	Add, Update []Cert   // new bundles; new versions of installed ones
	Remove      []string // names no source has any more
}

// Empty reports whether the plan does nothing.
func (p CertPlan) Empty() bool { return len(p.Add)+len(p.Update)+len(p.Remove) == 0 }

// PlanCerts compares the candidate bundles (name → PEM, by source; the
// directory wins a name both have) with the installed ones (name →
// fingerprint). A bundle that does not parse, does not match its key, or
// is not valid now is refused with a CertProblem, and an installed
// version of it stays (never replaced by a bad one, never removed because
// its new version is bad). It is pure.
func PlanCerts(installed map[string]string, kv, dir map[string][]byte, now time.Time) (CertPlan, []Cert, []CertProblem) {
	type cand struct {
		source string
		b      []byte
	}
	cands := map[string]cand{}
	for k, b := range kv {
		cands[CertName(k)] = cand{"kv", b}
	}
	for k, b := range dir {
		cands[CertName(k)] = cand{"dir", b}
	}
	names := make([]string, 0, len(cands))
	for n := range cands {
		names = append(names, n)
	}
	sort.Strings(names)
	var p CertPlan
	var good []Cert
	var probs []CertProblem
	for _, n := range names {
		c, err := ParseBundle(n, cands[n].source, cands[n].b, now)
		if err != nil {
			probs = append(probs, CertProblem{n, cands[n].source, err.Error() + keptNote(installed, n)})
			continue
		}
		good = append(good, c)
		fp, ok := installed[n]
		switch {
		case !ok:
			p.Add = append(p.Add, c)
		case fp != c.Fingerprint:
			p.Update = append(p.Update, c)
		}
	}
	for n := range installed {
		if _, ok := cands[n]; !ok {
			p.Remove = append(p.Remove, n)
		}
	}
	sort.Strings(p.Remove)
	return p, good, probs
}

func keptNote(installed map[string]string, n string) string {
	if _, ok := installed[n]; ok {
		return "; the installed version keeps serving"
	}
	return ""
}
