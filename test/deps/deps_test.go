// Package deps enforces the import rules of ../shared/style.md §6.3: core
// packages never import adapters, peers or SDK clients; adapters never
// import drover's core. It runs `go list -deps` on each package.
package deps

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/drover-net/drover/"

// sdkClients are SDK packages that talk to the outside world; only adapters
// and cmd may import them.
var sdkClients = map[string]string{
	"github.com/docker/docker/client":                       "Docker client: adapters only (discovery/docker)",
	"github.com/vishvananda/netlink":                        "netlink: adapters only (overlay/netlink, overlay/wg)",
	"golang.zx2c4.com/wireguard/wgctrl":                     "wgctrl client: adapters only (overlay/wg)",
	"github.com/haproxytech/client-native/v5/runtime":       "HAProxy runtime client: adapters only (lb/haproxy)",
	"github.com/haproxytech/client-native/v5/configuration": "HAProxy config client: adapters only (lb/haproxy)",
	"os/exec": "running commands: adapters and cmd only",
}

// adapters talk to one outside system each; they import only internal/*,
// and no core imports them.
var adapters = []string{"discovery/consul", "discovery/docker", "overlay/wg", "overlay/netlink", "overlay/firewall", "lb/haproxy"}

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestCoreImports(t *testing.T) {
	peers := []string{"overlay", "lb", "confgen", "healthcheck"}
	core := append([]string{"discovery", "discovery/watch", "discovery/contract"}, peers...)
	for _, pkg := range core {
		for _, d := range deps(t, pkg) {
			if why, bad := sdkClients[d]; bad {
				t.Errorf("%s imports %s: %s", pkg, d, why)
			}
			if d == "testing" {
				t.Errorf("%s imports testing", pkg)
			}
			for _, a := range adapters {
				if d == mod+a {
					t.Errorf("%s imports adapter %s: cores depend on their own interfaces", pkg, a)
				}
			}
			for _, p := range peers {
				if p != pkg && d == mod+p && !strings.HasPrefix(pkg, "discovery") {
					t.Errorf("%s imports its peer %s: move shared things into discovery or internal", pkg, p)
				}
			}
			// The registration contract is a leaf: pure, importing nothing
			// of drover's; everyone may use it.
			contract := d == mod+"discovery/contract"
			if pkg == "discovery/contract" && strings.HasPrefix(d, mod) && d != mod+pkg {
				t.Errorf("discovery/contract imports %s: the codec imports nothing of drover's", d)
			}
			if pkg == "discovery" && strings.HasPrefix(d, mod) && !strings.HasPrefix(d, mod+"internal/") && d != mod+"discovery" && !contract {
				t.Errorf("discovery imports %s: it may import only discovery/contract and internal/*", d)
			}
			if pkg == "discovery/watch" && strings.HasPrefix(d, mod) && !strings.HasPrefix(d, mod+"internal/") && d != mod+"discovery" && d != mod+pkg && !contract {
				t.Errorf("discovery/watch imports %s: it may import only discovery, discovery/contract and internal/*", d)
			}
			if strings.HasPrefix(d, mod+"test/") {
				t.Errorf("%s imports test code %s", pkg, d)
			}
		}
	}
}

func TestAdapterImports(t *testing.T) {
	for _, a := range adapters {
		for _, d := range deps(t, a) {
			if strings.HasPrefix(d, mod) && !strings.HasPrefix(d, mod+"internal/") && d != mod+a {
				t.Errorf("adapter %s imports %s: adapters import only internal/*", a, d)
			}
		}
	}
}
