package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	"github.com/hashicorp/consul/api"
)

type fakeDocker struct {
	cs  []container.InspectResponse
	err error
}

func (f *fakeDocker) Containers(context.Context) ([]container.InspectResponse, error) {
	return f.cs, f.err
}
func (f *fakeDocker) Events(ctx context.Context) (<-chan events.Message, <-chan error) {
	return make(chan events.Message), make(chan error)
}

// fakeAgent is an in-memory Consul agent that records every write as text.
type fakeAgent struct {
	services map[string]*api.AgentService
	checks   map[string]*api.AgentCheck
	log      []string
	err      error
	refuse   map[string]error // Register of these IDs fails
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{services: map[string]*api.AgentService{}, checks: map[string]*api.AgentCheck{}}
}
func (f *fakeAgent) Services(context.Context) (map[string]*api.AgentService, error) {
	return f.services, f.err
}
func (f *fakeAgent) Checks(context.Context) (map[string]*api.AgentCheck, error) {
	return f.checks, f.err
}
func (f *fakeAgent) Register(_ context.Context, r *api.AgentServiceRegistration) error {
	if err := f.refuse[r.ID]; err != nil {
		return err
	}
	f.services[r.ID] = &api.AgentService{ID: r.ID, Service: r.Name, Address: r.Address, Port: r.Port, Tags: r.Tags, Meta: r.Meta}
	for _, c := range r.Checks {
		f.checks[c.CheckID] = &api.AgentCheck{CheckID: c.CheckID, Status: c.Status}
	}
	f.log = append(f.log, "register "+r.ID)
	return nil
}
func (f *fakeAgent) Deregister(_ context.Context, id string) error {
	delete(f.services, id)
	f.log = append(f.log, "deregister "+id)
	return nil
}
func (f *fakeAgent) UpdateTTL(_ context.Context, id, output, status string) error {
	f.checks[id] = &api.AgentCheck{CheckID: id, Status: status, Output: output}
	f.log = append(f.log, "ttl "+id+" "+status)
	return nil
}

func inspect(id, name string, labels map[string]string, ip string) container.InspectResponse {
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: id, Name: "/" + name, State: &container.State{Running: true}},
		Config:            &container.Config{Image: "drover-demo:latest", Labels: labels, ExposedPorts: nat.PortSet{"8080/tcp": {}}},
		NetworkSettings:   &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"drover": {IPAddress: ip}}},
	}
}

func newTestSync(d Docker, a Agent) *Sync {
	return NewSync(SyncOptions{Node: "h1", Network: "drover", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Checks: func(r Registration) api.AgentServiceChecks {
			return api.AgentServiceChecks{{CheckID: r.ID + ":tcp", TCP: fmt.Sprint(r.Address, ":", r.Port)}}
		}}, d, a)
}

func TestSyncPasses(t *testing.T) {
	ctx := context.Background()
	web := inspect("aaaaaaaaaaaa1111", "web", map[string]string{"drover.service": "web"}, "10.42.1.2")
	plain := inspect("bbbbbbbbbbbb2222", "plain", nil, "10.42.1.3")
	d := &fakeDocker{cs: []container.InspectResponse{web, plain}}
	a := newFakeAgent()
	// Somebody else's services: another node's, and a non-drover one.
	a.services["drover:h2:cccccccccccc:8080"] = &api.AgentService{ID: "drover:h2:cccccccccccc:8080", Meta: map[string]string{"drover_node": "h2"}}
	a.services["consul"] = &api.AgentService{ID: "consul"}
	s := newTestSync(d, a)

	steps := []struct {
		name   string
		change func()
		want   string // the agent's write log of this pass
		err    bool
	}{
		{"first pass registers the labelled container only", nil, "register drover:h1:aaaaaaaaaaaa:8080", false},
		{"unchanged pass writes nothing", nil, "", false},
		{"docker down: nothing deleted", func() { d.err = errors.New("docker down") }, "", true},
		{"consul down: nothing written", func() { d.err, a.err = nil, errors.New("consul down") }, "", true},
		{"container gone: only ours deregistered", func() { a.err, d.cs = nil, nil }, "deregister drover:h1:aaaaaaaaaaaa:8080", false},
		{"back again", func() { d.cs = []container.InspectResponse{web} }, "register drover:h1:aaaaaaaaaaaa:8080", false},
		{"label change re-registers", func() {
			web2 := inspect("aaaaaaaaaaaa1111", "web", map[string]string{"drover.service": "web", "drover.tags": "v2"}, "10.42.1.2")
			d.cs = []container.InspectResponse{web2}
		}, "register drover:h1:aaaaaaaaaaaa:8080", false},
	}
	for _, st := range steps {
		if st.change != nil {
			st.change()
		}
		a.log = nil
		err := s.pass(ctx)
		if (err != nil) != st.err {
			t.Fatalf("%s: err = %v, want error %v", st.name, err, st.err)
		}
		if got := strings.Join(a.log, "; "); got != st.want {
			t.Errorf("%s: writes %q, want %q", st.name, got, st.want)
		}
	}
	var ids []string
	for id := range a.services {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if got := strings.Join(ids, " "); got != "consul drover:h1:aaaaaaaaaaaa:8080 drover:h2:cccccccccccc:8080" {
		t.Errorf("services at the end: %s", got)
	}
}

func TestSyncBridgesDockerHealth(t *testing.T) {
	ctx := context.Background()
	c := inspect("dddddddddddd4444", "db", map[string]string{"drover.service": "db"}, "10.42.1.4")
	c.State.Health = &container.Health{Status: "starting"}
	d := &fakeDocker{cs: []container.InspectResponse{c}}
	a := newFakeAgent()
	s := newTestSync(d, a)
	s.opt.DockerCheckID = func(id string) string { return id + ":docker" }
	s.opt.DockerStatus = func(st string) string { return map[string]string{"healthy": "passing", "starting": "warning"}[st] }
	s.opt.Checks = func(r Registration) api.AgentServiceChecks {
		return api.AgentServiceChecks{{CheckID: r.ID + ":docker", TTL: "1h", Status: s.opt.DockerStatus(r.DockerStatus)}}
	}
	if err := s.pass(ctx); err != nil {
		t.Fatal(err)
	}
	c.State.Health.Status = "healthy"
	a.log = nil
	if err := s.pass(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.log, "; "); got != "ttl drover:h1:dddddddddddd:8080:docker passing" {
		t.Errorf("health change wrote %q, want only a TTL update", got)
	}
	a.log = nil
	if err := s.pass(ctx); err != nil {
		t.Fatal(err)
	}
	if len(a.log) != 0 {
		t.Errorf("unchanged health wrote %v", a.log)
	}
	// An unchanged status is written again before its TTL can run out
	// (issue 12, defect 2: it was refreshed only on changes, so every
	// healthy container went critical after the TTL), and only then.
	now := time.Now()
	s.opt.Now = func() time.Time { return now.Add(10 * time.Minute) }
	if err := s.pass(ctx); err != nil || len(a.log) != 0 {
		t.Errorf("10 min later: wrote %v (%v), want nothing yet", a.log, err)
	}
	s.opt.Now = func() time.Time { return now.Add(16 * time.Minute) }
	if err := s.pass(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.log, "; "); got != "ttl drover:h1:dddddddddddd:8080:docker passing" {
		t.Errorf("16 min later wrote %q, want one TTL refresh", got)
	}
	a.log = nil
	if err := s.pass(ctx); err != nil || len(a.log) != 0 {
		t.Errorf("right after the refresh: wrote %v (%v)", a.log, err)
	}
}

// A registration Consul refused is reported as failed, not as registered
// (issue 12, defect 17), and listed as registered once a retry succeeds.
func TestStatusListsOnlyWhatRegistered(t *testing.T) {
	ctx := context.Background()
	good := inspect("aaaaaaaaaaaa1111", "good", map[string]string{"drover.service": "good"}, "10.42.1.2")
	bad := inspect("bbbbbbbbbbbb2222", "bad", map[string]string{"drover.service": "bad"}, "10.42.1.3")
	a := newFakeAgent()
	badID := "drover:h1:bbbbbbbbbbbb:8080"
	a.refuse = map[string]error{badID: errors.New("Unexpected response code: 400 (Invalid service meta)")}
	s := newTestSync(&fakeDocker{cs: []container.InspectResponse{good, bad}}, a)
	_ = s.pass(ctx)
	st := s.Status()
	if strings.Join(st.Registrations, ",") != "drover:h1:aaaaaaaaaaaa:8080" {
		t.Errorf("registrations = %v, want only the good one", st.Registrations)
	}
	if len(st.Failed) != 1 || !strings.HasPrefix(st.Failed[0], badID+": ") || !strings.Contains(st.Failed[0], "Invalid service meta") {
		t.Errorf("failed = %v, want %s with its reason", st.Failed, badID)
	}
	a.refuse = nil
	if err := s.pass(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); len(st.Registrations) != 2 || len(st.Failed) != 0 {
		t.Errorf("after the retry: registrations %v, failed %v", st.Registrations, st.Failed)
	}
}

// hungDocker answers nothing until its caller gives up.
type hungDocker struct{ fakeDocker }

func (h *hungDocker) Containers(ctx context.Context) ([]container.InspectResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A hung dockerd fails the pass at its deadline (and the pass is retried)
// instead of freezing registration forever (issue 12, defect 9).
func TestPassHasADeadline(t *testing.T) {
	s := newTestSync(&hungDocker{}, newFakeAgent())
	s.opt.PassTimeout = 100 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- s.pass(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "deadline") {
			t.Errorf("pass = %v, want a deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a pass against a hung dockerd never returned")
	}
}
