//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"

	"github.com/drover-net/drover/discovery/contract"
)

type healthEntry struct {
	Node    struct{ Node string }
	Service struct {
		ID      string
		Service string
		Address string
		Port    int
		Tags    []string
		Meta    map[string]string
	}
	Checks []struct {
		CheckID string
		Status  string
	}
}

func healthService(ctx context.Context, sb *sandbox.Sandbox, host, name string, passingOnly bool) ([]healthEntry, error) {
	url := sandbox.ConsulURL + "/v1/health/service/" + name
	if passingOnly {
		url += "?passing=true"
	}
	out, err := sb.Output(ctx, host, "curl", "-sf", url)
	if err != nil {
		return nil, err
	}
	var es []healthEntry
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		return nil, fmt.Errorf("decoding %s: %v", url, err)
	}
	return es, nil
}

// TestDiscovery proves that labelled containers on every host are
// registered in Consul with their overlay address, port, tags and meta,
// health-checked by Consul, deregistered when they stop (also when the agent
// was down), that bad or absent labels register nothing, and that an agent
// restart with nothing changed writes nothing.
func TestDiscovery(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Hosts: 3, Agents: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	ips := map[string]string{}
	t.Run("labelled containers appear within 1s with address, port, tags, meta", func(t *testing.T) {
		for _, h := range sb.Hosts() {
			if _, err := sb.Docker(ctx, h.Name, "run", "-d", "--name", "api", "--network", "drover",
				"-l", "drover.service=api", "-l", "drover.tags=v1,blue", "-l", "drover.check=http:/healthz",
				"-l", "drover.check.interval=1s", "-l", "drover.check.timeout=500ms", "-l", "drover.lb.mode=http",
				sandbox.DemoImage); err != nil {
				t.Fatal(err)
			}
			started := time.Now()
			out, _ := sb.Docker(ctx, h.Name, "inspect", "-f", "{{.NetworkSettings.Networks.drover.IPAddress}}", "api")
			ips[h.Name] = strings.TrimSpace(out)
			harness.Eventually(t, time.Second, "api on "+h.Name+" in Consul", func() error {
				es, err := healthService(ctx, sb, "h1", "api", false)
				if err != nil {
					return err
				}
				for _, e := range es {
					if e.Service.Address == ips[h.Name] {
						return nil
					}
				}
				return fmt.Errorf("no instance at %s yet", ips[h.Name])
			})
			t.Logf("api on %s visible in Consul %s after docker run returned", h.Name, time.Since(started).Round(time.Millisecond))
		}
		harness.Eventually(t, 10*time.Second, "3 passing api instances", func() error {
			es, err := healthService(ctx, sb, "h1", "api", true)
			if err != nil {
				return err
			}
			if len(es) != 3 {
				return fmt.Errorf("%d passing instances", len(es))
			}
			return nil
		})
		es, _ := healthService(ctx, sb, "h1", "api", true)
		for _, e := range es {
			s := e.Service
			host := e.Node.Node
			if s.Address != ips[host] || s.Port != 8080 || strings.Join(s.Tags, ",") != "blue,v1" ||
				s.Meta["drover_node"] != host || s.Meta["container_name"] != "api" || s.Meta["image"] != sandbox.DemoImage ||
				s.Meta[contract.KeyLBMode] != "http" || !strings.HasPrefix(s.ID, "drover:"+host+":") {
				t.Errorf("instance on %s: %+v", host, s)
			}
			if !strings.HasPrefix(s.Address, "10.42.") {
				t.Errorf("instance on %s has %s, not an overlay address", host, s.Address)
			}
			var docker bool
			for _, c := range e.Checks {
				docker = docker || strings.HasSuffix(c.CheckID, ":docker")
			}
			if !docker {
				t.Errorf("instance on %s lacks the bridged Docker HEALTHCHECK: %+v", host, e.Checks)
			}
		}
	})

	t.Run("unlabelled, ignored and badly labelled containers never appear", func(t *testing.T) {
		for _, args := range [][]string{
			{"--name", "plain"},
			{"--name", "ignored", "-l", "drover.service=ignored", "-l", "drover.ignore=true"},
			{"--name", "bad", "-l", "drover.service=bad", "-l", "drover.check.interval=2x"},
		} {
			argv := append([]string{"run", "-d", "--network", "drover"}, args...)
			if _, err := sb.Docker(ctx, "h1", append(argv, sandbox.DemoImage)...); err != nil {
				t.Fatal(err)
			}
		}
		harness.Eventually(t, 5*time.Second, "bad label reported by drover status", func() error {
			out, err := sb.Output(ctx, "h1", "drover", "status")
			if err != nil {
				return err
			}
			if !strings.Contains(out, "SKIPPED container bad") || !strings.Contains(out, "drover.check.interval") {
				return fmt.Errorf("status lacks the skipped container:\n%s", out)
			}
			return nil
		})
		m, err := sb.Output(ctx, "h1", "curl", "-sf", "http://127.0.0.1:9714/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(m, `drover_discovery_skipped{container="bad",port="0",reason="drover.check.interval`) {
			t.Errorf("/metrics lacks the skipped container:\n%s", grepLines(m, "drover_discovery"))
		}
		out, err := sb.Output(ctx, "h1", "curl", "-sf", sandbox.ConsulURL+"/v1/agent/services")
		if err != nil {
			t.Fatal(err)
		}
		var svcs map[string]struct {
			Service string
			Meta    map[string]string
		}
		if err := json.Unmarshal([]byte(out), &svcs); err != nil {
			t.Fatal(err)
		}
		for id, s := range svcs {
			if s.Service != "api" && s.Service != "drover-node" {
				t.Errorf("unexpected registration %s: %+v", id, s)
			}
		}
	})

	t.Run("docker kill deregisters within 1s", func(t *testing.T) {
		if _, err := sb.Docker(ctx, "h2", "kill", "api"); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		harness.Eventually(t, time.Second, "api on h2 gone", func() error {
			es, err := healthService(ctx, sb, "h1", "api", false)
			if err != nil {
				return err
			}
			for _, e := range es {
				if e.Node.Node == "h2" {
					return fmt.Errorf("still registered")
				}
			}
			return nil
		})
		t.Logf("deregistered %s after docker kill", time.Since(killed).Round(time.Millisecond))
	})

	t.Run("agent down: Consul judges health; restart deregisters at once", func(t *testing.T) {
		if _, err := sb.Kill("h3", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		if _, err := sb.Docker(ctx, "h3", "kill", "api"); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		// interval 1s × fall 3, plus the 500ms timeout.
		harness.Eventually(t, 6*time.Second, "api on h3 critical", func() error {
			es, err := healthService(ctx, sb, "h1", "api", true)
			if err != nil {
				return err
			}
			for _, e := range es {
				if e.Node.Node == "h3" {
					return fmt.Errorf("still passing")
				}
			}
			return nil
		})
		t.Logf("critical %s after docker kill with the agent down", time.Since(killed).Round(time.Millisecond))
		if err := sb.Start(ctx, "h3", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 2*time.Second, "api on h3 deregistered after agent restart", func() error {
			es, err := healthService(ctx, sb, "h1", "api", false)
			if err != nil {
				return err
			}
			for _, e := range es {
				if e.Node.Node == "h3" {
					return fmt.Errorf("still registered")
				}
			}
			return nil
		})
	})

	t.Run("agent restart with nothing changed writes nothing", func(t *testing.T) {
		// Consul's own evidence: the modify indexes of everything the
		// agent writes (its services, its drover-node record and checks,
		// the leases) do not move across the restart. (Its cluster-view
		// row under drover/v1/mesh/ is left out: it is rewritten every few
		// seconds by design, restart or not, as its heartbeat.)
		indexes := func() string {
			var idx []string
			for _, path := range []string{"/v1/health/service/api", "/v1/health/service/drover-node", "/v1/kv/drover/v1/leases/?recurse"} {
				out, err := sb.Output(ctx, "h1", "curl", "-sf", "-o", "/dev/null", "-D", "-", sandbox.ConsulURL+path)
				if err != nil {
					t.Fatal(err)
				}
				for _, line := range strings.Split(out, "\n") {
					if strings.HasPrefix(strings.ToLower(line), "x-consul-index:") {
						idx = append(idx, path+"="+strings.TrimSpace(line[len("x-consul-index:"):]))
					}
				}
			}
			return strings.Join(idx, " ")
		}
		before := indexes()
		if _, err := sb.Kill("h1", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		if err := sb.Start(ctx, "h1", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		var st struct {
			Discovery struct {
				Writes int `json:"consul_writes"`
				Passes int `json:"passes"`
			} `json:"discovery"`
			Overlay struct {
				Applies int `json:"applies"`
			} `json:"overlay"`
		}
		harness.Eventually(t, 10*time.Second, "a full pass after restart", func() error {
			out, err := sb.Output(ctx, "h1", "drover", "status", "--json")
			if err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				return err
			}
			if st.Discovery.Passes < 1 {
				return fmt.Errorf("no pass yet")
			}
			return nil
		})
		if st.Discovery.Writes != 0 || st.Overlay.Applies != 0 {
			t.Errorf("restart wrote: %d Consul writes, %d overlay applies", st.Discovery.Writes, st.Overlay.Applies)
		}
		t.Logf("after restart: %d passes, %d Consul writes, %d overlay applies", st.Discovery.Passes, st.Discovery.Writes, st.Overlay.Applies)
		// Let a mesh self-check round report too, then compare.
		harness.Eventually(t, 10*time.Second, "mesh probes after restart", func() error {
			out, err := sb.Output(ctx, "h1", "drover", "status")
			if err != nil || !strings.Contains(out, "ok ") {
				return fmt.Errorf("no probe yet: %v", err)
			}
			return nil
		})
		if after := indexes(); after != before {
			t.Errorf("Consul indexes moved across the restart:\nbefore %s\nafter  %s", before, after)
		} else {
			t.Logf("Consul indexes unchanged across the restart: %s", after)
		}
	})

	t.Run("dockerd restart: reconnect, resync, register new containers", func(t *testing.T) {
		if _, err := sb.Kill("h1", sandbox.ProcDockerd); err != nil {
			t.Fatal(err)
		}
		if err := sb.Start(ctx, "h1", sandbox.ProcDockerd); err != nil {
			t.Fatal(err)
		}
		// The sandbox restarts a killed dockerd as after a reboot: its old
		// containers are gone, so their registrations must go too.
		harness.Eventually(t, 20*time.Second, "h1's old api deregistered after dockerd came back", func() error {
			es, err := healthService(ctx, sb, "h1", "api", false)
			if err != nil {
				return err
			}
			for _, e := range es {
				if e.Node.Node == "h1" {
					return fmt.Errorf("still registered")
				}
			}
			return nil
		})
		if _, err := sb.Docker(ctx, "h1", "run", "-d", "--name", "api-new", "--network", "drover",
			"-l", "drover.service=api", sandbox.DemoImage); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 5*time.Second, "new api on h1 registered", func() error {
			es, err := healthService(ctx, sb, "h1", "api", false)
			if err != nil {
				return err
			}
			for _, e := range es {
				if e.Node.Node == "h1" && e.Service.Meta["container_name"] == "api-new" {
					return nil
				}
			}
			return fmt.Errorf("not yet")
		})
	})

	t.Run("Consul agent down: registration queued and applied on return", func(t *testing.T) {
		if _, err := sb.Kill("h2", sandbox.ProcConsul); err != nil {
			t.Fatal(err)
		}
		if _, err := sb.Docker(ctx, "h2", "run", "-d", "--name", "late", "--network", "drover",
			"-l", "drover.service=late", sandbox.DemoImage); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 10*time.Second, "agent reports the failed pass", func() error {
			out, err := sb.Output(ctx, "h2", "drover", "status", "--json")
			if err != nil {
				return err
			}
			if !strings.Contains(out, `"pending": true`) {
				return fmt.Errorf("no pending pass yet")
			}
			return nil
		})
		if err := sb.Start(ctx, "h2", sandbox.ProcConsul); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 30*time.Second, "late registered once Consul is back", func() error {
			es, err := healthService(ctx, sb, "h1", "late", false)
			if err != nil {
				return err
			}
			if len(es) != 1 {
				return fmt.Errorf("%d instances", len(es))
			}
			return nil
		})
	})
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
