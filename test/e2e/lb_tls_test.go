//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/internal/aclpolicy"
	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// testCA signs leaf certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "drover e2e CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf returns a bundle (leaf, CA, key) for host valid from nb to na, the
// key PEM alone, and the leaf's SHA-256 fingerprint as openssl prints it.
func (ca *testCA) leaf(t testing.TB, host string, nb, na time.Time) (bundle, key []byte, fp string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(k)
	key = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	b.Write(ca.pem)
	b.Write(key)
	sum := sha256.Sum256(der)
	var hexs []string
	for _, c := range sum {
		hexs = append(hexs, fmt.Sprintf("%02X", c))
	}
	return b.Bytes(), key, strings.Join(hexs, ":")
}

// TestLBTLS covers TLS termination (issue 14): certificates from Consul KV
// chosen by SNI with ALPN h2, HTTP redirected to HTTPS with HSTS, and a
// certificate rotation under keep-alive and new-connection HTTPS load
// with no failed request and no reload, bad bundles refused while the old
// certificate keeps serving.
func TestLBTLS(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvx", Hosts: 2, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	h1, err := sb.HostByName("h1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(sb.LBDir(h1), "haproxy.cfg"))
			t.Logf("h1 haproxy.cfg:\n%s", b)
			out, _ := sb.Output(context.Background(), "h1", "drover", "status")
			t.Logf("h1 drover status:\n%s", out)
			b, _ = os.ReadFile(filepath.Join(sb.LBDir(h1), "haproxy.log"))
			t.Logf("h1 haproxy.log:\n%s", b)
			logLBLines(t, h1)
		}
	})
	ca := newTestCA(t)
	caFile := filepath.Join(h1.Dir, "e2e-ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	putCert := func(name string, b []byte) {
		t.Helper()
		cmd, err := sb.Command(ctx, "h1", "consul", "kv", "put", aclpolicy.CertPrefix+name, "-")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = bytes.NewReader(b)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("consul kv put %s: %v %s", name, err, out)
		}
	}
	served := func(host string) string {
		out, _ := sb.Output(ctx, "h1", "sh", "-c", "openssl s_client -connect 127.0.0.1:443 -servername "+host+
			" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256")
		_, fp, _ := strings.Cut(strings.TrimSpace(out), "=")
		return fp
	}
	secure1, _, fp1 := ca.leaf(t, "secure.example", now.Add(-time.Hour), now.Add(24*time.Hour))
	other, _, fpOther := ca.leaf(t, "other.example", now.Add(-time.Hour), now.Add(24*time.Hour))
	putCert("secure-example", secure1)
	putCert("other-example", other)
	for _, s := range []struct{ name, host string }{{"secure", "secure.example"}, {"other", "other.example"}} {
		args := []string{"run", "-d", "--name", s.name, "--hostname", s.name, "--network", "drover",
			"-l", "drover.service=" + s.name, "-l", "drover.lb.mode=http", "-l", "drover.lb.host=" + s.host,
			"-l", "drover.lb.tls=true", "-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s"}
		if s.name == "secure" {
			args = append(args, "-l", "drover.lb.redirect=308", "-l", "drover.lb.hsts=8760h")
		}
		if out, err := sb.Docker(ctx, "h2", append(args, sandbox.DemoImage)...); err != nil {
			t.Fatalf("docker run %s: %v %s", s.name, err, out)
		}
	}

	t.Run("HTTPS by SNI from KV certificates, ALPN h2, redirect and HSTS", func(t *testing.T) {
		harness.Eventually(t, 60*time.Second, "https://secure.example answers with its certificate", func() error {
			out, err := sb.Output(ctx, "h1", "curl", "-sS", "-m", "3", "-D", "-", "--resolve", "secure.example:443:127.0.0.1",
				"--cacert", caFile, "https://secure.example/")
			if err != nil || !strings.Contains(out, "host=secure") {
				return fmt.Errorf("%v %s", err, out)
			}
			if !strings.Contains(strings.ToLower(out), "strict-transport-security: max-age=31536000") {
				return fmt.Errorf("no HSTS header:\n%s", out)
			}
			return nil
		})
		harness.Eventually(t, 60*time.Second, "https://other.example answers", func() error {
			out, err := sb.Output(ctx, "h1", "curl", "-sS", "-m", "3", "--resolve", "other.example:443:127.0.0.1",
				"--cacert", caFile, "https://other.example/")
			if err != nil || !strings.Contains(out, "host=other") {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
		if got := served("secure.example"); got != fp1 {
			t.Errorf("secure.example served %s, want %s", got, fp1)
		}
		if got := served("other.example"); got != fpOther {
			t.Errorf("other.example served %s, want its own %s (SNI)", got, fpOther)
		}
		out, _ := sb.Output(ctx, "h1", "sh", "-c", "openssl s_client -connect 127.0.0.1:443 -servername secure.example -alpn h2,http/1.1 </dev/null 2>&1")
		if !strings.Contains(out, "ALPN protocol: h2") {
			t.Errorf("ALPN h2 not negotiated:\n%s", out)
		}
		out, err := sb.Output(ctx, "h1", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", "Host: secure.example",
			"http://127.0.0.1:80/a?b=1")
		t.Logf("http://secure.example/a?b=1 → %s", out)
		if err != nil || out != "308 https://secure.example/a?b=1" {
			t.Errorf("want a 308 redirect to https, got %q (%v)", out, err)
		}
		out, err = sb.Output(ctx, "h1", "curl", "-sS", "-m", "3", "-H", "Host: other.example", "http://127.0.0.1:80/")
		if err != nil || !strings.Contains(out, "host=other") {
			t.Errorf("other.example (no redirect) over plain HTTP: %v %s", err, out)
		}
	})

	t.Run("rotation under HTTPS load: 0 failed, 0 reloads; bad bundles refused", func(t *testing.T) {
		before := lbState(ctx, t, sb).LB.Reloads
		run := func(extra ...string) func() loadResult {
			return startLoad(ctx, t, sb, "https://secure.example/", 40, 60*time.Second,
				append([]string{"-concurrency", "8", "-cacert", caFile, "-connect", "127.0.0.1:443"}, extra...)...)
		}
		keep, fresh := run(), run("-close")
		time.Sleep(5 * time.Second)
		secure2, key2, fp2 := ca.leaf(t, "secure.example", now.Add(-time.Hour), now.Add(24*time.Hour))
		put := time.Now()
		putCert("secure-example", secure2)
		harness.Eventually(t, 10*time.Second, "the new certificate served", func() error {
			if got := served("secure.example"); got != fp2 {
				return fmt.Errorf("served %s", got)
			}
			return nil
		})
		t.Logf("rotated certificate served %s after the KV write", time.Since(put).Round(10*time.Millisecond))

		_, otherKey, _ := ca.leaf(t, "x.example", now.Add(-time.Hour), now.Add(time.Hour))
		wrongKey := append(bytes.Clone(bytes.TrimSuffix(secure2, key2)), otherKey...)
		expired, _, _ := ca.leaf(t, "secure.example", now.Add(-48*time.Hour), now.Add(-time.Hour))
		for _, bad := range []struct {
			name   string
			bundle []byte
			reason string
		}{
			{"wrong key", wrongKey, "does not match the certificate"},
			{"expired", expired, "expired at"},
			{"garbage", []byte("not a certificate"), "not a PEM bundle"},
		} {
			putCert("secure-example", bad.bundle)
			harness.Eventually(t, 15*time.Second, bad.name+" refused", func() error {
				out, err := sb.Output(ctx, "h1", "drover", "status", "--json")
				var st struct {
					LB struct {
						TLS struct {
							Refused []string `json:"refused"`
						} `json:"tls"`
					} `json:"lb"`
				}
				if err != nil || json.Unmarshal([]byte(out), &st) != nil {
					return fmt.Errorf("status: %v", err)
				}
				for _, r := range st.LB.TLS.Refused {
					if strings.Contains(r, bad.reason) && strings.Contains(r, "keeps serving") {
						t.Logf("%s: %s", bad.name, r)
						return nil
					}
				}
				return fmt.Errorf("refused: %q", st.LB.TLS.Refused)
			})
			if got := served("secure.example"); got != fp2 {
				t.Errorf("after the %s bundle secure.example served %s, want the previous %s", bad.name, got, fp2)
			}
		}
		rk, rf := keep(), fresh()
		t.Logf("keep-alive: %s", rk.Line)
		t.Logf("new connections: %s", rf.Line)
		after := lbState(ctx, t, sb).LB.Reloads
		if rk.Failed != 0 || rf.Failed != 0 || rk.OK < 1000 || rf.OK < 1000 {
			t.Errorf("want 0 failed HTTPS requests during the rotation")
		}
		if after != before {
			t.Errorf("%d reloads during the rotation, want 0", after-before)
		}
	})

	t.Run("scale 1→3→1 and a rolling replace under HTTPS load: 0 failed, 0 reloads", func(t *testing.T) {
		before := lbState(ctx, t, sb).LB.Reloads
		wait := startLoad(ctx, t, sb, "https://secure.example/", 50, 45*time.Second,
			"-concurrency", "8", "-cacert", caFile, "-connect", "127.0.0.1:443")
		start := func(host, name string) {
			if o, err := sb.Docker(ctx, host, "run", "-d", "--name", name, "--hostname", name, "--network", "drover",
				"-l", "drover.service=secure", "-l", "drover.lb.mode=http", "-l", "drover.lb.host=secure.example",
				"-l", "drover.lb.tls=true", "-l", "drover.lb.redirect=308", "-l", "drover.lb.hsts=8760h",
				"-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s", sandbox.DemoImage); err != nil {
				t.Fatalf("docker run %s: %v %s", name, err, o)
			}
		}
		stop := func(host, name string) {
			if o, err := sb.Docker(ctx, host, "stop", "-t", "10", name); err != nil {
				t.Fatalf("docker stop %s: %v %s", name, err, o)
			}
			_, _ = sb.Docker(ctx, host, "rm", name)
		}
		time.Sleep(3 * time.Second)
		start("h2", "secure-2")
		start("h1", "secure-3")
		waitUp(ctx, t, sb, "secure", 3)
		stop("h2", "secure")
		start("h2", "secure-4")
		waitUp(ctx, t, sb, "secure", 3)
		stop("h2", "secure-2")
		stop("h1", "secure-3")
		waitUp(ctx, t, sb, "secure", 1)
		r := wait()
		after := lbState(ctx, t, sb).LB.Reloads
		t.Logf("HTTPS churn: %s; reloads %d", r.Line, after-before)
		if r.Failed != 0 || r.OK < 1500 {
			t.Errorf("want 0 failed HTTPS requests during the churn: %s", r.Line)
		}
		if after != before {
			t.Errorf("%d reloads during server-only churn, want 0", after-before)
		}
	})
}
