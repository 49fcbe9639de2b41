package lb

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"math/big"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/drover-net/drover/discovery"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from Render")

// goldenCases lists the cases in testdata: <case>.input holds the services
// map as JSON, <case>.golden the rendered haproxy.cfg.
func goldenCases(t *testing.T) []string {
	t.Helper()
	ins, err := filepath.Glob("testdata/*.input")
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) == 0 {
		t.Fatal("no testdata/*.input")
	}
	var cases []string
	for _, in := range ins {
		cases = append(cases, strings.TrimSuffix(filepath.Base(in), ".input"))
	}
	return cases
}

func TestRenderGolden(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", c+".input"))
			if err != nil {
				t.Fatal(err)
			}
			var services map[string][]discovery.Instance
			if err := json.Unmarshal(raw, &services); err != nil {
				t.Fatalf("parsing %s.input: %v", c, err)
			}
			// <case>.options, when present, holds the Options as JSON.
			var opt Options
			if raw, err := os.ReadFile(filepath.Join("testdata", c+".options")); err == nil {
				if err := json.Unmarshal(raw, &opt); err != nil {
					t.Fatalf("parsing %s.options: %v", c, err)
				}
			}
			st, probs := Desired(opt, services)
			for _, p := range probs {
				t.Logf("problem: %s", p)
			}
			got := Render(st, DefaultGlobals)
			if again := Render(st, DefaultGlobals); !bytes.Equal(got, again) {
				t.Fatal("two renders of one state differ")
			}
			st2, _ := Desired(opt, services)
			if again := Render(st2, DefaultGlobals); !bytes.Equal(got, again) {
				t.Fatal("renders of two Desired calls differ")
			}
			golden := filepath.Join("testdata", c+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./lb/ -run TestRenderGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Render (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRenderHAProxyCheck validates every golden file with haproxy -c. The
// socket and state-file paths are moved into a temporary directory, since
// /run/drover may not exist here.
func TestRenderHAProxyCheck(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not on PATH")
	}
	for _, c := range goldenCases(t) {
		t.Run(c, func(t *testing.T) {
			cfg, err := os.ReadFile(filepath.Join("testdata", c+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			s := string(cfg)
			for _, p := range []string{DefaultGlobals.StatsSocket, DefaultGlobals.StateFile} {
				if !strings.Contains(s, p) {
					t.Fatalf("golden does not contain %s", p)
				}
				s = strings.ReplaceAll(s, p, filepath.Join(dir, filepath.Base(p)))
			}
			if strings.Contains(s, DefaultGlobals.CertList) {
				// A crt-list with one self-signed certificate stands in
				// for the adapter's.
				list := filepath.Join(dir, "crt-list")
				pem := filepath.Join(dir, "default.pem")
				if err := os.WriteFile(pem, selfSigned(t, "default.invalid"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(list, []byte(pem+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				s = strings.ReplaceAll(s, DefaultGlobals.CertList, list)
			}
			// drover keeps the state file; one with only a version line stands in.
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(DefaultGlobals.StateFile)), []byte("1\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "-c", "-f", f).CombinedOutput()
			if err != nil {
				t.Fatalf("haproxy -c: %v\n%s", err, out)
			}
			if bytes.Contains(out, []byte("[WARNING]")) {
				t.Errorf("haproxy -c warns:\n%s", out)
			}
		})
	}
}

// TestRenderWorkerUser checks the workers' user and group lines and that
// HAProxy takes them (the user exists where HAProxy is installed).
func TestRenderWorkerUser(t *testing.T) {
	dir := t.TempDir()
	g := Globals{StatsSocket: filepath.Join(dir, "s.sock"), StateFile: filepath.Join(dir, "state"), User: "haproxy", Group: "haproxy"}
	cfg := Render(State{}, g)
	for _, want := range []string{"\n    user haproxy\n", "\n    group haproxy\n"} {
		if !bytes.Contains(cfg, []byte(want)) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if bytes.Contains(Render(State{}, DefaultGlobals), []byte("    user ")) {
		t.Error("a user line without Globals.User")
	}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not on PATH")
	}
	if _, err := user.Lookup("haproxy"); err != nil {
		t.Skip("no haproxy user here")
	}
	os.WriteFile(g.StateFile, []byte("1\n"), 0o600)
	f := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(f, cfg, 0o600)
	if out, err := exec.Command(bin, "-c", "-f", f).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// selfSigned returns a PEM bundle (certificate, then key) for name.
func selfSigned(t testing.TB, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...)
}

// TestRenderAccessLog checks the log lines and that HAProxy takes them.
func TestRenderAccessLog(t *testing.T) {
	dir := t.TempDir()
	g := Globals{StatsSocket: filepath.Join(dir, "s.sock"), StateFile: filepath.Join(dir, "state"), LogAddr: "127.0.0.1:9715"}
	st := State{
		Frontends: []Frontend{{Name: "http_80", Mode: "http", Port: 18080, Routes: []Route{{Backend: "web"}}},
			{Name: "tcp_5432", Mode: "tcp", Port: 15432, DefaultBackend: "pg"}},
		Backends: []Backend{{Name: "web", Mode: "http", Balance: "roundrobin", Slots: 1}, {Name: "pg", Mode: "tcp", Balance: "roundrobin", Slots: 1}},
	}
	cfg := string(Render(st, g))
	for _, want := range []string{"    log 127.0.0.1:9715 len 4096 format raw local0 info\n", "    log global\n",
		"    log-format \"" + AccessLogHTTP + "\"\n", "    log-format \"" + AccessLogTCP + "\"\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not on PATH")
	}
	os.WriteFile(g.StateFile, []byte("1\n"), 0o600)
	f := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(f, []byte(cfg), 0o600)
	out, err := exec.Command(bin, "-c", "-f", f).CombinedOutput()
	if err != nil || strings.Contains(string(out), "WARNING") {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

func TestMaxReloadsFor(t *testing.T) {
	for _, c := range []struct {
		hardStop, interval time.Duration
		want               int
	}{
		{15 * time.Minute, 2 * time.Second, 451}, // the defaults
		{15 * time.Minute, time.Second, 901},
		{time.Hour, time.Second, 1000}, // capped
		{30 * time.Second, 2 * time.Second, 50},
		{0, 0, 451},
	} {
		if got := MaxReloadsFor(c.hardStop, c.interval); got != c.want {
			t.Errorf("MaxReloadsFor(%s, %s) = %d, want %d", c.hardStop, c.interval, got, c.want)
		}
	}
}
