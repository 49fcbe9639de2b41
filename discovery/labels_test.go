package discovery

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/drover-net/drover/discovery/contract"
)

var labelsCmp = cmpopts.EquateComparable(netip.Addr{})

const (
	testNode    = "h1"
	testNetwork = "drover"
)

// ctr is a running container "web" on the drover network exposing 8080,
// with the given labels (key, value, key, value, …).
func ctr(kv ...string) Container {
	c := Container{
		ID:       "0123456789abcdef0123456789abcdef",
		Name:     "web",
		Image:    "registry.io:5000/team/web:1.2",
		Labels:   map[string]string{},
		Env:      map[string]string{},
		Running:  true,
		Networks: map[string]netip.Addr{testNetwork: netip.MustParseAddr("10.42.1.5")},
		Exposed:  []int{8080},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Labels[kv[i]] = kv[i+1]
	}
	return c
}

// with returns c changed by f.
func with(c Container, f func(*Container)) Container {
	f(&c)
	return c
}

func withEnv(c Container, kv ...string) Container {
	for i := 0; i+1 < len(kv); i += 2 {
		c.Env[kv[i]] = kv[i+1]
	}
	return c
}

func withExposed(c Container, ports ...int) Container {
	c.Exposed = ports
	return c
}

// named returns c with another name and id (ids differ in their first 12
// characters).
func named(c Container, name, id string) Container {
	c.Name, c.ID = name, id
	return c
}

// wantReg is the registration of c's port with default settings.
func wantReg(c Container, port int, name string, mods ...func(*Registration)) Registration {
	r := Registration{
		ID:            ServiceID(testNode, c.ID, port),
		Name:          name,
		Address:       c.Networks[testNetwork],
		Port:          port,
		ContainerPort: port,
		AddressMode:   AddressOverlay,
		AddressWhy:    "on the " + testNetwork + " network",
		Meta: map[string]string{
			"drover_node":    testNode,
			"address_mode":   "overlay",
			"container_id":   c.ID,
			"container_name": c.Name,
			"image":          c.Image,
		},
		Check:        DefaultCheck,
		DockerHealth: c.Health != "",
		DockerStatus: c.Health,
	}
	for _, m := range mods {
		m(&r)
	}
	return r
}

func warn(w ...string) func(*Registration) { return func(r *Registration) { r.Warnings = w } }

func tags(t ...string) func(*Registration) { return func(r *Registration) { r.Tags = t } }

func meta(kv ...string) func(*Registration) {
	return func(r *Registration) {
		for i := 0; i+1 < len(kv); i += 2 {
			r.Meta[kv[i]] = kv[i+1]
		}
	}
}

// defaultCheckMeta is the check part of the contract for DefaultCheck.
var defaultCheckMeta = []string{contract.KeyCheckKind, "tcp", contract.KeyCheckInterval, "5s", contract.KeyCheckTimeout, "2s",
	contract.KeyCheckRise, "1", contract.KeyCheckFall, "3"}

func withCheck(ck Check) func(*Registration) { return func(r *Registration) { r.Check = ck } }

// prob is a Problem of c whose Reason contains reason.
func prob(c Container, port int, reason string) Problem {
	return Problem{ContainerID: c.ID, ContainerName: c.Name, Port: port, Reason: reason}
}

// diffProblems compares problems, want's Reasons being substrings of got's.
func diffProblems(want, got []Problem) string {
	g := append([]Problem(nil), got...)
	for i := range g {
		if i < len(want) && strings.Contains(g[i].Reason, want[i].Reason) {
			g[i].Reason = want[i].Reason
		}
	}
	return cmp.Diff(want, g, cmpopts.EquateEmpty())
}

func TestRegistrations(t *testing.T) {
	web := ctr("drover.service", "web")
	twoPorts := withExposed(ctr("drover.8080.service", "web", "drover.9090.service", "admin"), 8080, 9090, 9999)
	longName := strings.Repeat("a", 64)
	longHost := strings.Repeat(strings.Repeat("a", 63)+".", 4)[:254]

	tests := []struct {
		name     string
		cs       []Container
		want     []Registration
		problems []Problem
	}{
		// Defaults and selection of containers.
		{
			name: "drover.service alone: the only exposed port, default check, overlay address, meta",
			cs:   []Container{web},
			want: []Registration{wantReg(web, 8080, "web")},
		},
		{
			name: "not running: nothing",
			cs:   []Container{with(web, func(c *Container) { c.Running = false })},
		},
		{
			name: "unlabelled: nothing, no problem",
			cs: []Container{withEnv(ctr("com.example.team", "core", "droverservice", "x"),
				"SERVICE_REGION", "eu", "SERVICE_8080_ID", "x")},
		},
		{
			name: "no labels at all on several ports: nothing, no problem",
			cs:   []Container{withExposed(ctr(), 80, 443)},
		},
		// Issue 12, defect 16: values beyond Consul's meta limits used to be
		// registered, refused by Consul on every pass.
		{
			name:     "a 601-byte drover.lb.path is refused once with the reason",
			cs:       []Container{ctr("drover.service", "web", "drover.lb.mode", "http", "drover.lb.path", "/"+strings.Repeat("p", 600))},
			problems: []Problem{prob(ctr("drover.service", "web", "drover.lb.mode", "http", "drover.lb.path", "/"+strings.Repeat("p", 600)), 8080, "meta lb_path is 601 bytes")},
		},
		{
			name:     "a 601-character container name is refused once with the reason",
			cs:       []Container{with(web, func(c *Container) { c.Name = strings.Repeat("n", 601) })},
			problems: []Problem{prob(with(web, func(c *Container) { c.Name = strings.Repeat("n", 601) }), 8080, "meta container_name is 601 bytes")},
		},
		{
			name: "docker healthcheck is bridged",
			cs:   []Container{with(web, func(c *Container) { c.Health = "starting" })},
			want: []Registration{wantReg(with(web, func(c *Container) { c.Health = "starting" }), 8080, "web")},
		},
		{
			name:     "not on the network: problem for the whole container",
			cs:       []Container{with(web, func(c *Container) { c.Networks = map[string]netip.Addr{"bridge": netip.MustParseAddr("172.17.0.2")} })},
			problems: []Problem{prob(web, 0, "not attached to the drover network")},
		},

		// Ignore.
		{
			name: "drover.ignore=true: nothing, even with bad labels",
			cs:   []Container{ctr("drover.ignore", "true", "drover.port", "0", "drover.typo", "x")},
		},
		{
			name: "drover.ignore=false registers",
			cs:   []Container{ctr("drover.ignore", "false")},
			want: []Registration{wantReg(web, 8080, "web")},
		},
		{
			name:     "drover.ignore with another value",
			cs:       []Container{ctr("drover.ignore", "yes")},
			problems: []Problem{prob(web, 0, `drover.ignore "yes": want true or false`)},
		},
		{
			name: "SERVICE_IGNORE=1 in the environment",
			cs:   []Container{withEnv(ctr(), "SERVICE_IGNORE", "1")},
		},
		{
			name: "SERVICE_IGNORE=true label",
			cs:   []Container{ctr("SERVICE_IGNORE", "true", "drover.service", "web")},
		},
		{
			name: "drover.ignore=false wins over SERVICE_IGNORE=true",
			cs:   []Container{withEnv(ctr("drover.ignore", "false"), "SERVICE_IGNORE", "true")},
			want: []Registration{wantReg(web, 8080, "web")},
		},
		{
			name:     "SERVICE_IGNORE with another value",
			cs:       []Container{withEnv(ctr(), "SERVICE_IGNORE", "maybe")},
			problems: []Problem{prob(web, 0, `env SERVICE_IGNORE "maybe": want true, 1, false or 0`)},
		},

		// Ports.
		{
			name: "drover.port picks one of several exposed ports",
			cs:   []Container{withExposed(ctr("drover.port", "9090"), 8080, 9090)},
			want: []Registration{wantReg(web, 9090, "web")},
		},
		{
			name:     "drover.port out of range",
			cs:       []Container{ctr("drover.port", "0")},
			problems: []Problem{prob(web, 0, `drover.port "0": want a port between 1 and 65535`)},
		},
		{
			name:     "drover.port not a number",
			cs:       []Container{ctr("drover.port", "http")},
			problems: []Problem{prob(web, 0, `drover.port "http": want a port between 1 and 65535`)},
		},
		{
			name:     "drover.port with a leading zero",
			cs:       []Container{ctr("drover.port", "08080")},
			problems: []Problem{prob(web, 0, `drover.port "08080": want a port`)},
		},
		{
			name:     "several exposed ports and no drover.port",
			cs:       []Container{withExposed(ctr("drover.service", "web"), 80, 443)},
			problems: []Problem{prob(web, 0, "several (or no) exposed ports: set drover.port (exposed: 80, 443)")},
		},
		{
			name:     "no exposed port and no drover.port",
			cs:       []Container{withExposed(ctr("drover.service", "web"))},
			problems: []Problem{prob(web, 0, "several (or no) exposed ports: set drover.port (exposed: none)")},
		},
		{
			name: "per-port keys select exactly those ports, each with its own name",
			cs:   []Container{twoPorts},
			want: []Registration{wantReg(twoPorts, 8080, "web"), wantReg(twoPorts, 9090, "admin")},
		},
		{
			name: "registrator's keys only: every exposed port is a service, SERVICE_<port>_NAME names one, the rest <image>-<port>",
			cs:   []Container{withEnv(withExposed(ctr(), 80, 443, 8443), "SERVICE_80_NAME", "web", "SERVICE_443_NAME", "web-tls")},
			want: []Registration{wantReg(web, 443, "web-tls"), wantReg(web, 80, "web"), wantReg(web, 8443, "web-8443")},
		},
		{
			name:     "drover.port with labels for another port: that port is reported, drover.port registered",
			cs:       []Container{withEnv(ctr("drover.port", "8080", "drover.9090.service", "admin"), "SERVICE_9090_NAME", "adm")},
			want:     []Registration{wantReg(web, 8080, "web")},
			problems: []Problem{prob(web, 9090, "drover.9090.service, env SERVICE_9090_NAME: unused, drover.port selects port 8080 only")},
		},
		{
			name: "drover.port with its own per-port labels",
			cs:   []Container{withExposed(ctr("drover.port", "9090", "drover.9090.tags", "admin"), 8080, 9090)},
			want: []Registration{wantReg(web, 9090, "web", tags("admin"))},
		},
		{
			name:     "per-port key with a port out of range",
			cs:       []Container{ctr("drover.70000.service", "web")},
			problems: []Problem{prob(web, 0, "label drover.70000.service: want drover.<port>.<key> with a port between 1 and 65535")},
		},
		{
			name:     "SERVICE_<port>_NAME with a port out of range",
			cs:       []Container{ctr("SERVICE_0_NAME", "web")},
			problems: []Problem{prob(web, 0, "SERVICE_0_NAME: want SERVICE_<port>_<key> with a port between 1 and 65535")},
		},

		// Names.
		{
			name: "name from the image: registry, path and tag dropped",
			cs:   []Container{ctr("drover.tags", "v1")},
			want: []Registration{wantReg(web, 8080, "web", tags("v1"))},
		},
		{
			name: "name from the image: tag latest",
			cs:   []Container{with(ctr("drover.tags", "v1"), func(c *Container) { c.Image = "drover-demo:latest" })},
			want: []Registration{wantReg(with(web, func(c *Container) { c.Image = "drover-demo:latest" }), 8080, "drover-demo", tags("v1"))},
		},
		{
			name: "name from the image: digest dropped, lower-cased",
			cs:   []Container{with(ctr("drover.tags", "v1"), func(c *Container) { c.Image = "Team/API@sha256:0123abcd" })},
			want: []Registration{wantReg(with(web, func(c *Container) { c.Image = "Team/API@sha256:0123abcd" }), 8080, "api", tags("v1"))},
		},
		{
			name:     "name from the image that is not a valid name",
			cs:       []Container{with(ctr("drover.tags", "v1"), func(c *Container) { c.Image = "my_app:1" })},
			problems: []Problem{prob(web, 0, `image name "my_app" is not a valid service name`)},
		},
		{
			name:     "image given by id has no name",
			cs:       []Container{with(ctr("drover.tags", "v1"), func(c *Container) { c.Image = "sha256:0123abcd" })},
			problems: []Problem{prob(web, 0, `image "sha256:0123abcd" has no name: set drover.service`)},
		},
		{
			name: "name precedence: drover.<port>.service first",
			cs: []Container{withEnv(ctr("drover.8080.service", "a", "drover.service", "b", "SERVICE_8080_NAME", "c", "SERVICE_NAME", "d"),
				"SERVICE_NAME", "e")},
			want: []Registration{wantReg(web, 8080, "a")},
		},
		{
			name: "name precedence: drover.service over SERVICE_<port>_NAME",
			cs:   []Container{ctr("drover.service", "b", "SERVICE_8080_NAME", "c", "SERVICE_NAME", "d")},
			want: []Registration{wantReg(web, 8080, "b")},
		},
		{
			name: "name precedence: SERVICE_<port>_NAME over SERVICE_NAME",
			cs:   []Container{withEnv(ctr("SERVICE_NAME", "d"), "SERVICE_8080_NAME", "c")},
			want: []Registration{wantReg(web, 8080, "c")},
		},
		{
			name: "registrator label wins over the same environment variable",
			cs:   []Container{withEnv(ctr("SERVICE_NAME", "from-label"), "SERVICE_NAME", "from-env")},
			want: []Registration{wantReg(web, 8080, "from-label")},
		},
		{
			name:     "explicit drover.service that is not a valid name",
			cs:       []Container{ctr("drover.service", "Web_1")},
			problems: []Problem{prob(web, 0, `drover.service "Web_1": want a name of lower-case letters, digits and '-'`)},
		},
		{
			name:     "drover.service too long",
			cs:       []Container{ctr("drover.service", longName)},
			problems: []Problem{prob(web, 0, `drover.service "`+longName+`": want a name`)},
		},
		{
			name:     "drover.service ending with '-'",
			cs:       []Container{ctr("drover.service", "web-")},
			problems: []Problem{prob(web, 0, `drover.service "web-": want a name`)},
		},
		{
			name:     "SERVICE_NAME from the environment that is not a valid name",
			cs:       []Container{withEnv(ctr(), "SERVICE_NAME", "My.App")},
			problems: []Problem{prob(web, 0, `env SERVICE_NAME "My.App": want a name`)},
		},
		{
			name: "a bad SERVICE_NAME does not matter when drover.service wins",
			cs:   []Container{withEnv(ctr("drover.service", "web"), "SERVICE_NAME", "My.App")},
			want: []Registration{wantReg(web, 8080, "web")},
		},

		// Tags.
		{
			name: "tags trimmed, empty items dropped, sorted, deduplicated",
			cs:   []Container{ctr("drover.service", "web", "drover.tags", " v2, canary ,,v2,zone=eu/1,a.b:c-d_e ")},
			want: []Registration{wantReg(web, 8080, "web", tags("a.b:c-d_e", "canary", "v2", "zone=eu/1"))},
		},
		{
			name: "per-port tags override container tags",
			cs:   []Container{withExposed(ctr("drover.tags", "common", "drover.8080.service", "web", "drover.9090.tags", "admin,x"), 8080, 9090)},
			want: []Registration{wantReg(web, 8080, "web", tags("common")), wantReg(web, 9090, "web", tags("admin", "x"))},
		},
		{
			name: "drover.tags wins over SERVICE_TAGS",
			cs:   []Container{withEnv(ctr("drover.tags", "a"), "SERVICE_TAGS", "b")},
			want: []Registration{wantReg(web, 8080, "web", tags("a"))},
		},
		{
			name: "empty drover.tags overrides SERVICE_TAGS",
			cs:   []Container{withEnv(ctr("drover.tags", ""), "SERVICE_TAGS", "b")},
			want: []Registration{wantReg(web, 8080, "web")},
		},
		{
			name:     "tag with a space",
			cs:       []Container{ctr("drover.tags", "ok,bad tag")},
			problems: []Problem{prob(web, 0, `drover.tags "ok,bad tag": tag "bad tag": want comma-separated tags`)},
		},
		{
			name:     "tag too long in SERVICE_TAGS",
			cs:       []Container{ctr("SERVICE_TAGS", strings.Repeat("t", 65))},
			problems: []Problem{prob(web, 0, `SERVICE_TAGS "`+strings.Repeat("t", 65)+`": tag`)},
		},

		// Checks.
		{
			name: "http check; interval given: timeout is min(2s, interval/2)",
			cs:   []Container{ctr("drover.check", "http:/healthz?full=1", "drover.check.interval", "1s")},
			want: []Registration{wantReg(web, 8080, "web", withCheck(Check{Kind: "http", Path: "/healthz?full=1", Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 3}))},
		},
		{
			name: "long interval keeps the default timeout",
			cs:   []Container{ctr("drover.check.interval", "1m")},
			want: []Registration{wantReg(web, 8080, "web", withCheck(Check{Kind: "tcp", Interval: time.Minute, Timeout: 2 * time.Second, Rise: 1, Fall: 3}))},
		},
		{
			name: "timeout, rise and fall given",
			cs:   []Container{ctr("drover.check", "tcp", "drover.check.timeout", "4.5s", "drover.check.rise", "2", "drover.check.fall", "10")},
			want: []Registration{wantReg(web, 8080, "web", withCheck(Check{Kind: "tcp", Interval: 5 * time.Second, Timeout: 4500 * time.Millisecond, Rise: 2, Fall: 10}))},
		},
		{
			name: "check none",
			cs:   []Container{ctr("drover.check", "none")},
			want: []Registration{wantReg(web, 8080, "web", withCheck(Check{Kind: "none", Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 1, Fall: 3}))},
		},
		{
			name: "per-port check keys override container ones",
			cs: []Container{withExposed(ctr("drover.8080.service", "web", "drover.9090.check", "http:/admin/health",
				"drover.check.interval", "10s", "drover.9090.check.interval", "3s", "drover.check.fall", "5", "drover.9090.check.rise", "3"), 8080, 9090)},
			want: []Registration{
				wantReg(web, 8080, "web", withCheck(Check{Kind: "tcp", Interval: 10 * time.Second, Timeout: 2 * time.Second, Rise: 1, Fall: 5})),
				wantReg(web, 9090, "web", withCheck(Check{Kind: "http", Path: "/admin/health", Interval: 3 * time.Second, Timeout: 1500 * time.Millisecond, Rise: 3, Fall: 5})),
			},
		},
		{
			name: "registrator check from the environment",
			cs: []Container{withEnv(ctr(), "SERVICE_NAME", "web", "SERVICE_TAGS", "b,a", "SERVICE_CHECK_HTTP", "/ping",
				"SERVICE_CHECK_INTERVAL", "15s", "SERVICE_CHECK_TIMEOUT", "3s")},
			want: []Registration{wantReg(web, 8080, "web", tags("a", "b"),
				withCheck(Check{Kind: "http", Path: "/ping", Interval: 15 * time.Second, Timeout: 3 * time.Second, Rise: 1, Fall: 3}))},
		},
		{
			name: "registrator check from labels",
			cs:   []Container{ctr("SERVICE_CHECK_TCP", "true", "SERVICE_CHECK_INTERVAL", "4s")},
			want: []Registration{wantReg(web, 8080, "web", withCheck(Check{Kind: "tcp", Interval: 4 * time.Second, Timeout: 2 * time.Second, Rise: 1, Fall: 3}))},
		},
		{
			name: "drover.check and drover.check.interval win over SERVICE_CHECK_*",
			cs: []Container{withEnv(ctr("drover.check", "none", "drover.check.interval", "2s"),
				"SERVICE_CHECK_HTTP", "/ping", "SERVICE_CHECK_INTERVAL", "15s")},
			want: []Registration{wantReg(web, 8080, "web", withCheck(Check{Kind: "none", Interval: 2 * time.Second, Timeout: time.Second, Rise: 1, Fall: 3}))},
		},
		{
			name:     "SERVICE_CHECK_HTTP without a leading slash",
			cs:       []Container{withEnv(ctr(), "SERVICE_CHECK_HTTP", "ping")},
			problems: []Problem{prob(web, 0, `env SERVICE_CHECK_HTTP "ping": want a path starting with "/"`)},
		},
		{
			name:     "SERVICE_CHECK_TCP with another value",
			cs:       []Container{withEnv(ctr(), "SERVICE_CHECK_TCP", "yes")},
			problems: []Problem{prob(web, 0, `env SERVICE_CHECK_TCP "yes": want true or false`)},
		},
		{
			name:     "drover.check http without path",
			cs:       []Container{ctr("drover.check", "http")},
			problems: []Problem{prob(web, 0, `drover.check "http": want http:/path, tcp or none`)},
		},
		{
			name:     "drover.check http path without a slash",
			cs:       []Container{ctr("drover.check", "http:healthz")},
			problems: []Problem{prob(web, 0, `drover.check "http:healthz": want http:/path with a path starting with "/" without spaces`)},
		},
		{
			name:     "drover.check http path with a space",
			cs:       []Container{ctr("drover.check", "http:/health z")},
			problems: []Problem{prob(web, 0, `drover.check "http:/health z": want http:/path`)},
		},
		{
			name:     "drover.check of an unknown kind",
			cs:       []Container{ctr("drover.check", "udp")},
			problems: []Problem{prob(web, 0, `drover.check "udp": want http:/path, tcp or none`)},
		},
		{
			name:     "drover.check script refused",
			cs:       []Container{ctr("drover.check", "script:/bin/true")},
			problems: []Problem{prob(web, 0, `drover.check "script:/bin/true": script checks are not supported`)},
		},
		{
			name: "SERVICE_CHECK_SCRIPT: registered with drover.check, the script not run, a warning",
			cs:   []Container{withEnv(ctr("drover.check", "tcp"), "SERVICE_CHECK_SCRIPT", "curl localhost")},
			want: []Registration{wantReg(web, 8080, "web", warn("env SERVICE_CHECK_SCRIPT: not run, drover never runs commands from labels; the service is registered with the TCP check instead"))},
		},
		{
			name: "SERVICE_CHECK_CMD label: registered with the default check and a warning",
			cs:   []Container{ctr("SERVICE_CHECK_CMD", "/bin/check")},
			want: []Registration{wantReg(web, 8080, "web", warn("SERVICE_CHECK_CMD: not run, drover never runs commands from labels; the service is registered with the TCP check instead"))},
		},
		{
			name:     "per-port script check skips only that port",
			cs:       []Container{withExposed(ctr("drover.8080.service", "web", "drover.9090.check", "script"), 8080, 9090)},
			want:     []Registration{wantReg(web, 8080, "web")},
			problems: []Problem{prob(web, 9090, `drover.9090.check "script": script checks are not supported`)},
		},
		{
			name:     "interval that is not a duration",
			cs:       []Container{ctr("drover.check.interval", "2x")},
			problems: []Problem{prob(web, 0, `drover.check.interval "2x": want a duration between 1s and 1h`)},
		},
		{
			name:     "interval too short",
			cs:       []Container{ctr("drover.check.interval", "500ms")},
			problems: []Problem{prob(web, 0, `drover.check.interval "500ms": want a duration between 1s and 1h`)},
		},
		{
			name:     "interval too long from SERVICE_CHECK_INTERVAL",
			cs:       []Container{withEnv(ctr(), "SERVICE_CHECK_INTERVAL", "2h")},
			problems: []Problem{prob(web, 0, `env SERVICE_CHECK_INTERVAL "2h": want a duration between 1s and 1h`)},
		},
		{
			name:     "timeout too short",
			cs:       []Container{ctr("drover.check.timeout", "50ms")},
			problems: []Problem{prob(web, 0, `drover.check.timeout "50ms": want a duration between 100ms and the check interval`)},
		},
		{
			name:     "timeout equal to the default interval",
			cs:       []Container{ctr("drover.check.timeout", "5s")},
			problems: []Problem{prob(web, 0, `drover.check.timeout "5s": want a duration between 100ms and the check interval (5s)`)},
		},
		{
			name:     "timeout longer than the given interval",
			cs:       []Container{ctr("drover.check.interval", "2s", "drover.check.timeout", "3s")},
			problems: []Problem{prob(web, 0, `drover.check.timeout "3s": want a duration between 100ms and the check interval (2s)`)},
		},
		{
			name: "a per-port interval shorter than the container timeout skips only that port",
			cs: []Container{withExposed(ctr("drover.8080.service", "web", "drover.check.timeout", "3s",
				"drover.9090.check.interval", "2s"), 8080, 9090)},
			want:     []Registration{wantReg(web, 8080, "web", withCheck(Check{Kind: "tcp", Interval: 5 * time.Second, Timeout: 3 * time.Second, Rise: 1, Fall: 3}))},
			problems: []Problem{prob(web, 9090, `drover.check.timeout "3s": want a duration between 100ms and the check interval (2s)`)},
		},
		{
			name:     "rise zero",
			cs:       []Container{ctr("drover.check.rise", "0")},
			problems: []Problem{prob(web, 0, `drover.check.rise "0": want an integer between 1 and 10`)},
		},
		{
			name:     "fall too large",
			cs:       []Container{ctr("drover.check.fall", "11")},
			problems: []Problem{prob(web, 0, `drover.check.fall "11": want an integer between 1 and 10`)},
		},
		{
			name:     "rise with a sign",
			cs:       []Container{ctr("drover.check.rise", "+2")},
			problems: []Problem{prob(web, 0, `drover.check.rise "+2": want an integer between 1 and 10`)},
		},

		// Load balancer settings.
		{
			name: "lb settings go into meta",
			cs: []Container{ctr("drover.lb.mode", "http", "drover.lb.port", "80", "drover.lb.host", "web.example",
				"drover.lb.path", "/api", "drover.lb.balance", "leastconn", "drover.weight", "0")},
			want: []Registration{wantReg(web, 8080, "web", meta(append(defaultCheckMeta, contract.KeyLBMode, "http", contract.KeyLBPort, "80", contract.KeyLBHost, "web.example",
				contract.KeyLBPath, "/api", contract.KeyLBBalance, "leastconn", contract.KeyWeight, "0")...))},
		},
		{
			name: "per-port lb settings override container ones",
			cs: []Container{withExposed(ctr("drover.lb.mode", "http", "drover.lb.host", "web.example", "drover.weight", "10",
				"drover.8080.service", "web", "drover.9090.lb.host", "admin.example", "drover.9090.lb.path", "/admin",
				"drover.9090.weight", "256", "drover.9090.lb.port", "8443"), 8080, 9090)},
			want: []Registration{
				wantReg(web, 8080, "web", meta(append(defaultCheckMeta, contract.KeyLBMode, "http", contract.KeyLBHost, "web.example", contract.KeyWeight, "10")...)),
				wantReg(web, 9090, "web", meta(append(defaultCheckMeta, contract.KeyLBMode, "http", contract.KeyLBHost, "admin.example", contract.KeyLBPath, "/admin", contract.KeyWeight, "256", contract.KeyLBPort, "8443")...)),
			},
		},
		{
			name: "tcp port next to an http one",
			cs: []Container{withExposed(ctr("drover.lb.balance", "source", "drover.8080.lb.host", "web.example",
				"drover.5432.lb.mode", "tcp", "drover.5432.lb.port", "5432", "drover.5432.service", "db"), 8080, 5432)},
			want: []Registration{
				wantReg(web, 5432, "db", meta(append(defaultCheckMeta, contract.KeyLBMode, "tcp", contract.KeyLBPort, "5432", contract.KeyLBBalance, "source", contract.KeyWeight, "100")...)),
				// Without drover.lb.mode the lb settings are checked but
				// not written: the port is not load-balanced.
				wantReg(web, 8080, "web"),
			},
		},
		{
			name:     "lb.mode not http or tcp",
			cs:       []Container{ctr("drover.lb.mode", "udp")},
			problems: []Problem{prob(web, 0, `drover.lb.mode "udp": want http or tcp`)},
		},
		{
			name:     "lb.port out of range",
			cs:       []Container{ctr("drover.lb.port", "70000")},
			problems: []Problem{prob(web, 0, `drover.lb.port "70000": want a port between 1 and 65535`)},
		},
		{
			name:     "lb.host with upper case",
			cs:       []Container{ctr("drover.lb.host", "Web.Example")},
			problems: []Problem{prob(web, 0, `drover.lb.host "Web.Example": want a lower-case DNS name`)},
		},
		{
			name:     "lb.host with a label starting with '-'",
			cs:       []Container{ctr("drover.lb.host", "-web.example")},
			problems: []Problem{prob(web, 0, `drover.lb.host "-web.example": want a lower-case DNS name`)},
		},
		{
			name:     "lb.host with an empty label",
			cs:       []Container{ctr("drover.lb.host", "web..example")},
			problems: []Problem{prob(web, 0, `drover.lb.host "web..example": want a lower-case DNS name`)},
		},
		{
			name:     "lb.host too long",
			cs:       []Container{ctr("drover.lb.host", longHost)},
			problems: []Problem{prob(web, 0, `drover.lb.host "`+longHost+`": want a lower-case DNS name`)},
		},
		{
			name:     "lb.path without a slash",
			cs:       []Container{ctr("drover.lb.path", "api")},
			problems: []Problem{prob(web, 0, `drover.lb.path "api": want a path starting with "/" without spaces`)},
		},
		{
			name:     "lb.path with a space",
			cs:       []Container{ctr("drover.lb.path", "/my api")},
			problems: []Problem{prob(web, 0, `drover.lb.path "/my api": want a path`)},
		},
		{
			name:     "lb.balance unknown",
			cs:       []Container{ctr("drover.lb.balance", "random")},
			problems: []Problem{prob(web, 0, `drover.lb.balance "random": want roundrobin, leastconn or source`)},
		},
		{
			name:     "weight too large",
			cs:       []Container{ctr("drover.weight", "257")},
			problems: []Problem{prob(web, 0, `drover.weight "257": want an integer between 0 and 256`)},
		},
		{
			name:     "weight negative",
			cs:       []Container{ctr("drover.weight", "-1")},
			problems: []Problem{prob(web, 0, `drover.weight "-1": want an integer between 0 and 256`)},
		},
		{
			name:     "lb.host with lb.mode tcp",
			cs:       []Container{ctr("drover.lb.mode", "tcp", "drover.lb.host", "web.example")},
			problems: []Problem{prob(web, 0, `drover.lb.host "web.example": want drover.lb.mode http, but drover.lb.mode is "tcp"`)},
		},
		{
			name: "lb.path with a per-port lb.mode tcp skips only that port",
			cs: []Container{withExposed(ctr("drover.lb.path", "/api", "drover.8080.service", "web", "drover.9090.lb.mode", "tcp"),
				8080, 9090)},
			want:     []Registration{wantReg(web, 8080, "web")},
			problems: []Problem{prob(web, 9090, `drover.lb.path "/api": want drover.lb.mode http, but drover.9090.lb.mode is "tcp"`)},
		},

		// Unknown labels.
		{
			name:     "unknown label",
			cs:       []Container{ctr("drover.service", "web", "drover.chek", "http:/")},
			problems: []Problem{prob(web, 0, "unknown label drover.chek")},
		},
		{
			name:     "unknown dotted label",
			cs:       []Container{ctr("drover.check.intervall", "2s")},
			problems: []Problem{prob(web, 0, "unknown label drover.check.intervall")},
		},
		{
			name:     "every unknown label is reported",
			cs:       []Container{ctr("drover.a", "1", "drover.lb.hots", "x")},
			problems: []Problem{prob(web, 0, "unknown label drover.a"), prob(web, 0, "unknown label drover.lb.hots")},
		},
		{
			name:     "unknown per-port key skips only that port",
			cs:       []Container{withExposed(ctr("drover.8080.service", "web", "drover.9090.servce", "admin"), 8080, 9090)},
			want:     []Registration{wantReg(web, 8080, "web")},
			problems: []Problem{prob(web, 9090, "unknown label drover.9090.servce")},
		},
		{
			name:     "drover.port and drover.ignore are not per-port keys",
			cs:       []Container{ctr("drover.8080.port", "80", "drover.8080.ignore", "true")},
			problems: []Problem{prob(web, 8080, "unknown label drover.8080.ignore"), prob(web, 8080, "unknown label drover.8080.port")},
		},

		// Scope of problems.
		{
			name:     "a bad per-port value skips only that port",
			cs:       []Container{withExposed(ctr("drover.8080.service", "web", "drover.9090.check.interval", "2x"), 8080, 9090)},
			want:     []Registration{wantReg(web, 8080, "web")},
			problems: []Problem{prob(web, 9090, `drover.9090.check.interval "2x": want a duration between 1s and 1h`)},
		},
		{
			name: "a bad container-wide value skips every port, even where a per-port label overrides it",
			cs: []Container{withExposed(ctr("drover.8080.service", "web", "drover.9090.service", "admin",
				"drover.service", "Bad", "drover.tags", "a b"), 8080, 9090)},
			problems: []Problem{prob(web, 0, `drover.service "Bad"`), prob(web, 0, `drover.tags "a b"`)},
		},
		{
			name: "container and per-port problems are reported together",
			cs: []Container{withExposed(with(ctr("drover.8080.service", "web", "drover.9090.weight", "x"), func(c *Container) { c.Networks = nil }),
				8080, 9090)},
			problems: []Problem{prob(web, 0, "not attached to the drover network"), prob(web, 9090, `drover.9090.weight "x": want an integer`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := Registrations(testNode, testNetwork, tt.cs)
			if diff := cmp.Diff(tt.want, got, labelsCmp, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("registrations (-want +got):\n%s", diff)
			}
			if diff := diffProblems(tt.problems, problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRegistrationsIsolation: one bad container does not affect a good one
// in the same call.
func TestRegistrationsIsolation(t *testing.T) {
	good := named(ctr("drover.service", "web", "drover.tags", "v1"), "good", "aaaaaaaaaaaa0001")
	badLabel := named(ctr("drover.service", "web", "drover.check.interval", "2x"), "bad-label", "bbbbbbbbbbbb0002")
	offNet := named(with(ctr("drover.service", "web"), func(c *Container) { c.Networks = nil }), "off-net", "cccccccccccc0003")
	several := named(withExposed(ctr("drover.service", "web"), 80, 443), "several", "dddddddddddd0004")
	ignored := named(ctr("drover.ignore", "true"), "ignored", "eeeeeeeeeeee0005")

	got, problems := Registrations(testNode, testNetwork, []Container{badLabel, good, offNet, several, ignored})
	want := []Registration{wantReg(good, 8080, "web", tags("v1"))}
	if diff := cmp.Diff(want, got, labelsCmp); diff != "" {
		t.Errorf("registrations (-want +got):\n%s", diff)
	}
	wantProblems := []Problem{
		prob(badLabel, 0, `drover.check.interval "2x"`),
		prob(offNet, 0, "not attached to the drover network"),
		prob(several, 0, "several (or no) exposed ports"),
	}
	if diff := diffProblems(wantProblems, problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestRegistrationsDeterministic: the output does not depend on the order of
// the containers, nor on map iteration; registrations come sorted by ID,
// problems by container name then port.
func TestRegistrationsDeterministic(t *testing.T) {
	a := named(withExposed(ctr("drover.80.service", "a", "drover.443.service", "a-tls", "drover.9.tags", "x", "drover.9.weight", "1000"), 80, 443), "zeta", "aaaaaaaaaaaa0001")
	b := named(ctr("drover.service", "b"), "alpha", "bbbbbbbbbbbb0002")
	c := named(withExposed(ctr("drover.service", "c", "drover.x", "1", "drover.y", "2"), 1, 2), "beta", "cccccccccccc0003")
	d := named(withEnv(withExposed(ctr(), 20, 3000), "SERVICE_3000_NAME", "d", "SERVICE_20_NAME", "d2", "SERVICE_20_TAGS", "t20"), "gamma", "dddddddddddd0004")
	e := named(ctr("drover.service", "e", "drover.lb.mode", "tcp", "drover.lb.path", "/x", "drover.lb.host", "e.example"), "alpha", "000000000000ffff")

	wantRegs := []Registration{
		wantReg(a, 443, "a-tls"),
		wantReg(a, 80, "a"),
		wantReg(b, 8080, "b"),
		wantReg(d, 20, "d2", tags("t20")),
		wantReg(d, 3000, "d"),
	}
	wantProblems := []Problem{
		prob(e, 0, `drover.lb.host "e.example": want drover.lb.mode http`),
		prob(e, 0, `drover.lb.path "/x": want drover.lb.mode http`),
		prob(c, 0, "several (or no) exposed ports: set drover.port (exposed: 1, 2)"),
		prob(c, 0, "unknown label drover.x"),
		prob(c, 0, "unknown label drover.y"),
		prob(a, 9, `drover.9.weight "1000": want an integer between 0 and 256`),
	}
	orders := [][]Container{
		{a, b, c, d, e},
		{e, d, c, b, a},
		{c, e, a, d, b},
		{b, a, e, c, d},
	}
	for i, cs := range orders {
		for run := 0; run < 5; run++ {
			got, problems := Registrations(testNode, testNetwork, cs)
			if diff := cmp.Diff(wantRegs, got, labelsCmp); diff != "" {
				t.Errorf("order %d run %d: registrations (-want +got):\n%s", i, run, diff)
			}
			if diff := diffProblems(wantProblems, problems); diff != "" {
				t.Errorf("order %d run %d: problems (-want +got):\n%s", i, run, diff)
			}
		}
	}
}

func TestRegistrationsEmpty(t *testing.T) {
	got, problems := Registrations(testNode, testNetwork, nil)
	if got != nil || problems != nil {
		t.Errorf("Registrations(nil) = %v, %v; want nil, nil", got, problems)
	}
}

func TestServiceID(t *testing.T) {
	tests := []struct {
		name, node, id string
		port           int
		want           string
	}{
		{"long id is cut to 12", "h1", "0123456789abcdef0123", 8080, "drover:h1:0123456789ab:8080"},
		{"12-char id kept", "node-2", "0123456789ab", 80, "drover:node-2:0123456789ab:80"},
		{"short id kept", "h1", "abc", 1, "drover:h1:abc:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ServiceID(tt.node, tt.id, tt.port); got != tt.want {
				t.Errorf("ServiceID(%q, %q, %d) = %q, want %q", tt.node, tt.id, tt.port, got, tt.want)
			}
		})
	}
}

// TestRegistrationsDoesNotChangeInput: the containers given are not modified.
func TestRegistrationsDoesNotChangeInput(t *testing.T) {
	c := withEnv(withExposed(ctr("drover.8080.tags", "b,a", "drover.check", "http:/h"), 9090, 8080), "SERVICE_NAME", "web")
	before := with(c, func(c *Container) {
		c.Labels = map[string]string{}
		for k, v := range ctr("drover.8080.tags", "b,a", "drover.check", "http:/h").Labels {
			c.Labels[k] = v
		}
		c.Env = map[string]string{"SERVICE_NAME": "web"}
		c.Exposed = []int{9090, 8080}
	})
	Registrations(testNode, testNetwork, []Container{c})
	if diff := cmp.Diff(before, c, labelsCmp); diff != "" {
		t.Errorf("container changed (-before +after):\n%s", diff)
	}
}
