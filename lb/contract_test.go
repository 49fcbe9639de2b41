package lb

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/drover-net/drover/discovery"
)

// TestContractLabelsToServerLine follows every lb and check setting from a
// container label, through the registration discovery writes and the
// instance Consul gives back, to the haproxy.cfg lines lb renders: the
// path the registration contract covers.
func TestContractLabelsToServerLine(t *testing.T) {
	tests := []struct {
		name   string
		labels []string
		want   []string // lines (trimmed) the rendered file must contain
		absent []string // substrings it must not contain
	}{
		{"http defaults", nil, []string{
			"frontend http_80", "bind :80", "default_backend web", "backend web", "mode http", "balance roundrobin",
			"timeout check 2s", // the label default, not the lb's own
		}, []string{"option httpchk"}},
		{"default check on the server line", nil, []string{
			"server drover_h1_0123456789ab_8080 10.42.1.5:8080 weight 100 check inter 5s fall 3 rise 1",
		}, nil},
		{"lb.port", []string{"drover.lb.port", "8081"}, []string{"frontend http_8081", "bind :8081"}, nil},
		{"lb.host", []string{"drover.lb.host", "web.example"}, []string{
			"acl r0_host hdr(host) -i web.example web.example:80", "use_backend web if r0_host"}, nil},
		{"lb.path", []string{"drover.lb.path", "/api"}, []string{"acl r0_path path_beg /api", "use_backend web if r0_path"}, nil},
		{"lb.balance", []string{"drover.lb.balance", "leastconn"}, []string{"balance leastconn"}, nil},
		{"weight", []string{"drover.weight", "7"}, []string{"10.42.1.5:8080 weight 7 check"}, nil},
		{"http check", []string{"drover.check", "http:/healthz"}, []string{"option httpchk GET /healthz"}, nil},
		{"check interval and timeout", []string{"drover.check.interval", "3s", "drover.check.timeout", "700ms"},
			[]string{"timeout check 700ms", "10.42.1.5:8080 weight 100 check inter 3s fall 3 rise 1"}, nil},
		{"check rise and fall", []string{"drover.check.rise", "4", "drover.check.fall", "6"},
			[]string{"10.42.1.5:8080 weight 100 check inter 5s fall 6 rise 4"}, nil},
		{"no check", []string{"drover.check", "none"}, []string{"10.42.1.5:8080 weight 100"},
			[]string{"10.42.1.5:8080 weight 100 check", "timeout check", "option httpchk"}},
		{"tcp", []string{"drover.lb.mode", "tcp", "drover.lb.port", "5432"}, []string{
			"frontend tcp_5432", "mode tcp", "bind :5432", "default_backend web"}, []string{"frontend http_80"}},
		{"sticky", []string{"drover.lb.sticky", "true"}, []string{
			"insert indirect nocache httponly", "10.42.1.5:8080 weight 100 check inter 5s fall 3 rise 1 cookie "}, nil},
		{"proxy protocol", []string{"drover.lb.proxy-protocol", "v2"}, []string{
			"10.42.1.5:8080 weight 100 check inter 5s fall 3 rise 1 send-proxy-v2 check-send-proxy"}, nil},
		{"tunnel timeout", []string{"drover.lb.tunnel-timeout", "90s"}, []string{"timeout tunnel 90s"}, nil},
		{"default tunnel timeout", nil, []string{"timeout tunnel 3600s"}, nil},
		{"forwarded headers", nil, []string{"option forwardfor", "http-request del-header X-Forwarded-For",
			"http-request set-header X-Forwarded-Proto http"}, nil},
		{"tls, redirect and hsts", []string{"drover.lb.host", "shop.example", "drover.lb.tls", "true", "drover.lb.redirect", "308",
			"drover.lb.hsts", "8760h"}, []string{
			"frontend https_443", "ssl crt-list", "alpn h2,http/1.1", "acl r0_host hdr(host) -i shop.example shop.example:443",
			"http-request redirect scheme https code 308 if r0_host",
			`http-response set-header Strict-Transport-Security "max-age=31536000" if { ssl_fc }`}, nil},
		{"per-port settings", []string{"drover.8080.lb.host", "api.example", "drover.8080.check", "http:/ready"},
			[]string{"acl r0_host hdr(host) -i api.example api.example:80", "option httpchk GET /ready"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := discovery.Container{
				ID: "0123456789abcdef0123456789abcdef", Name: "web", Image: "web:1",
				Labels:   map[string]string{"drover.service": "web", "drover.lb.mode": "http"},
				Running:  true,
				Networks: map[string]netip.Addr{"drover": netip.MustParseAddr("10.42.1.5")},
				Exposed:  []int{8080},
			}
			for i := 0; i+1 < len(tc.labels); i += 2 {
				c.Labels[tc.labels[i]] = tc.labels[i+1]
			}
			regs, probs := discovery.Registrations("h1", "drover", []discovery.Container{c})
			if len(probs) > 0 || len(regs) != 1 {
				t.Fatalf("registrations %v, problems %v", regs, probs)
			}
			r := regs[0]
			// What Consul gives back for that registration.
			in := discovery.Instance{ID: r.ID, Service: r.Name, Node: "h1", Address: r.Address.String(), Port: r.Port,
				Tags: r.Tags, Meta: r.Meta, Health: "passing"}
			st, lbProbs := Desired(Options{}, map[string][]discovery.Instance{r.Name: {in}})
			if len(lbProbs) > 0 {
				t.Fatalf("lb problems: %v", lbProbs)
			}
			cfg := string(Render(st, Globals{}))
			lines := map[string]bool{}
			for _, l := range strings.Split(cfg, "\n") {
				lines[strings.TrimSpace(l)] = true
			}
			for _, w := range tc.want {
				if !lines[w] && !strings.Contains(cfg, w) {
					t.Errorf("rendered config lacks %q:\n%s", w, cfg)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(cfg, a) {
					t.Errorf("rendered config has %q:\n%s", a, cfg)
				}
			}
		})
	}
}
