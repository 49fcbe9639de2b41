package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/drover-net/drover/internal/aclpolicy"
)

// The sandbox's Consul is secured as a production cluster is: gossip
// encryption, TLS on internal RPC with verification both ways and server
// host names checked, the HTTP API over HTTPS only (plain HTTP off), ACLs
// with default_policy "deny". Its secrets live in <Dir>/security (0700),
// made once per sandbox and kept by every later Up.

// ConsulHTTPS is the HTTPS API address of every Consul agent, inside its
// namespace (plain HTTP is disabled).
const ConsulHTTPS = "127.0.0.1:8501"

// ConsulURL is the base URL of a host's Consul HTTPS API, inside the host.
const ConsulURL = "https://" + ConsulHTTPS

func (s *Sandbox) secDir() string { return filepath.Join(s.opt.Dir, "security") }

// CAFile is the sandbox CA certificate that verifies every Consul agent.
func (s *Sandbox) CAFile() string { return filepath.Join(s.secDir(), "consul-agent-ca.pem") }

func (s *Sandbox) serverCert() (string, string) {
	return filepath.Join(s.secDir(), "sandbox-server-consul-0.pem"), filepath.Join(s.secDir(), "sandbox-server-consul-0-key.pem")
}

func (s *Sandbox) clientCert() (string, string) {
	return filepath.Join(s.secDir(), "sandbox-client-consul-0.pem"), filepath.Join(s.secDir(), "sandbox-client-consul-0-key.pem")
}

func (s *Sandbox) gossipKeyFile() string { return filepath.Join(s.secDir(), "gossip.key") }

// ManagementTokenFile holds the cluster's bootstrap (management) token: an
// operator's convenience in `drover sandbox exec`, never given to drover.
func (s *Sandbox) ManagementTokenFile() string { return filepath.Join(s.secDir(), "management.token") }

// ManagementToken returns the management token ("" before the first Up).
func (s *Sandbox) ManagementToken() string {
	b, _ := os.ReadFile(s.ManagementTokenFile())
	return strings.TrimSpace(string(b))
}

// GossipKey returns the gossip encryption key ("" before the first Up).
func (s *Sandbox) GossipKey() string {
	b, _ := os.ReadFile(s.gossipKeyFile())
	return strings.TrimSpace(string(b))
}

// DroverTokenFile is where host h's drover agent reads its ACL token (0600).
func (s *Sandbox) DroverTokenFile(h Host) string { return filepath.Join(h.Dir, "drover.token") }

// curlHome holds the .curlrc that makes curl inside a host verify the CA and
// send the management token.
func (s *Sandbox) curlHome() string { return filepath.Join(s.secDir(), "curl") }

// ensureSecrets makes the CA, certificates, gossip key and management token
// unless they exist.
func (s *Sandbox) ensureSecrets(ctx context.Context) error {
	dir := s.secDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	consul := func(args ...string) error {
		out, err := runIn(ctx, dir, s.bin("consul"), args...)
		if err != nil {
			return fmt.Errorf("consul %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if !fileExists(s.CAFile()) {
		if err := consul("tls", "ca", "create", "-days", "3650"); err != nil {
			return err
		}
	}
	if c, _ := s.serverCert(); !fileExists(c) {
		args := []string{"tls", "cert", "create", "-server", "-dc", "sandbox", "-days", "3650"}
		for i := 1; i <= 3; i++ {
			args = append(args, "-additional-ipaddress", s.Server(i).Addr.String())
		}
		if err := consul(args...); err != nil {
			return err
		}
	}
	if c, _ := s.clientCert(); !fileExists(c) {
		if err := consul("tls", "cert", "create", "-client", "-dc", "sandbox", "-days", "3650"); err != nil {
			return err
		}
	}
	if !fileExists(s.gossipKeyFile()) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return fmt.Errorf("making the gossip key: %w", err)
		}
		if err := os.WriteFile(s.gossipKeyFile(), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			return fmt.Errorf("writing the gossip key: %w", err)
		}
	}
	if !fileExists(s.ManagementTokenFile()) {
		if err := os.WriteFile(s.ManagementTokenFile(), []byte(randomUUID()+"\n"), 0o600); err != nil {
			return fmt.Errorf("writing the management token: %w", err)
		}
	}
	if err := os.MkdirAll(s.curlHome(), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", s.curlHome(), err)
	}
	rc := fmt.Sprintf("# made by the drover sandbox: curl inside a host talks to Consul's HTTPS API\ncacert = %q\nheader = \"X-Consul-Token: %s\"\n", s.CAFile(), s.ManagementToken())
	return os.WriteFile(filepath.Join(s.curlHome(), ".curlrc"), []byte(rc), 0o600)
}

// consulEnv is the environment that makes the consul CLI (and curl) talk to
// the local agent's HTTPS API as the operator (management token).
func (s *Sandbox) consulEnv() []string { return consulEnv(s.secDir()) }

func consulEnv(sec string) []string {
	return []string{
		"CONSUL_HTTP_ADDR=" + ConsulURL,
		"CONSUL_CACERT=" + filepath.Join(sec, "consul-agent-ca.pem"),
		"CONSUL_HTTP_TOKEN_FILE=" + filepath.Join(sec, "management.token"),
		"CURL_HOME=" + filepath.Join(sec, "curl"),
	}
}

// consulSecurityConfig is the HCL shared by servers and clients: gossip
// key, TLS, HTTPS only, ACLs; token is the agent's own ACL token.
func (s *Sandbox) consulSecurityConfig(node string, server bool, token string) string {
	cert, key := s.clientCert()
	if server {
		cert, key = s.serverCert()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "encrypt = %q\nencrypt_verify_incoming = true\nencrypt_verify_outgoing = true\n", s.GossipKey())
	fmt.Fprintf(&b, "tls {\n  defaults {\n    ca_file = %q\n    cert_file = %q\n    key_file = %q\n    verify_incoming = true\n    verify_outgoing = true\n  }\n", s.CAFile(), cert, key)
	b.WriteString("  internal_rpc {\n    verify_server_hostname = true\n  }\n")
	// The HTTPS API is verified by its clients (the CA); it asks them for
	// no certificate: ACL tokens authorise them.
	b.WriteString("  https {\n    verify_incoming = false\n  }\n}\n")
	b.WriteString("ports {\n  http = -1\n  https = 8501\n}\n")
	b.WriteString("acl {\n  enabled = true\n  default_policy = \"deny\"\n  enable_token_persistence = true\n  down_policy = \"extend-cache\"\n")
	if server {
		fmt.Fprintf(&b, "  tokens {\n    initial_management = %q\n    agent = %q\n  }\n", s.ManagementToken(), token)
	} else {
		fmt.Fprintf(&b, "  tokens {\n    agent = %q\n  }\n", token)
	}
	b.WriteString("}\n")
	return b.String()
}

// NodeID is the Consul node ID of node name: derived from the sandbox
// prefix and the name, so an agent whose data dir was wiped comes back
// with the same ID and Consul does not refuse its name as reserved by
// another ID.
func (s *Sandbox) NodeID(name string) string {
	return uuidOf("node-id/" + s.opt.Prefix + "/" + name)
}

// derived returns a UUID derived from the management token and what, so
// that every token of the sandbox is the same on every Up (idempotent) yet
// unknown without the management token.
func (s *Sandbox) derived(what string) string { return uuidOf(s.ManagementToken() + "/" + what) }

func uuidOf(seed string) string {
	h := sha256.Sum256([]byte(seed))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	x := hex.EncodeToString(h[:16])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return uuidOf(hex.EncodeToString(b))
}

// agentToken is host (or server) name's Consul agent token.
func (s *Sandbox) agentToken(name string) string { return s.derived("agent-secret/" + name) }

// DroverToken returns the secret of host h's drover token as the sandbox
// makes it (the test may replace the file).
func (s *Sandbox) DroverToken(h Host) string { return s.derived("drover-secret/" + h.Name) }

// serverCLI runs the consul CLI on server c1 as the operator.
func (s *Sandbox) serverCLI(ctx context.Context, args ...string) (string, error) {
	sv := s.Server(1)
	return runEnv(ctx, s.consulEnv(), "nsenter", append(nsArgs(sv.NetNS, ""), append([]string{s.bin("consul")}, args...)...)...)
}

// waitACL waits until the servers answer over HTTPS with the management
// token (a leader exists and the ACL system is bootstrapped).
func (s *Sandbox) waitACL(ctx context.Context) error {
	var last string
	err := poll(ctx, 60*time.Second, func() bool {
		out, err := s.serverCLI(ctx, "acl", "token", "read", "-self")
		last = out
		if err != nil {
			last = err.Error()
		}
		return err == nil
	})
	if err != nil {
		return fmt.Errorf("waiting for Consul's ACL system: %w (last: %s)", err, strings.TrimSpace(last))
	}
	return nil
}

// ensureTokens creates, unless they exist, every host's agent token (a node
// identity: node write on its own name, service read) and drover token
// (policy drover-<host> from drover's own generator, kept up to date), and
// writes each drover token to the host's 0600 token file.
func (s *Sandbox) ensureTokens(ctx context.Context) error {
	if err := s.waitACL(ctx); err != nil {
		return err
	}
	for _, h := range s.Hosts() {
		if err := s.ensureToken(ctx, "agent-"+h.Name, s.derived("agent-accessor/"+h.Name), s.agentToken(h.Name),
			"-node-identity", h.Name+":sandbox"); err != nil {
			return err
		}
		pol := "drover-" + h.Name
		if err := s.ensurePolicy(ctx, pol, aclpolicy.HCL(aclpolicy.Options{Node: h.Name, LB: s.opt.LB == h.Name})); err != nil {
			return err
		}
		if err := s.ensureToken(ctx, "drover-"+h.Name, s.DroverAccessor(h), s.DroverToken(h), "-policy-name", pol); err != nil {
			return err
		}
		if err := os.MkdirAll(h.Dir, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", h.Dir, err)
		}
		if !fileExists(s.DroverTokenFile(h)) {
			if err := os.WriteFile(s.DroverTokenFile(h), []byte(s.DroverToken(h)+"\n"), 0o600); err != nil {
				return fmt.Errorf("writing %s: %w", s.DroverTokenFile(h), err)
			}
		}
	}
	return nil
}

// GrantConfgen rewrites host h's drover policy to also read the confgen KV
// prefixes given (drover acl-policy --confgen-prefix).
func (s *Sandbox) GrantConfgen(ctx context.Context, h Host, prefixes ...string) error {
	return s.ensurePolicy(ctx, "drover-"+h.Name, aclpolicy.HCL(aclpolicy.Options{Node: h.Name, LB: s.opt.LB == h.Name, ConfgenPrefixes: prefixes}))
}

// DroverAccessor is the accessor ID of host h's drover token.
func (s *Sandbox) DroverAccessor(h Host) string { return s.derived("drover-accessor/" + h.Name) }

func (s *Sandbox) ensurePolicy(ctx context.Context, name, rules string) error {
	file := filepath.Join(s.secDir(), name+".hcl")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	out, err := s.serverCLI(ctx, "acl", "policy", "read", "-name", name, "-format", "json")
	if err != nil {
		if _, err := s.serverCLI(ctx, "acl", "policy", "create", "-name", name, "-rules", "@"+file); err != nil {
			return fmt.Errorf("creating ACL policy %s: %w", name, err)
		}
		return nil
	}
	var p struct{ ID, Rules string }
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		return fmt.Errorf("reading ACL policy %s: %w", name, err)
	}
	if strings.TrimSpace(p.Rules) == strings.TrimSpace(rules) {
		return nil
	}
	if _, err := s.serverCLI(ctx, "acl", "policy", "update", "-id", p.ID, "-rules", "@"+file); err != nil {
		return fmt.Errorf("updating ACL policy %s: %w", name, err)
	}
	return nil
}

func (s *Sandbox) ensureToken(ctx context.Context, desc, accessor, secret string, grant ...string) error {
	if _, err := s.serverCLI(ctx, "acl", "token", "read", "-id", accessor); err == nil {
		return nil
	}
	args := append([]string{"acl", "token", "create", "-description", desc, "-accessor", accessor, "-secret", secret}, grant...)
	if _, err := s.serverCLI(ctx, args...); err != nil {
		return fmt.Errorf("creating ACL token %s: %w", desc, err)
	}
	return nil
}

// RevokeDroverToken deletes host h's drover token in Consul (tests of a
// revoked token; the next Up makes it again).
func (s *Sandbox) RevokeDroverToken(ctx context.Context, h Host) error {
	if _, err := s.serverCLI(ctx, "acl", "token", "delete", "-id", s.DroverAccessor(h)); err != nil {
		return fmt.Errorf("revoking the drover token of %s: %w", h.Name, err)
	}
	return nil
}

// ConsulCLI runs the consul CLI on server c1 as the operator (management
// token, HTTPS verified with the sandbox CA) and returns its output.
func (s *Sandbox) ConsulCLI(ctx context.Context, args ...string) (string, error) {
	return s.serverCLI(ctx, args...)
}

// ConsulClient returns an HTTP client for host h's Consul HTTPS API (use
// ConsulURL): it dials inside the host, verifies the sandbox CA and, unless
// token is "-", sends token (empty: the management token).
func (s *Sandbox) ConsulClient(h Host, token string) (*http.Client, error) {
	pem, err := os.ReadFile(s.CAFile())
	if err != nil {
		return nil, fmt.Errorf("reading the sandbox CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("sandbox CA: no certificate")
	}
	if token == "" {
		token = s.ManagementToken()
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return DialNetns(ctx, h.NetNS, network, addr)
		},
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: tokenRT{tr, token}}, nil
}

type tokenRT struct {
	base  http.RoundTripper
	token string
}

func (t tokenRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.token != "-" {
		r = r.Clone(r.Context())
		r.Header.Set("X-Consul-Token", t.token)
	}
	return t.base.RoundTrip(r)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// runIn runs name in dir and returns its combined output.
func runIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runEnv runs name with env added to this process's environment and
// returns its standard output; a failure carries its standard error.
func runEnv(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(args[len(args)-min(len(args), 4):], " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// SpawnAgent starts host h's drover agent unless it runs, without waiting
// for it to join (tests of an agent that cannot join).
func (s *Sandbox) SpawnAgent(h Host, extra ...string) error { return s.ensureAgent(h, extra...) }

// RestartConsulWiped kills host h's Consul agent, wipes its data dir and
// starts it again: with its persisted node ID, or, when newID, with a fresh
// random one (what an agent without a configured node_id does). It does
// not wait.
func (s *Sandbox) RestartConsulWiped(h Host, newID bool) error {
	if pid := s.ProcessPID(h, ProcConsul); pid != 0 {
		if _, err := s.Kill(h.Name, ProcConsul); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(filepath.Join(h.Dir, "consul")); err != nil {
		return fmt.Errorf("wiping %s's consul data: %w", h.Name, err)
	}
	d, err := s.consulDaemon(h.Name, h.NetNS, h.MountNS, h.Addr.String(), h.Dir, h.Run, false)
	if err != nil {
		return err
	}
	if newID {
		cfg := filepath.Join(h.Dir, "consul.hcl")
		b, err := os.ReadFile(cfg)
		if err != nil {
			return err
		}
		b = []byte(strings.Replace(string(b), s.NodeID(h.Name), randomUUID(), 1))
		if err := os.WriteFile(cfg, b, 0o600); err != nil {
			return err
		}
	}
	return start(d)
}
