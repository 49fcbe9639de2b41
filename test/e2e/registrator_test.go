//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/test/harness"
	"github.com/drover-net/drover/test/sandbox"
)

// TestRegistratorFleet runs containers the way a registrator fleet does —
// on Docker's default bridge with published ports and SERVICE_* keys, no
// drover network — on stock hosts (FORWARD policy DROP, dockerd's own
// iptables), and checks that drover registers them as registrator did: the
// host's address and the published port, tags, attributes as meta, the
// HTTP check run by Consul; that they are reachable from a container on
// another host; that the lb on h1 proxies a published-port instance on h2;
// that -internal's container address is a per-container choice; and that a
// script check registers the service without the script, saying why.
func TestRegistratorFleet(t *testing.T) {
	sb := harness.Sandbox(t, sandbox.Options{Hosts: 2, Agents: true, LB: "h1"})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	h2Addr := sb.Host(2).Addr.String()

	run := func(host string, args ...string) {
		t.Helper()
		if out, err := sb.Docker(ctx, host, append(append([]string{"run", "-d"}, args...), sandbox.DemoImage)...); err != nil {
			t.Fatalf("docker run %v on %s: %v %s", args, host, err, out)
		}
	}
	instance := func(name string, passing bool) (healthEntry, error) {
		es, err := healthService(ctx, sb, "h1", name, passing)
		if err != nil {
			return healthEntry{}, err
		}
		if len(es) != 1 {
			return healthEntry{}, fmt.Errorf("%d instances of %s (passing only: %v)", len(es), name, passing)
		}
		return es[0], nil
	}

	t.Run("published port on the default bridge: host address, host port, tags, attributes, Consul's HTTP check", func(t *testing.T) {
		run("h2", "--name", "legacy", "-p", "18080:8080", "-e", "SERVICE_NAME=legacy", "-e", "SERVICE_TAGS=v1,blue",
			"-e", "SERVICE_REGION=eu-west", "-e", "SERVICE_8080_OWNER=team-a",
			"-e", "SERVICE_CHECK_HTTP=/healthz", "-e", "SERVICE_CHECK_INTERVAL=1s", "-e", "SERVICE_CHECK_TIMEOUT=500ms")
		var e healthEntry
		harness.Eventually(t, 15*time.Second, "legacy passing in Consul", func() (err error) {
			e, err = instance("legacy", true)
			return err
		})
		s := e.Service
		if s.Address != h2Addr || s.Port != 18080 {
			t.Errorf("legacy registered at %s:%d, want h2's address %s and the published port 18080", s.Address, s.Port, h2Addr)
		}
		if strings.Join(s.Tags, ",") != "blue,v1" || s.Meta["region"] != "eu-west" || s.Meta["owner"] != "team-a" || s.Meta["address_mode"] != "host" {
			t.Errorf("legacy: tags %v meta %v", s.Tags, s.Meta)
		}
		var http bool
		for _, c := range e.Checks {
			http = http || strings.HasSuffix(c.CheckID, ":http") && c.Status == "passing"
		}
		if !http {
			t.Errorf("legacy lacks a passing HTTP check: %+v", e.Checks)
		}
		// A container on h1 reaches it where Consul says it is: through
		// h2's DNAT for the published port, on a stock host.
		out, err := sb.Docker(ctx, "h1", "run", "--rm", "--network", "drover", sandbox.DemoImage,
			"get", "-timeout", "5s", "http://"+s.Address+":"+strconv.Itoa(s.Port)+"/")
		if err != nil || !strings.Contains(out, "host=") {
			t.Errorf("from a container on h1, GET %s:%d: %v %s", s.Address, s.Port, err, out)
		}
		out, err = sb.Output(ctx, "h1", "drover", "services", "legacy")
		if err != nil || !strings.Contains(out, h2Addr+":18080") || !strings.Contains(out, " host ") {
			t.Errorf("drover services legacy does not show the host mode: %v\n%s", err, out)
		}
		out, err = sb.Output(ctx, "h2", "drover", "status")
		if err != nil || !strings.Contains(out, "host "+h2Addr+":18080 (auto: not on the drover network; port 8080 published as 18080)") {
			t.Errorf("drover status on h2 does not say where legacy is registered and why: %v\n%s", err, out)
		}
	})

	t.Run("the lb on h1 proxies a published-port instance on h2", func(t *testing.T) {
		run("h2", "--name", "pub", "-p", "18081:8080", "-l", "drover.service=pub", "-l", "drover.lb.mode=http",
			"-l", "drover.lb.host=pub.example", "-l", "drover.check=http:/healthz", "-l", "drover.check.interval=1s")
		waitUp(ctx, t, sb, "pub", 1)
		harness.Eventually(t, 10*time.Second, "pub through the lb", func() error {
			out, err := sb.Output(ctx, "h1", "curl", "-sf", "-m", "3", "-H", "Host: pub.example", "http://127.0.0.1:80/")
			if err != nil || !strings.Contains(out, "host=") {
				return fmt.Errorf("GET pub.example via the lb: %v %s", err, out)
			}
			return nil
		})
	})

	t.Run("drover.address=container: the container's own address (registrator's -internal)", func(t *testing.T) {
		run("h2", "--name", "internal", "-l", "drover.service=internal", "-l", "drover.address=container")
		out, _ := sb.Docker(ctx, "h2", "inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}", "internal")
		ip := strings.TrimSpace(out)
		harness.Eventually(t, 10*time.Second, "internal in Consul", func() error {
			e, err := instance("internal", false)
			if err != nil {
				return err
			}
			if e.Service.Address != ip || e.Service.Port != 8080 || e.Service.Meta["address_mode"] != "container" {
				return fmt.Errorf("internal at %s:%d mode %q, want %s:8080 container", e.Service.Address, e.Service.Port, e.Service.Meta["address_mode"], ip)
			}
			return nil
		})
	})

	t.Run("SERVICE_CHECK_SCRIPT: registered without the script check; status and log say why", func(t *testing.T) {
		run("h2", "--name", "scripty", "--network", "drover", "-e", "SERVICE_NAME=scripty", "-e", "SERVICE_CHECK_SCRIPT=curl -f localhost:8080/")
		harness.Eventually(t, 15*time.Second, "scripty passing, with a TCP check and no script", func() error {
			e, err := instance("scripty", true)
			if err != nil {
				return err
			}
			var tcp bool
			for _, c := range e.Checks {
				if strings.Contains(c.CheckID, "script") {
					return fmt.Errorf("a script check was registered: %+v", e.Checks)
				}
				tcp = tcp || strings.HasSuffix(c.CheckID, ":tcp")
			}
			if !tcp {
				return fmt.Errorf("no TCP check: %+v", e.Checks)
			}
			return nil
		})
		out, err := sb.Output(ctx, "h2", "drover", "status")
		if err != nil || !strings.Contains(out, "REGISTERED, NOT AS ASKED container scripty") || !strings.Contains(out, "drover never runs commands from labels") {
			t.Errorf("drover status on h2 does not say why the script check is missing: %v\n%s", err, out)
		}
		log, err := os.ReadFile(filepath.Join(sb.Host(2).Dir, "agent.log"))
		if err != nil || !strings.Contains(string(log), "SERVICE_CHECK_SCRIPT: not run") {
			t.Errorf("h2's agent log does not say why the script check is missing (%v)", err)
		}
	})

	t.Run("--register all: an unlabelled container with a published port, named after its image, as registrator does", func(t *testing.T) {
		run("h2", "--name", "plainpub", "-p", "18082:8080")
		time.Sleep(2 * time.Second) // a labelled-only agent's passes: still nothing
		if es, err := healthService(ctx, sb, "h1", "drover-demo", false); err != nil || len(es) != 0 {
			t.Fatalf("before --register all: %d drover-demo instances (%v)", len(es), err)
		}
		if _, err := sb.Kill("h2", sandbox.ProcAgent); err != nil {
			t.Fatal(err)
		}
		if err := sb.Start(ctx, "h2", sandbox.ProcAgent, "--register", "all"); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 15*time.Second, "plainpub registered", func() error {
			e, err := instance("drover-demo", false)
			if err != nil {
				return err
			}
			if e.Service.Address != h2Addr || e.Service.Port != 18082 || e.Service.Meta["container_name"] != "plainpub" {
				return fmt.Errorf("drover-demo at %s:%d (%s)", e.Service.Address, e.Service.Port, e.Service.Meta["container_name"])
			}
			return nil
		})
		// The labelled ones are still there, unchanged.
		for _, name := range []string{"legacy", "pub", "internal", "scripty"} {
			if _, err := instance(name, false); err != nil {
				t.Errorf("after the restart with --register all: %v", err)
			}
		}
	})
}
