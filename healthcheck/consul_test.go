package healthcheck

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/drover-net/drover/discovery"
)

func TestConsulChecks(t *testing.T) {
	base := discovery.Registration{ID: "drover:h1:abc:8080", Address: netip.MustParseAddr("10.42.1.2"), Port: 8080,
		Check: discovery.Check{Kind: "tcp", Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}}
	withHTTP := base
	withHTTP.Check.Kind, withHTTP.Check.Path = "http", "/healthz"
	none := base
	none.Check.Kind = "none"
	docker := none
	docker.DockerHealth, docker.DockerStatus = true, "unhealthy"
	https := base
	https.Check.Kind, https.Check.Path, https.Check.Method, https.Check.TLSSkipVerify = "https", "/h", "HEAD", true
	https.Check.InitialStatus, https.Check.DeregisterAfter = "passing", 10*time.Minute
	ttl := base
	ttl.Check.Kind, ttl.Check.TTL = "ttl", 30*time.Second
	grpc := base
	grpc.Check.Kind, grpc.Check.GRPCUseTLS = "grpc", true
	cases := []struct {
		name string
		reg  discovery.Registration
		want api.AgentServiceChecks
	}{
		{"https from registrator's keys", https, api.AgentServiceChecks{{CheckID: "drover:h1:abc:8080:https", Name: "HTTPS HEAD /h",
			HTTP: "https://10.42.1.2:8080/h", Method: "HEAD", TLSSkipVerify: true, Status: "passing", Interval: "2s", Timeout: "1s",
			SuccessBeforePassing: 2, FailuresBeforeCritical: 3, DeregisterCriticalServiceAfter: "10m0s"}}},
		{"ttl: passed by the application", ttl, api.AgentServiceChecks{{CheckID: "drover:h1:abc:8080:ttl", Name: "TTL 30s (passed by the application)",
			TTL: "30s", DeregisterCriticalServiceAfter: DeregisterAfter, Notes: "registered by drover from SERVICE_CHECK_TTL; the application updates it"}}},
		{"grpc", grpc, api.AgentServiceChecks{{CheckID: "drover:h1:abc:8080:grpc", Name: "gRPC health 10.42.1.2:8080",
			GRPC: "10.42.1.2:8080", GRPCUseTLS: true, Interval: "2s", Timeout: "1s", SuccessBeforePassing: 2, FailuresBeforeCritical: 3,
			DeregisterCriticalServiceAfter: DeregisterAfter}}},
		{"tcp", base, api.AgentServiceChecks{{CheckID: "drover:h1:abc:8080:tcp", Name: "TCP connect 10.42.1.2:8080",
			TCP: "10.42.1.2:8080", Interval: "2s", Timeout: "1s", SuccessBeforePassing: 2, FailuresBeforeCritical: 3,
			DeregisterCriticalServiceAfter: DeregisterAfter}}},
		{"http", withHTTP, api.AgentServiceChecks{{CheckID: "drover:h1:abc:8080:http", Name: "HTTP GET /healthz",
			HTTP: "http://10.42.1.2:8080/healthz", Interval: "2s", Timeout: "1s", SuccessBeforePassing: 2, FailuresBeforeCritical: 3,
			DeregisterCriticalServiceAfter: DeregisterAfter}}},
		{"none", none, nil},
		{"docker health only", docker, api.AgentServiceChecks{{CheckID: "drover:h1:abc:8080:docker", Name: "Docker HEALTHCHECK",
			TTL: DockerTTL, Status: api.HealthCritical, Notes: "bridged from the container's Docker health status by drover",
			DeregisterCriticalServiceAfter: DeregisterAfter}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ConsulChecks(tc.reg)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestDockerStatus(t *testing.T) {
	for in, want := range map[string]string{"healthy": "passing", "unhealthy": "critical", "starting": "warning", "": "warning"} {
		if got := DockerStatus(in); got != want {
			t.Errorf("DockerStatus(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFirstJudgment(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() || r.URL.Path != "/healthz" {
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	ap := netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))
	reg := func(kind string, rise int) discovery.Registration {
		return discovery.Registration{ID: "drover:h1:abc:8080", Address: ap.Addr(), Port: int(ap.Port()),
			Check: discovery.Check{Kind: kind, Path: "/healthz", Interval: time.Second, Timeout: time.Second, Rise: rise, Fall: 3}}
	}
	for _, tc := range []struct {
		name string
		r    discovery.Registration
		fail bool
		want string
	}{
		{"http ready", reg("http", 2), false, "passing"},
		{"http not ready", reg("http", 2), true, ""},
		{"tcp ready", reg("tcp", 1), false, "passing"},
		{"no check", reg("none", 1), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fail.Store(tc.fail)
			checks := ConsulChecks(tc.r)
			FirstJudgment(context.Background(), tc.r, checks)
			for _, c := range checks {
				if c.HTTP != "" || c.TCP != "" {
					if c.Status != tc.want {
						t.Errorf("initial status %q, want %q", c.Status, tc.want)
					}
				}
			}
		})
	}
	// A closed port: tcp fails at once, nothing set.
	r := reg("tcp", 1)
	r.Port = 1
	checks := ConsulChecks(r)
	FirstJudgment(context.Background(), r, checks)
	if checks[0].Status != "" {
		t.Errorf("closed port judged %q", checks[0].Status)
	}
}
