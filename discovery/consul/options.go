package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Options are the Consul client settings. Each empty field keeps what
// api.DefaultConfig() read from the environment (CONSUL_HTTP_ADDR,
// CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY,
// CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL); a set field wins.
type Options struct {
	// Addr is host:port, http://host:port, https://host:port or
	// unix:///path.
	Addr string
	// Token is a literal ACL token (from CONSUL_HTTP_TOKEN); TokenFile wins
	// when both are set.
	Token string
	// TokenFile holds the ACL token; it is read again whenever its size,
	// modification time or inode changes (checked at most once a second),
	// so a rotated token is used without a restart.
	TokenFile string
	// CAFile verifies the agent's HTTPS certificate.
	CAFile string
	// CertFile and KeyFile are a client certificate (verify_incoming on the
	// HTTPS API).
	CertFile, KeyFile string
	// TLSServerName is the name checked in the agent's certificate
	// (default: the host of Addr).
	TLSServerName string
}

// tokenSource gives the current ACL token: a literal one or the newest
// content of a file. It never puts the token into an error.
type tokenSource struct {
	literal string
	file    string

	mu      sync.Mutex
	checked time.Time
	stamp   string // size, mtime, inode of the last read
	token   string
	err     error
	changed chan struct{} // closed and replaced when the token changes
}

func newTokenSource(literal, file string) *tokenSource {
	ts := &tokenSource{literal: literal, file: file, changed: make(chan struct{})}
	ts.refresh(time.Now(), true)
	return ts
}

// Token returns the token to send (empty: none).
func (ts *tokenSource) Token() (string, error) {
	if ts.file == "" {
		return ts.literal, nil
	}
	ts.refresh(time.Now(), false)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.token, ts.err
}

// Changed returns a channel closed when the token next changes.
func (ts *tokenSource) Changed() <-chan struct{} {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.changed
}

// refresh re-reads the file when it changed; it stats it at most once a
// second unless force.
func (ts *tokenSource) refresh(now time.Time, force bool) {
	if ts.file == "" {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if !force && now.Sub(ts.checked) < time.Second {
		return
	}
	ts.checked = now
	fi, err := os.Stat(ts.file)
	if err != nil {
		ts.err = fmt.Errorf("consul token file: %w", err)
		return
	}
	stamp := fmt.Sprintf("%d/%d/%v", fi.Size(), fi.ModTime().UnixNano(), inode(fi))
	if stamp == ts.stamp && ts.err == nil {
		return
	}
	b, err := os.ReadFile(ts.file)
	if err != nil {
		ts.err = fmt.Errorf("consul token file: %w", err)
		return
	}
	ts.stamp, ts.err = stamp, nil
	if tok := strings.TrimSpace(string(b)); tok != ts.token {
		ts.token = tok
		close(ts.changed)
		ts.changed = make(chan struct{})
	}
}

// tokenTransport sets X-Consul-Token on every request from the token source,
// so that api.Config.Token stays empty and a new token needs no new client.
type tokenTransport struct {
	base http.RoundTripper
	ts   *tokenSource
}

func (t *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := t.ts.Token()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		r = r.Clone(r.Context())
		r.Header.Set("X-Consul-Token", tok)
	}
	return t.base.RoundTrip(r)
}

// config builds the SDK configuration of opt.
func (opt Options) config() (*api.Config, *tokenSource, error) {
	cfg := api.DefaultConfig()
	if opt.Addr != "" {
		cfg.Address = opt.Addr
		switch {
		case strings.HasPrefix(opt.Addr, "https://"):
			cfg.Scheme, cfg.Address = "https", strings.TrimPrefix(opt.Addr, "https://")
		case strings.HasPrefix(opt.Addr, "http://"):
			cfg.Scheme, cfg.Address = "http", strings.TrimPrefix(opt.Addr, "http://")
		}
	}
	if opt.CAFile != "" {
		cfg.TLSConfig.CAFile = opt.CAFile
		if !strings.HasPrefix(opt.Addr, "http://") && !strings.HasPrefix(cfg.Address, "unix://") {
			cfg.Scheme = "https"
		}
	}
	if opt.CertFile != "" {
		cfg.TLSConfig.CertFile = opt.CertFile
	}
	if opt.KeyFile != "" {
		cfg.TLSConfig.KeyFile = opt.KeyFile
	}
	if opt.TLSServerName != "" {
		cfg.TLSConfig.Address = opt.TLSServerName
	}
	if (cfg.TLSConfig.CertFile == "") != (cfg.TLSConfig.KeyFile == "") {
		return nil, nil, errors.New("consul client certificate and key must be given together")
	}
	// The token is never handed to the SDK: it would sit in its config and
	// in the environment it read; the transport sends it.
	literal, file := cfg.Token, cfg.TokenFile
	cfg.Token, cfg.TokenFile = "", ""
	if opt.Token != "" {
		literal = opt.Token
	}
	if opt.TokenFile != "" {
		file = opt.TokenFile
	}
	ts := newTokenSource(literal, file)
	if file != "" {
		if _, err := ts.Token(); err != nil {
			return nil, nil, err
		}
	}
	trans := api.DefaultConfig().Transport
	if sock, ok := strings.CutPrefix(cfg.Address, "unix://"); ok {
		// The SDK would replace our client for a unix:// address: dial the
		// socket here and give it a placeholder host.
		trans.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		cfg.Address, cfg.Scheme = "localhost", "http"
	}
	tr, err := api.NewHttpClient(trans, cfg.TLSConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("consul TLS settings: %w", err)
	}
	tr.Transport = &tokenTransport{base: tr.Transport, ts: ts}
	cfg.HttpClient = tr
	return cfg, ts, nil
}

// ACLError is a request Consul refused for its ACLs (HTTP 403: a token
// lacking a right, or one Consul does not know: "ACL not found"). Its
// message names the operation and Consul's reason (which names the missing
// right and the token's accessor ID, never its secret).
type ACLError struct {
	Op     string // what drover was doing, e.g. "writing KV drover/v1/leases/10.42.1.0-24"
	Reason string // Consul's answer
}

func (e *ACLError) Error() string {
	return fmt.Sprintf("%s: refused by Consul ACLs (%s)", e.Op, e.Reason)
}

// ACLDenied marks the error for callers that must not import this package
// (errors.As with interface{ ACLDenied() bool }).
func (e *ACLError) ACLDenied() bool { return true }

// IsACLDenied reports whether err is, or wraps, a refusal by Consul's ACLs.
func IsACLDenied(err error) bool {
	var d interface{ ACLDenied() bool }
	return errors.As(err, &d) && d.ACLDenied()
}

// wrap returns err with the operation it belongs to; 403s become *ACLError.
func wrap(err error, op string) error {
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusForbidden {
		return &ACLError{Op: op, Reason: strings.TrimSpace(se.Body)}
	}
	if err != nil && strings.Contains(err.Error(), "403") && (strings.Contains(err.Error(), "Permission denied") || strings.Contains(err.Error(), "ACL not found")) {
		return &ACLError{Op: op, Reason: strings.TrimSpace(err.Error())}
	}
	return fmt.Errorf("%s: %w", op, err)
}
