package lb

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

var certNow = time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)

// bundle makes a leaf for names signed by a fresh CA, valid from nb to na:
// leaf, CA, key PEM, and the key PEM alone.
func bundle(t testing.TB, names []string, nb, na time.Time, rsaKey bool) ([]byte, []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: nb, NotAfter: na.Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	leafT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: nb, NotAfter: na}
	var der, keyPEM []byte
	if rsaKey {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		der, err = x509.CreateCertificate(rand.Reader, leafT, ca, &k.PublicKey, caKey)
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	} else {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err = x509.CreateCertificate(rand.Reader, leafT, ca, &k.PublicKey, caKey)
		kb, _ := x509.MarshalPKCS8PrivateKey(k)
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	}
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	b.Write(keyPEM)
	return b.Bytes(), keyPEM
}

func TestParseBundle(t *testing.T) {
	day := 24 * time.Hour
	good, key := bundle(t, []string{"Secure.Example", "www.secure.example"}, certNow.Add(-day), certNow.Add(90*day), false)
	c, err := ParseBundle("secure", "kv", good, certNow)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Names, ",") != "secure.example,www.secure.example" || c.Fingerprint == "" || !c.NotAfter.Equal(certNow.Add(90*day)) {
		t.Errorf("cert %+v", c)
	}
	rsaGood, _ := bundle(t, []string{"r.example"}, certNow.Add(-day), certNow.Add(day), true)
	if _, err := ParseBundle("r", "dir", rsaGood, certNow); err != nil {
		t.Errorf("RSA PKCS#1 bundle: %v", err)
	}
	other, otherKey := bundle(t, []string{"secure.example"}, certNow.Add(-day), certNow.Add(day), false)
	wrongKey := append(bytes.TrimSuffix(good, key), otherKey...)
	expired, _ := bundle(t, []string{"old.example"}, certNow.Add(-90*day), certNow.Add(-day), false)
	future, _ := bundle(t, []string{"new.example"}, certNow.Add(day), certNow.Add(9*day), false)
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"wrong key":   {wrongKey, "does not match the certificate"},
		"expired":     {expired, "expired at"},
		"not yet":     {future, "not valid before"},
		"garbage":     {[]byte("hello"), "not a PEM bundle"},
		"no key":      {bytes.TrimSuffix(other, otherKey), "no private key"},
		"key only":    {key, "no certificate"},
		"two keys":    {append(append([]byte(nil), good...), key...), "more than one private key"},
		"broken cert": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), "does not parse"},
	} {
		_, err := ParseBundle(name, "kv", tc.b, certNow)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "PRIVATE") || strings.Contains(err.Error(), "MI")) {
			t.Errorf("%s: the error shows key material: %v", name, err)
		}
	}
}

func TestPlanCerts(t *testing.T) {
	day := 24 * time.Hour
	a, _ := bundle(t, []string{"a.example"}, certNow.Add(-day), certNow.Add(day), false)
	a2, _ := bundle(t, []string{"a.example"}, certNow.Add(-day), certNow.Add(day), false)
	b, _ := bundle(t, []string{"b.example"}, certNow.Add(-day), certNow.Add(day), false)
	ca, _ := ParseBundle("a", "kv", a, certNow)
	cb, _ := ParseBundle("b", "kv", b, certNow)
	installed := map[string]string{"a": ca.Fingerprint, "b": cb.Fingerprint, "gone": "x"}

	p, good, probs := PlanCerts(installed, map[string][]byte{"a": a, "b": []byte("garbage")}, map[string][]byte{"C.pem": a2}, certNow)
	if len(p.Add) != 1 || p.Add[0].Name != "c" || p.Add[0].Source != "dir" {
		t.Errorf("add %v, want c from the directory", p.Add)
	}
	if len(p.Update) != 0 {
		t.Errorf("update %v, want none (a unchanged)", p.Update)
	}
	if strings.Join(p.Remove, ",") != "gone" {
		t.Errorf("remove %v, want only gone: b's bad new version must not remove the old one", p.Remove)
	}
	if len(good) != 2 || len(probs) != 1 || probs[0].Name != "b" || !strings.Contains(probs[0].Reason, "installed version keeps serving") {
		t.Errorf("good %d, problems %v", len(good), probs)
	}
	p, _, _ = PlanCerts(installed, map[string][]byte{"a": a2, "b": b, "gone": nil}, nil, certNow)
	if len(p.Update) != 1 || p.Update[0].Name != "a" {
		t.Errorf("update %v, want a (a new version)", p.Update)
	}
}

func TestCertName(t *testing.T) {
	for in, want := range map[string]string{
		"secure-example": "secure-example", "Shop.Example.PEM": "shop.example", "../../etc/x": "_.._.._etc_x",
		"default": "_default", ".hidden": "_.hidden", "a b": "a_b",
	} {
		if got := CertName(in); got != want {
			t.Errorf("CertName(%q) = %q, want %q", in, got, want)
		}
	}
}
