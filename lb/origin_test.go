package lb

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/contract"
)

// nodeRecord is a drover-node instance for drover node name on Consul node
// consulNode with the given subnet and endpoint.
func nodeRecord(name, consulNode, subnet, endpoint string) discovery.Instance {
	return discovery.Instance{ID: "drover-node", Service: discovery.NodeService, Node: consulNode, Health: "critical",
		Meta: map[string]string{discovery.MetaNode: name, discovery.MetaSubnet: subnet, discovery.MetaEndpoint: endpoint,
			discovery.MetaPublicKey: "k"}}
}

// from makes in look registered by drover node name on Consul node
// consulNode.
func from(in discovery.Instance, name, consulNode string) discovery.Instance {
	in.Meta[discovery.MetaNode], in.Node = name, consulNode
	return in
}

func TestOnlyDroverInstancesAndNeverTheLBHost(t *testing.T) {
	lbInst := func(id, addr string) discovery.Instance { return inst(id, addr, 8080, contract.KeyLBMode, "http") }
	services := map[string][]discovery.Instance{
		discovery.NodeService: {
			nodeRecord("h1", "c-h1", "10.42.1.0/24", "10.99.0.11:51820"),
			nodeRecord("h2", "c-h2", "10.42.2.0/24", "10.99.0.12:51820"),
		},
		"web": {
			from(lbInst("ok-overlay", "10.42.1.5"), "h1", "c-h1"),
			from(lbInst("ok-published", "10.99.0.12"), "h2", "c-h2"),
			from(lbInst("ok-allowed", "192.168.7.7"), "", "elsewhere"),
			lbInst("no-node-meta", "10.42.1.6"),
			from(lbInst("unknown-node", "10.42.3.5"), "h3", "c-h3"),
			from(lbInst("other-subnet", "10.42.2.9"), "h1", "c-h1"),
			from(lbInst("forged-consul-node", "10.42.1.7"), "h1", "c-evil"),
			from(lbInst("loopback", "127.0.0.1"), "h1", "c-h1"),
			from(lbInst("metadata", "169.254.169.254"), "h1", "c-h1"),
			from(lbInst("allowed-loopback", "127.0.0.2"), "", "x"),
			from(lbInst("v6-loopback", "::1"), "h1", "c-h1"),
			from(lbInst("own", "10.42.1.1"), "h1", "c-h1"),
		},
	}
	opt := Options{SlotsMin: 4, Own: []netip.Addr{netip.MustParseAddr("10.42.1.1")},
		Allow: []netip.Prefix{netip.MustParsePrefix("192.168.7.0/24"), netip.MustParsePrefix("127.0.0.0/8")}}
	st, probs := Desired(opt, services)
	var served []string
	for _, b := range st.Backends {
		for _, s := range b.Servers {
			served = append(served, s.Name)
		}
	}
	if got, want := strings.Join(served, " "), "ok-allowed ok-overlay ok-published"; got != want {
		t.Errorf("served %q, want %q", got, want)
	}
	want := map[string]string{
		"no-node-meta":       "not registered by a drover agent",
		"unknown-node":       `drover node "h3" has no drover-node record`,
		"other-subnet":       `outside drover node "h1"'s subnet 10.42.1.0/24`,
		"forged-consul-node": `registered on Consul node "c-evil", but drover node "h1" runs on "c-h1"`,
		"loopback":           "loopback address",
		"allowed-loopback":   "loopback address",
		"v6-loopback":        "loopback address",
		"metadata":           "link-local",
		"own":                "the lb host's own addresses",
	}
	got := map[string]string{}
	for _, p := range probs {
		got[p.Instance] = p.Reason
	}
	for id, w := range want {
		if !strings.Contains(got[id], w) || !strings.HasSuffix(got[id], "instance left out") {
			t.Errorf("instance %s: reason %q, want it to contain %q", id, got[id], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("problems %v, want exactly %d", probs, len(want))
	}
	// The drover-node records are not a service of their own.
	for _, b := range st.Backends {
		if b.Name == discovery.NodeService {
			t.Errorf("drover-node became a backend")
		}
	}
}

// A service whose every instance the origin check refuses (passing or
// not) is left out with the reasons; it set no settings, claims no route,
// and Desired does not panic on it (it did once: the e2e agent died).
func TestServiceWithOnlyRefusedOriginsLeavesQuietly(t *testing.T) {
	lbInst := func(id, addr, health string) discovery.Instance {
		return with(inst(id, addr, 8080, contract.KeyLBMode, "http"), health)
	}
	services := map[string][]discovery.Instance{
		discovery.NodeService: {nodeRecord("h1", "c-h1", "10.42.1.0/24", "10.99.0.11:51820")},
		"intruder": {
			lbInst("no-node-meta", "10.42.1.6", "passing"),
			lbInst("no-node-meta-critical", "10.42.1.7", "critical"),
		},
		"sleeper": {lbInst("no-node-meta-only-critical", "10.42.1.8", "critical")},
		"loop":    {from(lbInst("evil-loop", "127.0.0.1", "passing"), "h1", "c-h1")},
		"web":     {from(lbInst("ok", "10.42.1.5", "passing"), "h1", "c-h1")},
	}
	st, probs := Desired(Options{SlotsMin: 4}, services)
	if len(st.Backends) != 1 || st.Backends[0].Name != "web" || len(st.Frontends) != 1 {
		t.Fatalf("state %+v: want web alone", st)
	}
	// Sorted by service: the loopback one is refused for its address (as
	// when the service has other instances), the intruder for its origin.
	if len(probs) != 2 || probs[0].Instance != "no-node-meta" || !strings.Contains(probs[0].Reason, "not registered by a drover agent") ||
		probs[1].Instance != "evil-loop" || !strings.Contains(probs[1].Reason, "loopback") {
		t.Errorf("problems %v: want the passing intruder refused for its origin, evil-loop for its loopback address", probs)
	}
}
