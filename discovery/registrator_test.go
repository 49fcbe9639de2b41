package discovery

import (
	"net/netip"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/drover-net/drover/discovery/contract"
)

var hostAddr = netip.MustParseAddr("10.99.0.11")

// bridged is a container on Docker's default bridge (not on drover's
// network) publishing container ports as host ports (-p host:container).
func bridged(c Container, publish ...int) Container {
	c.Networks = map[string]netip.Addr{"bridge": netip.MustParseAddr("172.17.0.2")}
	c.NetworkMode = "default"
	c.Published = map[int]HostBinding{}
	var exposed []int
	for i := 0; i+1 < len(publish); i += 2 {
		c.Published[publish[i+1]] = HostBinding{Port: publish[i]}
		exposed = append(exposed, publish[i+1])
	}
	if len(exposed) > 0 {
		c.Exposed = exposed
	}
	return c
}

// at sets a registration's address, mode and why.
func at(addr string, port int, mode AddressMode, why string) func(*Registration) {
	return func(r *Registration) {
		r.Address, r.Port, r.AddressMode, r.AddressWhy = netip.MustParseAddr(addr), port, mode, why
		r.Meta[MetaAddressMode] = string(mode)
	}
}

func TestAddressModes(t *testing.T) {
	place := Placement{Node: testNode, Network: testNetwork, HostAddr: hostAddr}
	web := ctr()
	tests := []struct {
		name     string
		mode     AddressMode
		cs       []Container
		want     []Registration
		problems []Problem
	}{
		{
			name: "auto, on drover's network: overlay address and container port",
			cs:   []Container{ctr("drover.service", "web")},
			want: []Registration{wantReg(web, 8080, "web")},
		},
		{
			name: "auto, bridge container with a published port: the host's address and the host port (registrator's default)",
			cs:   []Container{bridged(ctr("SERVICE_NAME", "web"), 18080, 8080)},
			want: []Registration{wantReg(web, 8080, "web", at("10.99.0.11", 18080, AddressHost, "auto: not on the drover network; port 8080 published as 18080"))},
		},
		{
			name:     "auto, bridge container publishing nothing: skipped with the reason",
			cs:       []Container{bridged(ctr("SERVICE_NAME", "web"))},
			problems: []Problem{prob(web, 0, "not attached to the drover network, and no port is published")},
		},
		{
			name: "host mode on a drover container: the published port, not the overlay",
			cs: []Container{with(ctr("drover.service", "web", "drover.address", "host"), func(c *Container) {
				c.Published = map[int]HostBinding{8080: {Port: 28080}}
			})},
			want: []Registration{wantReg(web, 8080, "web", at("10.99.0.11", 28080, AddressHost, "drover.address; port 8080 published as 28080"))},
		},
		{
			name: "the agent's mode host, per container overlay wins",
			mode: AddressHost,
			cs:   []Container{ctr("drover.service", "web", "drover.address", "overlay")},
			want: []Registration{wantReg(web, 8080, "web", at("10.42.1.5", 8080, AddressOverlay, "drover.address"))},
		},
		{
			name:     "the agent's mode host, port not published: that port skipped",
			mode:     AddressHost,
			cs:       []Container{ctr("drover.service", "web")},
			problems: []Problem{prob(web, 8080, "port 8080 is not published on the host (--address-mode is host): publish it with -p")},
		},
		{
			name: "published on one address: that address",
			cs: []Container{with(bridged(ctr("SERVICE_NAME", "web"), 18080, 8080), func(c *Container) {
				c.Published[8080] = HostBinding{IP: netip.MustParseAddr("10.99.0.50"), Port: 18080}
			})},
			want: []Registration{wantReg(web, 8080, "web", at("10.99.0.50", 18080, AddressHost, "auto: not on the drover network; port 8080 published as 18080"))},
		},
		{
			name: "published on loopback only: refused, other hosts cannot reach it",
			cs: []Container{with(bridged(ctr("SERVICE_NAME", "web"), 18080, 8080), func(c *Container) {
				c.Published[8080] = HostBinding{IP: netip.MustParseAddr("127.0.0.1"), Port: 18080}
			})},
			problems: []Problem{prob(web, 8080, "port 8080 is published on 127.0.0.1 only")},
		},
		{
			name: "container mode: the container's own address on its only network (registrator's -internal)",
			mode: AddressContainer,
			cs:   []Container{bridged(ctr("SERVICE_NAME", "web"), 18080, 8080)},
			want: []Registration{wantReg(web, 8080, "web", at("172.17.0.2", 8080, AddressContainer, "--address-mode; network bridge"))},
		},
		{
			name: "container mode on several networks needs drover.address.network",
			cs: []Container{with(ctr("drover.service", "web", "drover.address", "container"), func(c *Container) {
				c.Networks["backend"] = netip.MustParseAddr("172.20.0.9")
			})},
			problems: []Problem{prob(web, 0, "container mode: the container is on several networks (backend, drover): set drover.address.network")},
		},
		{
			name: "container mode with drover.address.network",
			cs: []Container{with(ctr("drover.service", "web", "drover.address", "container", "drover.address.network", "backend"), func(c *Container) {
				c.Networks["backend"] = netip.MustParseAddr("172.20.0.9")
			})},
			want: []Registration{wantReg(web, 8080, "web", at("172.20.0.9", 8080, AddressContainer, "drover.address; network backend"))},
		},
		{
			name:     "a bad drover.address",
			cs:       []Container{ctr("drover.service", "web", "drover.address", "public")},
			problems: []Problem{prob(web, 0, `drover.address "public": want auto, overlay, host or container`)},
		},
		{
			name: "--net=host: every exposed port is on the host as itself",
			cs: []Container{with(ctr("SERVICE_NAME", "web"), func(c *Container) {
				c.Networks, c.NetworkMode, c.Published = map[string]netip.Addr{}, "host", map[int]HostBinding{8080: {Port: 8080}}
			})},
			want: []Registration{wantReg(web, 8080, "web", at("10.99.0.11", 8080, AddressHost, "auto: not on the drover network; port 8080 published as 8080"))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := place
			p.Mode = tt.mode
			got, problems := Place(p, tt.cs)
			if diff := cmp.Diff(tt.want, got, labelsCmp, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("registrations (-want +got):\n%s", diff)
			}
			if diff := diffProblems(tt.problems, problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("host address unknown", func(t *testing.T) {
		_, problems := Place(Placement{Node: testNode, Network: testNetwork}, []Container{bridged(ctr("SERVICE_NAME", "web"), 18080, 8080)})
		if diff := diffProblems([]Problem{prob(web, 8080, "the host's address is not known yet (set --advertise-addr)")}, problems); diff != "" {
			t.Error(diff)
		}
	})
}

func TestRegistratorKeys(t *testing.T) {
	place := Placement{Node: testNode, Network: testNetwork, HostAddr: hostAddr}
	web := ctr()
	two := withExposed(ctr(), 80, 443)
	ck := func(f func(*Check)) func(*Registration) {
		return func(r *Registration) { f(&r.Check) }
	}
	tests := []struct {
		name     string
		cs       []Container
		want     []Registration
		problems []Problem
	}{
		{
			name: "several ports, SERVICE_NAME: every port a service named <name>-<port>, as registrator does",
			cs:   []Container{withEnv(withExposed(ctr(), 80, 443), "SERVICE_NAME", "shop", "SERVICE_TAGS", "www")},
			want: []Registration{wantReg(two, 443, "shop-443", tags("www")), wantReg(two, 80, "shop-80", tags("www"))},
		},
		{
			name: "several ports, SERVICE_443_NAME names one; the other keeps <name>-<port>",
			cs:   []Container{withEnv(withExposed(ctr(), 80, 443), "SERVICE_NAME", "shop", "SERVICE_CHECK_TCP", "true", "SERVICE_443_TAGS", "tls")},
			want: []Registration{wantReg(two, 443, "shop-443", tags("tls")), wantReg(two, 80, "shop-80")},
		},
		{
			name: "per-port tags over the container's",
			cs:   []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_TAGS", "a", "SERVICE_8080_TAGS", "b,c")},
			want: []Registration{wantReg(web, 8080, "web", tags("b", "c"))},
		},
		{
			name: "attributes become meta, per-port over the container's, lower-cased",
			cs:   []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_REGION", "eu", "SERVICE_8080_REGION", "us2", "SERVICE_SNI", "enabled")},
			want: []Registration{wantReg(web, 8080, "web", meta("region", "us2", "sni", "enabled"))},
		},
		{
			name: "an attribute spelling a key drover writes: ignored with a warning",
			cs:   []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_IMAGE", "x", "SERVICE_LB_MODE", "http")},
			want: []Registration{wantReg(web, 8080, "web", warn(
				`env SERVICE_IMAGE: meta key "image" is drover's own; ignored`,
				"env SERVICE_LB_MODE: meta key \""+contract.KeyLBMode+"\" is drover's own; ignored"))},
		},
		{
			name: "SERVICE_ID: the service ID, marked as drover's own",
			cs:   []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_ID", "web.12345")},
			want: []Registration{wantReg(web, 8080, "web", func(r *Registration) { r.ID = "web.12345"; r.Meta[MetaOwnID] = "true" })},
		},
		{
			name:     "SERVICE_ID on several ports: one ID cannot name two services",
			cs:       []Container{withEnv(withExposed(ctr(), 80, 443), "SERVICE_NAME", "shop", "SERVICE_ID", "shop-1")},
			problems: []Problem{prob(two, 0, "env SERVICE_ID names one service, but the container registers several ports: set SERVICE_<port>_ID")},
		},
		{
			name:     "SERVICE_ID in drover's ID space is refused",
			cs:       []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_ID", "drover:h2:abc:80")},
			problems: []Problem{prob(web, 0, `env SERVICE_ID "drover:h2:abc:80": want 1 to 128 letters`)},
		},
		{
			name: "two containers asking for one SERVICE_ID: the first by container ID is registered",
			cs: []Container{
				named(withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_ID", "same"), "b", "bbbbbbbbbbbb0002"),
				named(withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_ID", "same"), "a", "aaaaaaaaaaaa0001"),
			},
			want:     []Registration{wantReg(named(ctr(), "a", "aaaaaaaaaaaa0001"), 8080, "web", func(r *Registration) { r.ID = "same"; r.Meta[MetaOwnID] = "true" })},
			problems: []Problem{prob(named(ctr(), "b", "bbbbbbbbbbbb0002"), 8080, `service ID "same" is also asked for by container a`)},
		},
		{
			name: "SERVICE_<port>_IGNORE skips that port only",
			cs:   []Container{withEnv(withExposed(ctr(), 80, 443), "SERVICE_NAME", "shop", "SERVICE_443_IGNORE", "true")},
			want: []Registration{wantReg(two, 80, "shop-80")},
		},
		{
			name: "HTTPS check with a method and skip-verify",
			cs:   []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_CHECK_HTTPS", "/health", "SERVICE_CHECK_HTTPS_METHOD", "HEAD", "SERVICE_CHECK_TLS_SKIP_VERIFY", "true")},
			want: []Registration{wantReg(web, 8080, "web", ck(func(c *Check) { c.Kind, c.Path, c.Method, c.TLSSkipVerify = "https", "/health", "HEAD", true }))},
		},
		{
			name: "TTL check, initial status and deregister-after",
			cs: []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_CHECK_TTL", "30s", "SERVICE_CHECK_INITIAL_STATUS", "passing",
				"SERVICE_CHECK_DEREGISTER_AFTER", "10m")},
			want: []Registration{wantReg(web, 8080, "web", ck(func(c *Check) {
				c.Kind, c.TTL, c.InitialStatus, c.DeregisterAfter = "ttl", 30*time.Second, "passing", 10*time.Minute
			}))},
		},
		{
			name: "gRPC check with TLS",
			cs:   []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_CHECK_GRPC", "true", "SERVICE_CHECK_GRPC_USE_TLS", "true", "SERVICE_CHECK_INTERVAL", "10s")},
			want: []Registration{wantReg(web, 8080, "web", ck(func(c *Check) { c.Kind, c.GRPCUseTLS, c.Interval = "grpc", true, 10*time.Second }))},
		},
		{
			name: "per-port check keys: SERVICE_80_CHECK_HTTP for one port",
			cs:   []Container{withEnv(withExposed(ctr(), 80, 443), "SERVICE_NAME", "shop", "SERVICE_80_CHECK_HTTP", "/ping", "SERVICE_80_CHECK_HTTP_METHOD", "HEAD")},
			want: []Registration{wantReg(two, 443, "shop-443"), wantReg(two, 80, "shop-80", ck(func(c *Check) { c.Kind, c.Path, c.Method = "http", "/ping", "HEAD" }))},
		},
		{
			name: "a script check alone: registered with the default check, a warning says why",
			cs:   []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_CHECK_SCRIPT", "nc $SERVICE_IP $SERVICE_PORT")},
			want: []Registration{wantReg(web, 8080, "web", warn("env SERVICE_CHECK_SCRIPT: not run, drover never runs commands from labels; the service is registered with the TCP check instead"))},
		},
		{
			name: "an unknown check key: registered, a warning names it",
			cs:   []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_CHECK_DOCKER", "true")},
			want: []Registration{wantReg(web, 8080, "web", warn("env SERVICE_CHECK_DOCKER: not a check setting drover knows; ignored"))},
		},
		{
			name:     "bad registrator check values",
			cs:       []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_CHECK_TTL", "forever", "SERVICE_CHECK_INITIAL_STATUS", "ok")},
			problems: []Problem{prob(web, 0, `env SERVICE_CHECK_INITIAL_STATUS "ok": want passing, warning or critical`), prob(web, 0, `env SERVICE_CHECK_TTL "forever": want a duration between 1s and 24h`)},
		},
		{
			name:     "a per-port bad value skips that port only",
			cs:       []Container{withEnv(withExposed(ctr(), 80, 443), "SERVICE_NAME", "shop", "SERVICE_443_CHECK_HTTP_METHOD", "get it", "SERVICE_443_CHECK_HTTP", "/")},
			want:     []Registration{wantReg(two, 80, "shop-80")},
			problems: []Problem{prob(two, 443, `SERVICE_443_CHECK_HTTP_METHOD "get it": want an HTTP method`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := Place(place, tt.cs)
			if diff := cmp.Diff(tt.want, got, labelsCmp, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("registrations (-want +got):\n%s", diff)
			}
			if diff := diffProblems(tt.problems, problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestContainerFromInspectPublished(t *testing.T) {
	r := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: "abc", Name: "/web", State: &container.State{Running: true},
			HostConfig: &container.HostConfig{NetworkMode: "default"}},
		Config: &container.Config{Image: "web", ExposedPorts: nat.PortSet{"80/tcp": {}, "53/udp": {}, "443/tcp": {}, "9000/tcp": {}}},
		NetworkSettings: &container.NetworkSettings{NetworkSettingsBase: container.NetworkSettingsBase{Ports: nat.PortMap{
			"80/tcp":   {{HostIP: "0.0.0.0", HostPort: "8080"}, {HostIP: "::", HostPort: "8080"}},
			"443/tcp":  {{HostIP: "10.99.0.50", HostPort: "8443"}},
			"53/udp":   {{HostIP: "0.0.0.0", HostPort: "5353"}},
			"9000/tcp": nil, // exposed, not published
		}}},
	}
	c := ContainerFromInspect(r)
	want := map[int]HostBinding{80: {Port: 8080}, 443: {IP: netip.MustParseAddr("10.99.0.50"), Port: 8443}}
	if diff := cmp.Diff(want, c.Published, labelsCmp); diff != "" || c.NetworkMode != "default" {
		t.Errorf("published (-want +got):\n%s\nnetwork mode %q", diff, c.NetworkMode)
	}
	r.HostConfig.NetworkMode = "host"
	r.NetworkSettings = nil
	c = ContainerFromInspect(r)
	want = map[int]HostBinding{80: {Port: 80}, 443: {Port: 443}, 9000: {Port: 9000}}
	if diff := cmp.Diff(want, c.Published, labelsCmp); diff != "" {
		t.Errorf("--net=host: published (-want +got):\n%s", diff)
	}
}

// TestRegisterAll: --register all takes every running container, as
// registrator does by default: published ports at the host's address, named
// after the image; one with nothing published is skipped without a
// problem, and a labelled one keeps its problems.
func TestRegisterAll(t *testing.T) {
	place := Placement{Node: testNode, Network: testNetwork, HostAddr: hostAddr, All: true}
	plain := named(bridged(ctr(), 18080, 8080, 18443, 8443), "plain", "aaaaaaaaaaaa0001")
	quiet := named(bridged(ctr()), "quiet", "bbbbbbbbbbbb0002")
	bad := named(bridged(ctr("SERVICE_NAME", "Bad")), "bad", "cccccccccccc0003")
	got, problems := Place(place, []Container{plain, quiet, bad})
	want := []Registration{
		wantReg(plain, 8080, "web-8080", at("10.99.0.11", 18080, AddressHost, "auto: not on the drover network; port 8080 published as 18080")),
		wantReg(plain, 8443, "web-8443", at("10.99.0.11", 18443, AddressHost, "auto: not on the drover network; port 8443 published as 18443")),
	}
	for i := range want {
		want[i].ContainerPort = []int{8080, 8443}[i]
	}
	if diff := cmp.Diff(want, got, labelsCmp, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("registrations (-want +got):\n%s", diff)
	}
	if diff := diffProblems([]Problem{prob(bad, 0, `SERVICE_NAME "Bad": want a name`), prob(bad, 0, "not attached to the drover network, and no port is published")}, problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if got, _ := Place(Placement{Node: testNode, Network: testNetwork, HostAddr: hostAddr}, []Container{plain}); len(got) != 0 {
		t.Errorf("without All an unlabelled container was registered: %v", got)
	}
}
