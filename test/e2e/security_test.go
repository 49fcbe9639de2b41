//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/internal/aclpolicy"
	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// secStatus is the part of `drover status --json` these tests read.
type secStatus struct {
	JoinError string `json:"join_error"`
	Overlay   struct {
		Subnet    string `json:"subnet"`
		LastError string `json:"last_error"`
	} `json:"overlay"`
	Discovery struct {
		LastError     string   `json:"last_error"`
		Registrations []string `json:"registrations"`
	} `json:"discovery"`
	Consul struct {
		Error string `json:"error"`
	} `json:"consul"`
}

func (s secStatus) errors() string {
	return strings.TrimSpace(strings.Join([]string{s.JoinError, s.Overlay.LastError, s.Discovery.LastError, s.Consul.Error}, " "))
}

func secState(ctx context.Context, sb *sandbox.Sandbox, host string) (secStatus, string, error) {
	out, err := sb.Output(ctx, host, "drover", "status", "--json")
	if err != nil {
		return secStatus{}, out, err
	}
	var st secStatus
	err = json.Unmarshal([]byte(out), &st)
	return st, out, err
}

// TestConsulSecured checks that the sandbox's Consul is a production one
// (ACLs deny, HTTPS only with verification, gossip encrypted) and that
// drover copes with tokens lacking rights, revoked and rotated, and never
// shows its token.
func TestConsulSecured(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvs", Hosts: 3, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	h1, h2, h3 := sb.Host(1), sb.Host(2), sb.Host(3)
	for _, h := range []string{"h1", "h2"} {
		if err := sb.Start(ctx, h, sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("anonymous write refused", func(t *testing.T) {
		c, err := sb.ConsulClient(h1, "-")
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, sandbox.ConsulURL+"/v1/kv/anon", strings.NewReader("x"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("anonymous KV write: HTTP %d, want 403", resp.StatusCode)
		}
		out, _ := sb.Output(ctx, "h1", "curl", "-q", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", sb.CAFile(), "-X", "PUT", "-d", "x", sandbox.ConsulURL+"/v1/kv/anon")
		if out != "403" {
			t.Errorf("anonymous curl KV write: %q, want 403", out)
		}
	})

	t.Run("HTTP API only over verified TLS", func(t *testing.T) {
		if out, err := sb.Output(ctx, "h1", "curl", "-q", "-sS", "-m", "3", "http://127.0.0.1:8500/v1/status/leader"); err == nil {
			t.Errorf("plain HTTP answered: %q", out)
		} else {
			t.Logf("plain HTTP: %v", firstLine(err.Error()))
		}
		if out, err := sb.Output(ctx, "h1", "curl", "-q", "-sS", "-m", "3", sandbox.ConsulURL+"/v1/status/leader"); err == nil {
			t.Errorf("HTTPS without the CA answered: %q", out)
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("HTTPS without the CA failed for another reason: %v", err)
		}
		if out, err := sb.Output(ctx, "h1", "curl", "-q", "-sS", "-m", "3", "--cacert", sb.CAFile(), sandbox.ConsulURL+"/v1/status/leader"); err != nil || !strings.Contains(out, sb.Server(1).Addr.String()) {
			t.Errorf("HTTPS with the CA: %q %v", out, err)
		}
	})

	t.Run("gossip encrypted", func(t *testing.T) {
		out, err := sb.Output(ctx, "h1", "consul", "info")
		if err != nil || !strings.Contains(out, "encrypted = true") {
			t.Errorf("consul info lacks serf encrypted = true: %v\n%s", err, grepLines(out, "encrypt"))
		}
		cfg, err := os.ReadFile(filepath.Join(h1.Dir, "consul.hcl"))
		if err != nil || !strings.Contains(string(cfg), "encrypt = ") || !strings.Contains(string(cfg), "verify_server_hostname = true") {
			t.Errorf("h1's consul.hcl lacks encrypt or verify_server_hostname: %v", err)
		}
	})

	t.Run("token lacking key:write on leases", func(t *testing.T) {
		// h3 is fresh: its agent never ran. It starts with a token whose
		// policy is drover's own minus key:write on the lease prefix.
		weak := strings.Replace(aclpolicy.HCL(aclpolicy.Options{Node: "h3"}),
			"key_prefix \""+aclpolicy.LeasePrefix+"\" {\n  policy = \"write\"\n}", "", 1)
		secret := makeToken(ctx, t, sb, "weak-h3", weak)
		good, _ := os.ReadFile(sb.DroverTokenFile(h3))
		if err := os.WriteFile(sb.DroverTokenFile(h3), []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := sb.SpawnAgent(h3); err != nil {
			t.Fatal(err)
		}
		var st secStatus
		harness.Eventually(t, 30*time.Second, "h3 reports the missing right", func() error {
			var err error
			st, _, err = secState(ctx, sb, "h3")
			if err != nil {
				return err
			}
			if !strings.Contains(st.JoinError, "key:write") || !strings.Contains(st.JoinError, "drover/v1/leases/") {
				return fmt.Errorf("join_error %q", st.JoinError)
			}
			return nil
		})
		t.Logf("h3 status: %s", st.JoinError)
		if out, err := sb.Output(ctx, "h3", "drover", "status"); err != nil || !strings.Contains(out, "key:write") {
			t.Errorf("drover status text lacks the error: %v\n%s", err, out)
		}
		if log, _ := os.ReadFile(filepath.Join(h3.Dir, "agent.log")); !strings.Contains(string(log), "key:write") {
			t.Errorf("agent log lacks the missing right")
		}
		// Nothing on the data plane.
		if out, _ := sb.ConsulCLI(ctx, "kv", "get", "-recurse", aclpolicy.LeasePrefix); strings.Contains(out, `"node":"h3"`) {
			t.Errorf("h3 holds a lease with a token that cannot write one:\n%s", out)
		}
		if out, _ := sb.Docker(ctx, "h3", "network", "ls", "--format", "{{.Name}}"); strings.Contains(out, "drover") {
			t.Errorf("h3 made its docker network: %s", out)
		}
		if out, _ := sb.Output(ctx, "h3", "ip", "route", "show", "dev", "drover0"); strings.TrimSpace(out) != "" {
			t.Errorf("h3 has mesh routes: %s", out)
		}
		if out, _ := sb.Output(ctx, "h1", "wg", "show", "drover0", "endpoints"); strings.Contains(out, h3.Addr.String()) {
			t.Errorf("h1 has h3 as a peer: %s", out)
		}
		begin := time.Now()
		if err := os.WriteFile(sb.DroverTokenFile(h3), good, 0o600); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 5*time.Second, "h3 joins with the good token", func() error {
			st, _, err := secState(ctx, sb, "h3")
			if err != nil || !strings.HasPrefix(st.Overlay.Subnet, "10.") || st.JoinError != "" {
				return fmt.Errorf("subnet %q join_error %q %v", st.Overlay.Subnet, st.JoinError, err)
			}
			return nil
		})
		t.Logf("h3 joined %s after its token file was replaced", time.Since(begin).Round(time.Millisecond))
	})

	t.Run("revoked token keeps the data plane", func(t *testing.T) {
		runLabelled(ctx, t, sb, "h2", "websec")
		harness.Eventually(t, 20*time.Second, "h2 in step", func() error {
			st, _, err := secState(ctx, sb, "h2")
			if err != nil || st.errors() != "" {
				return fmt.Errorf("h2 errors %q %v", st.errors(), err)
			}
			return nil
		})
		peers := func() string {
			out, _ := sb.Output(ctx, "h2", "wg", "show", "drover0", "allowed-ips")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			sort.Strings(lines) // wg lists peers in no fixed order
			return strings.Join(lines, "\n")
		}
		routes := func() string { out, _ := sb.Output(ctx, "h2", "ip", "route", "show", "dev", "drover0"); return out }
		regs := func() string {
			out, _ := sb.ConsulCLI(ctx, "catalog", "services", "-node", "h2")
			return out
		}
		p0, r0, g0 := peers(), routes(), regs()
		if !strings.Contains(g0, "drover-node") || !strings.Contains(g0, "web") {
			t.Fatalf("h2's registrations before: %q", g0)
		}
		if err := sb.RevokeDroverToken(ctx, h2); err != nil {
			t.Fatal(err)
		}
		// A container event makes the sync pass ask Consul now.
		if _, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "poke", "--network", "drover", sandbox.DemoImage); err != nil {
			t.Fatal(err)
		}
		var st secStatus
		harness.Eventually(t, 40*time.Second, "h2 shows the revoked token", func() error {
			var err error
			st, _, err = secState(ctx, sb, "h2")
			if err != nil {
				return err
			}
			if !strings.Contains(st.errors(), "ACL") {
				return fmt.Errorf("errors %q", st.errors())
			}
			return nil
		})
		t.Logf("h2 status with a revoked token: %s", st.errors())
		// Nothing torn down, for a few seconds of failing passes.
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if p, r, g := peers(), routes(), regs(); p != p0 || r != r0 || g != g0 {
				t.Fatalf("data plane changed with a revoked token:\npeers %q → %q\nroutes %q → %q\nregs %q → %q", p0, p, r0, r, g0, g)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if es, err := healthService(ctx, sb, "h1", "web", true); err != nil || len(es) == 0 {
			t.Errorf("web on h2 no longer passing: %v %v", es, err)
		}
		secret := makeToken(ctx, t, sb, "drover-h2-new", "")
		begin := time.Now()
		if err := os.WriteFile(sb.DroverTokenFile(h2), []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 5*time.Second, "h2's errors clear with the new token", func() error {
			st, _, err := secState(ctx, sb, "h2")
			if err != nil || st.errors() != "" {
				return fmt.Errorf("errors %q %v", st.errors(), err)
			}
			return nil
		})
		t.Logf("h2's errors cleared %s after its token file was replaced", time.Since(begin).Round(time.Millisecond))
		if p, r := peers(), routes(); p != p0 || r != r0 {
			t.Errorf("data plane changed across the rotation:\npeers %q → %q\nroutes %q → %q", p0, p, r0, r)
		}
		harness.Eventually(t, 10*time.Second, "web on h2 still passing", func() error {
			es, err := healthService(ctx, sb, "h1", "web", true)
			if err != nil || len(es) == 0 {
				return fmt.Errorf("%v %v", es, err)
			}
			return nil
		})
	})

	t.Run("token appears nowhere", func(t *testing.T) {
		for _, h := range []sandbox.Host{h1, h2, h3} {
			b, err := os.ReadFile(sb.DroverTokenFile(h))
			if err != nil {
				t.Fatal(err)
			}
			tok := strings.TrimSpace(string(b))
			if len(tok) < 30 {
				t.Fatalf("%s: token %d bytes?", h.Name, len(tok))
			}
			places := map[string]string{}
			log, _ := os.ReadFile(filepath.Join(h.Dir, "agent.log"))
			places["agent log"] = string(log)
			_, places["status --json"], _ = secState(ctx, sb, h.Name)
			places["status"], _ = sb.Output(ctx, h.Name, "drover", "status")
			places["metrics"], _ = sb.Output(ctx, h.Name, "curl", "-sf", "http://127.0.0.1:9714/metrics")
			if !strings.Contains(places["metrics"], "drover_") {
				t.Errorf("%s: no metrics page to search", h.Name)
			}
			pid := sb.ProcessPID(h, sandbox.ProcAgent)
			kids := children(pid)
			if len(kids) == 0 {
				t.Errorf("%s: the agent (pid %d) has no child processes to search", h.Name, pid)
			}
			for _, k := range append(kids, pid) {
				env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", k))
				cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k))
				places[fmt.Sprintf("environ of %d (%s)", k, firstLine(strings.ReplaceAll(string(cmd), "\x00", " ")))] = string(env) + string(cmd)
			}
			for where, text := range places {
				if strings.Contains(text, tok) {
					t.Errorf("%s: the drover token appears in %s", h.Name, where)
				}
			}
			t.Logf("%s: token searched in %d places (log, status, metrics, %d processes)", h.Name, len(places), len(kids)+1)
		}
	})
}

// makeToken creates a token with policy rules (a new policy name) or, when
// rules is empty, with host h2's drover policy, and returns its secret.
func makeToken(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, name, rules string) string {
	t.Helper()
	policy := "drover-h2"
	if rules != "" {
		file := filepath.Join(t.TempDir(), name+".hcl")
		if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := sb.ConsulCLI(ctx, "acl", "policy", "create", "-name", name, "-rules", "@"+file); err != nil {
			t.Fatalf("creating policy %s: %v %s", name, err, out)
		}
		policy = name
	}
	out, err := sb.ConsulCLI(ctx, "acl", "token", "create", "-description", name, "-policy-name", policy, "-format", "json")
	if err != nil {
		t.Fatalf("creating token %s: %v %s", name, err, out)
	}
	var tok struct{ SecretID string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.SecretID == "" {
		t.Fatalf("token %s: %v %s", name, err, out)
	}
	return tok.SecretID
}

// children lists the PIDs whose parent is pid.
func children(pid int) []int {
	var out []int
	ts, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range ts {
		b, _ := os.ReadFile(f)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// TestConsulNodeID shows why the sandbox persists every agent's node_id:
// an agent restarted with a wiped data dir and the same ID is accepted at
// once; with a new ID the servers refuse its name ("… is reserved") for a
// while, measured here.
func TestConsulNodeID(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Prefix: "drvn", Hosts: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	h1 := sb.Host(1)
	accepted := func(wantID string) func() error {
		return func() error {
			out, err := sb.ConsulCLI(ctx, "catalog", "nodes", "-detailed")
			if err != nil {
				return err
			}
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[0] == "h1" && (wantID == "" || f[1] == wantID) {
					if m, err := sb.ConsulCLI(ctx, "members"); err == nil && hasAliveMember(m, "h1") {
						return nil
					}
				}
			}
			return fmt.Errorf("h1 (id %s) not accepted:\n%s", wantID, out)
		}
	}
	begin := time.Now()
	if err := sb.RestartConsulWiped(h1, false); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, "h1 back with its persisted node ID", accepted(sb.NodeID("h1")))
	t.Logf("wiped data dir, same node_id: h1 accepted again %s after the restart", time.Since(begin).Round(100*time.Millisecond))

	begin = time.Now()
	if err := sb.RestartConsulWiped(h1, true); err != nil {
		t.Fatal(err)
	}
	newAccepted := func() error {
		out, err := sb.ConsulCLI(ctx, "catalog", "nodes", "-detailed")
		if err != nil {
			return err
		}
		if strings.Contains(out, sb.NodeID("h1")) {
			return fmt.Errorf("the old ID still holds the name h1")
		}
		return accepted("")()
	}
	err := harness.Wait(90*time.Second, newAccepted)
	log, _ := os.ReadFile(filepath.Join(h1.Dir, "consul.log"))
	var line string
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "is reserved") {
			line = l
			break
		}
	}
	if err == nil {
		t.Logf("wiped data dir, NEW node_id: h1 accepted %s after the restart (refusal seen: %q)", time.Since(begin).Round(100*time.Millisecond), line)
		return
	}
	t.Logf("wiped data dir, NEW node_id: h1 still refused after %s: %q", time.Since(begin).Round(time.Second), line)
	// The operator's way out: deregister the old node from the catalog.
	if line == "" {
		t.Errorf("no \"is reserved\" refusal in h1's consul log")
	}
	freed := time.Now()
	if out, err := sb.Output(ctx, "h1", "curl", "-sf", "-X", "PUT", "-d", `{"Node":"h1"}`, sandbox.ConsulURL+"/v1/catalog/deregister"); err != nil {
		t.Fatalf("deregistering the old node: %v %s", err, out)
	}
	harness.Eventually(t, 90*time.Second, "h1 accepted with its new ID once the old one is deregistered", newAccepted)
	t.Logf("after PUT /v1/catalog/deregister of the old node: h1 accepted with its new ID %s later", time.Since(freed).Round(100*time.Millisecond))
}
