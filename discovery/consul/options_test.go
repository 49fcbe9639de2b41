package consul

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeConsul answers KV lists: 200 for token "good", 403 otherwise.
func fakeConsul(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Consul-Token"))
		mu.Unlock()
		if r.Header.Get("X-Consul-Token") != "good" {
			http.Error(w, "Permission denied: token with AccessorID 'a1' lacks permission 'key:list' on \"drover/v1/\"", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Consul-Index", "7")
		w.Header().Set("X-Consul-LastContact", "0")
		w.Header().Set("X-Consul-KnownLeader", "true") // as a server with a leader says
		_, _ = w.Write([]byte("[]"))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

func TestTokenFileIsReadAgainWhenItChanges(t *testing.T) {
	for _, k := range []string{"CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE"} {
		t.Setenv(k, "")
	}
	srv, seen := fakeConsul(t)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("bad-secret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Addr: srv.URL, TokenFile: file})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _, err = c.KVList(ctx, "drover/v1/", 0)
	if !IsACLDenied(err) {
		t.Fatalf("want an ACL error, got %v", err)
	}
	if strings.Contains(err.Error(), "bad-secret-1") || !strings.Contains(err.Error(), "key:list") || !strings.Contains(err.Error(), "listing KV drover/v1/") {
		t.Fatalf("error must name the operation and right, never the token: %v", err)
	}
	changed := c.TokenChanged()
	if err := os.WriteFile(file, []byte("good\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, _, err = c.KVList(ctx, "drover/v1/", 0); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new token was never used: %v (sent %q)", err, seen())
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-changed:
	default:
		t.Errorf("TokenChanged was not closed by the new token")
	}
}

func TestLiteralTokenAndNoToken(t *testing.T) {
	t.Setenv("CONSUL_HTTP_TOKEN", "from-env-ignored")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")
	srv, seen := fakeConsul(t)
	c, err := New(Options{Addr: srv.URL, Token: "good"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.KVList(context.Background(), "x/", 0); err != nil {
		t.Fatalf("literal token: %v (sent %q)", err, seen())
	}
}

func TestClientCertNeedsKey(t *testing.T) {
	if _, err := New(Options{Addr: "https://127.0.0.1:8501", CertFile: "/x.pem"}); err == nil {
		t.Fatal("a client certificate without its key was accepted")
	}
}

func TestUnixSocketAddressKeepsTheTokenTransport(t *testing.T) {
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")
	sock := filepath.Join(t.TempDir(), "consul.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Consul-Token") != "good" {
			http.Error(w, "ACL not found", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Consul-LastContact", "0")
		w.Header().Set("X-Consul-KnownLeader", "true")
		_, _ = w.Write([]byte("[]"))
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	c, err := New(Options{Addr: "unix://" + sock, Token: "good"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.KVList(context.Background(), "x/", 0); err != nil {
		t.Fatalf("over the unix socket: %v", err)
	}
}

// An empty answer from a server without a leader is not trusted (issue 12,
// T9): it would read as every instance or lease gone.
func TestEmptyLeaderlessAnswerIsAnError(t *testing.T) {
	leader, backend := "false", "blocking-query"
	body := "[]"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Consul-Index", "9")
		w.Header().Set("X-Consul-LastContact", "0")
		w.Header().Set("X-Consul-KnownLeader", leader)
		w.Header().Set("X-Consul-Query-Backend", backend)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	c, err := New(Options{Addr: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := c.HealthService(ctx, "web", 0); !errors.Is(err, ErrLeaderless) {
		t.Errorf("empty answer without a leader: %v, want ErrLeaderless", err)
	}
	if _, _, err := c.KVList(ctx, "drover/v1/leases/", 0); !errors.Is(err, ErrLeaderless) {
		t.Errorf("empty KV answer without a leader: %v, want ErrLeaderless", err)
	}
	body = `[{"Node":{"Node":"h1"},"Service":{"ID":"w1","Service":"web"},"Checks":[]}]`
	if es, _, err := c.HealthService(ctx, "web", 0); err != nil || len(es) != 1 {
		t.Errorf("a non-empty answer without a leader: %v %v, want it used (stale reads keep serving)", es, err)
	}
	leader, body = "true", "[]"
	if es, _, err := c.HealthService(ctx, "web", 0); err != nil || len(es) != 0 {
		t.Errorf("an empty answer with a leader: %v %v, want it used", es, err)
	}
	leader, backend = "false", "streaming"
	if es, _, err := c.HealthService(ctx, "web", 0); err != nil || len(es) != 0 {
		t.Errorf("an empty streaming answer (which always says no leader): %v %v, want it used", es, err)
	}
}
