package discovery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/hashicorp/consul/api"

	"github.com/drover-net/drover/internal/backoff"
	"github.com/drover-net/drover/internal/kick"
)

// Docker is what the sync loop needs of dockerd. *docker.Client fits.
type Docker interface {
	// Containers lists the running containers, inspected.
	Containers(ctx context.Context) ([]container.InspectResponse, error)
	// Events streams container events until ctx ends or the stream fails.
	Events(ctx context.Context) (<-chan events.Message, <-chan error)
}

// Agent is what the sync loop needs of the local Consul agent.
// *consul.Client fits. All methods are safe for concurrent use.
type Agent interface {
	Services(ctx context.Context) (map[string]*api.AgentService, error)
	Checks(ctx context.Context) (map[string]*api.AgentCheck, error)
	Register(ctx context.Context, r *api.AgentServiceRegistration) error
	Deregister(ctx context.Context, id string) error
	UpdateTTL(ctx context.Context, checkID, output, status string) error
}

// SyncOptions configures the Docker → Consul sync loop.
type SyncOptions struct {
	Node    string // this drover node: IDs and ownership
	Network string // Docker network whose address is published
	// AddressMode is the agent's default address mode ("" is auto); labels
	// choose per container (drover.address).
	AddressMode AddressMode
	// RegisterAll registers unlabelled containers too (--register all).
	RegisterAll bool
	// HostAddr is the host's address for published ports, asked on every
	// pass (the underlay address may move); nil or invalid: unknown.
	HostAddr func() netip.Addr
	Resync   time.Duration // full pass period (default 30 s)
	// Checks turns a registration into its Consul checks (healthcheck owns
	// the check definitions; the wiring passes healthcheck.ConsulChecks).
	Checks func(Registration) api.AgentServiceChecks
	// FirstJudgment, when set, may set the initial Status of a new
	// registration's checks (healthcheck probes the instance itself, so
	// that a ready instance is passing at once instead of after Consul's
	// staggered first run). Never called for an existing registration.
	FirstJudgment func(context.Context, Registration, api.AgentServiceChecks)
	// DockerCheck names the TTL check bridging Docker health and maps the
	// Docker status to Consul's.
	DockerCheckID func(serviceID string) string
	DockerStatus  func(string) string
	// DockerRefresh is how old a bridged Docker status may get before it is
	// written again although it did not change, so that its TTL never runs
	// out while the container is healthy (default 15 min; the wiring passes
	// a quarter of healthcheck's TTL).
	DockerRefresh time.Duration
	// PassTimeout bounds one pass, every Docker and Consul call in it
	// included (default 1 min): a hung dockerd or Consul agent fails the
	// pass, which is retried, instead of freezing registration for good.
	PassTimeout time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	Log *slog.Logger
}

// SyncStatus is the sync loop's part of `drover status`.
type SyncStatus struct {
	Registrations []string `json:"registrations"` // IDs registered now
	// Failed are registrations the last pass wanted but Consul refused
	// ("ID: error"); they are not in Registrations and are retried.
	Failed   []string  `json:"failed,omitempty"`
	Problems []Problem `json:"problems"`
	// Placed says where each registration's address comes from
	// ("ID: mode address:port (why)").
	Placed []string `json:"placed,omitempty"`
	// Warnings are registered ports with a setting drover did not follow.
	Warnings     []Problem     `json:"warnings,omitempty"`
	Writes       int           `json:"consul_writes"` // registrations, deregistrations, TTL updates since start
	Passes       int           `json:"passes"`
	LastPass     time.Time     `json:"last_pass"`
	LastPassDur  time.Duration `json:"last_pass_duration_ns"`
	LastError    string        `json:"last_error,omitempty"`
	Pending      bool          `json:"pending"` // a pass failed and is being retried
	Owned        int           `json:"owned_in_consul"`
	DockerEvents int           `json:"docker_events"`
	Reconnects   int           `json:"docker_reconnects"`
	Applied      []string      `json:"last_changes,omitempty"`
}

// Sync keeps this node's container registrations in Consul equal to the
// running, labelled containers: it subscribes to Docker events before its
// first list, does a full pass on every event (coalesced), on a timer and
// after every reconnect, and deletes only registrations it owns — and only
// in a pass whose Docker list and Consul read both succeeded.
type Sync struct {
	opt    SyncOptions
	docker Docker
	agent  Agent
	kick   chan struct{}
	// ttlAt is when each Docker TTL check was last set (its registration
	// or its last update); only the loop's goroutine touches it.
	ttlAt map[string]time.Time

	mu     sync.Mutex // guards status and again
	status SyncStatus
	again  bool // the next pass registers every instance, changed or not
}

// NewSync returns a sync loop; it changes nothing yet.
func NewSync(opt SyncOptions, d Docker, a Agent) *Sync {
	if opt.Resync == 0 {
		opt.Resync = 30 * time.Second
	}
	if opt.DockerRefresh == 0 {
		opt.DockerRefresh = 15 * time.Minute
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.PassTimeout == 0 {
		opt.PassTimeout = time.Minute
	}
	return &Sync{opt: opt, docker: d, agent: a, kick: make(chan struct{}, 1), ttlAt: map[string]time.Time{}}
}

// Status returns a copy of the loop's status.
func (s *Sync) Status() SyncStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Registrations = append([]string(nil), st.Registrations...)
	st.Failed = append([]string(nil), st.Failed...)
	st.Problems = append([]Problem(nil), st.Problems...)
	return st
}

// Kick asks for a full pass now (coalesced with any pending one): the
// overlay calls it when the local Consul agent forgot its registrations
// (an agent restarted with an empty data dir), so that every container
// service is registered again at once rather than at the next resync.
func (s *Sync) Kick() { s.poke() }

// Reregister makes the next pass register every instance again, changed or
// not, and starts it now. Call it when the ACL token changed: the local
// Consul agent keeps each registration's token for its catalog syncs, so
// registrations made with a revoked token would never sync again.
func (s *Sync) Reregister() {
	s.mu.Lock()
	s.again = true
	s.mu.Unlock()
	s.poke()
}

func (s *Sync) poke() { kick.Send(s.kick) }

// Run syncs until ctx ends. It never exits on Docker or Consul errors: it
// retries with a capped, jittered backoff.
func (s *Sync) Run(ctx context.Context) error {
	go s.watchEvents(ctx)
	t := time.NewTicker(s.opt.Resync)
	defer t.Stop()
	bo := backoff.New(250*time.Millisecond, 10*time.Second)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-t.C:
		case <-retry.C:
		}
		if err := s.pass(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.opt.Log.Warn("docker→consul sync failed; retrying", "err", err)
			d := bo.Next()
			if ACLDenied(err) {
				d = min(d, time.Second)
			}
			retry.Reset(d)
			continue
		}
		bo.Reset()
	}
}

// watchEvents subscribes to container events (before the first list, so
// nothing is missed), turns each into a kick, and resubscribes with backoff
// when dockerd goes away; every (re)subscription is followed by a full pass.
func (s *Sync) watchEvents(ctx context.Context) {
	bo := backoff.New(250*time.Millisecond, 10*time.Second)
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		msgs, errs := s.docker.Events(sctx)
		s.poke()
	stream:
		for {
			select {
			case <-ctx.Done():
				cancel()
				return
			case m := <-msgs:
				bo.Reset()
				s.mu.Lock()
				s.status.DockerEvents++
				s.mu.Unlock()
				if interesting(m) {
					s.poke()
				}
			case err := <-errs:
				s.opt.Log.Warn("docker event stream lost; reconnecting", "err", err)
				break stream
			}
		}
		cancel()
		s.mu.Lock()
		s.status.Reconnects++
		s.mu.Unlock()
		bo.Wait(ctx)
	}
}

func interesting(m events.Message) bool {
	switch a := string(m.Action); {
	case a == "start", a == "die", a == "stop", a == "kill", a == "destroy", a == "rename",
		a == "pause", a == "unpause", a == "restart", a == "update",
		strings.HasPrefix(a, "health_status"), a == "connect", a == "disconnect":
		return true
	}
	return false
}

// pass is one full level-triggered sync.
func (s *Sync) pass(ctx context.Context) error {
	begin := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.opt.PassTimeout)
	defer cancel()
	inspected, err := s.docker.Containers(ctx)
	if err != nil {
		return s.fail(fmt.Errorf("listing containers (pass deadline %s): %w", s.opt.PassTimeout, err))
	}
	services, err := s.agent.Services(ctx)
	if err != nil {
		return s.fail(err)
	}
	cs := make([]Container, len(inspected))
	for i, r := range inspected {
		cs[i] = ContainerFromInspect(r)
	}
	place := Placement{Node: s.opt.Node, Network: s.opt.Network, Mode: s.opt.AddressMode, All: s.opt.RegisterAll}
	if s.opt.HostAddr != nil {
		place.HostAddr = s.opt.HostAddr()
	}
	desired, problems := Place(place, cs)
	owned := s.owned(services)
	now := time.Now()
	var graceEnd time.Time
	for i, r := range desired {
		var end time.Time
		desired[i], end = r.InGrace(now)
		if !end.IsZero() && (graceEnd.IsZero() || end.Before(graceEnd)) {
			graceEnd = end
		}
	}
	if !graceEnd.IsZero() {
		// Re-register with the normal fall when the first grace ends.
		time.AfterFunc(time.Until(graceEnd)+50*time.Millisecond, s.poke)
	}
	regs := make([]*api.AgentServiceRegistration, len(desired))
	var judging sync.WaitGroup
	for i, r := range desired {
		regs[i] = s.agentRegistration(r)
		if _, exists := owned[r.ID]; !exists && s.opt.FirstJudgment != nil {
			// New instances are judged side by side, so a pass waits for
			// the slowest judgment only.
			judging.Add(1)
			go func() {
				defer judging.Done()
				s.opt.FirstJudgment(ctx, r, regs[i].Checks)
			}()
		}
	}
	judging.Wait()
	var changes []string
	var errs []error
	want := map[string]bool{}
	failed := map[string]string{}
	s.mu.Lock()
	again := s.again
	s.mu.Unlock()
	for i, r := range desired {
		want[r.ID] = true
		reg := regs[i]
		cur, exists := owned[r.ID]
		if exists && cur.Meta[MetaHash] == reg.Meta[MetaHash] && !again {
			continue
		}
		if err := s.agent.Register(ctx, reg); err != nil {
			errs = append(errs, err)
			failed[r.ID] = err.Error()
			continue
		}
		if r.DockerHealth && s.opt.DockerCheckID != nil {
			s.ttlAt[s.opt.DockerCheckID(r.ID)] = s.opt.Now()
		}
		changes = append(changes, "register "+r.ID+" "+r.Name+" "+r.Address.String()+":"+strconv.Itoa(r.Port)+" ("+string(r.AddressMode)+")")
		for _, w := range r.Warnings {
			// Said when the registration is written: once per change.
			s.opt.Log.Warn("registered without following a setting", "service", r.Name, "id", r.ID, "container", r.Meta["container_name"], "reason", w)
		}
	}
	for _, id := range sortedIDs(owned) {
		if want[id] {
			continue
		}
		if err := s.agent.Deregister(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		changes = append(changes, "deregister "+id)
	}
	changes = append(changes, s.bridgeDockerHealth(ctx, desired, &errs)...)
	for _, p := range problems {
		s.opt.Log.Warn("container skipped", "container", p.ContainerName, "id", short12(p.ContainerID), "port", p.Port, "reason", p.Reason)
	}
	if len(changes) > 0 {
		s.opt.Log.Info("docker→consul applied", "changes", strings.Join(changes, "; "))
	}
	s.mu.Lock()
	s.status.Passes++
	s.status.LastPass = time.Now()
	s.status.LastPassDur = time.Since(begin)
	s.status.Writes += len(changes)
	s.status.Problems = problems
	s.status.Owned = len(owned)
	s.status.Registrations = s.status.Registrations[:0]
	s.status.Placed, s.status.Warnings = nil, nil
	s.status.Failed = nil
	for _, r := range desired {
		if msg, bad := failed[r.ID]; bad {
			s.status.Failed = append(s.status.Failed, r.ID+": "+msg)
			continue
		}
		s.status.Registrations = append(s.status.Registrations, r.ID)
		s.status.Placed = append(s.status.Placed, fmt.Sprintf("%s: %s %s (%s)", r.ID, r.AddressMode, netip.AddrPortFrom(r.Address, uint16(r.Port)), r.AddressWhy))
		for _, w := range r.Warnings {
			s.status.Warnings = append(s.status.Warnings, Problem{ContainerID: r.Meta["container_id"], ContainerName: r.Meta["container_name"], Port: r.ContainerPort, Reason: w})
		}
	}
	if len(changes) > 0 {
		s.status.Applied = changes
	}
	s.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return s.fail(err)
	}
	if again {
		s.mu.Lock()
		s.again = false
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.status.LastError, s.status.Pending = "", false
	s.mu.Unlock()
	return nil
}

func (s *Sync) fail(err error) error {
	s.mu.Lock()
	s.status.LastError, s.status.Pending = err.Error(), true
	s.mu.Unlock()
	return err
}

// owned filters the agent's services down to the ones this node registered.
func (s *Sync) owned(all map[string]*api.AgentService) map[string]*api.AgentService {
	prefix := "drover:" + s.opt.Node + ":"
	out := map[string]*api.AgentService{}
	for id, svc := range all {
		if (strings.HasPrefix(id, prefix) || svc.Meta[MetaOwnID] == "true") && svc.Meta[MetaNode] == s.opt.Node {
			out[id] = svc
		}
	}
	return out
}

// MetaHash carries a digest of the whole registration (checks included), so
// that an unchanged registration is never written again.
const MetaHash = "drover_hash"

func (s *Sync) agentRegistration(r Registration) *api.AgentServiceRegistration {
	meta := map[string]string{}
	for k, v := range r.Meta {
		meta[k] = v
	}
	reg := &api.AgentServiceRegistration{
		ID: r.ID, Name: r.Name, Address: r.Address.String(), Port: r.Port,
		Tags: r.Tags, Meta: meta,
	}
	if s.opt.Checks != nil {
		reg.Checks = s.opt.Checks(r)
	}
	// The digest leaves out the Docker TTL status, which changes through
	// UpdateTTL, not through re-registration.
	h := sha256.New()
	b, _ := json.Marshal(struct {
		R *api.AgentServiceRegistration
		D bool
	}{reg, r.DockerHealth})
	h.Write(stripStatus(b))
	meta[MetaHash] = hex.EncodeToString(h.Sum(nil))[:16]
	return reg
}

func stripStatus(b []byte) []byte {
	for _, st := range []string{api.HealthPassing, api.HealthWarning, api.HealthCritical} {
		b = []byte(strings.ReplaceAll(string(b), `"Status":"`+st+`"`, `"Status":""`))
	}
	return b
}

// bridgeDockerHealth sets each Docker-health TTL check to the container's
// status, writing only when Consul's differs.
func (s *Sync) bridgeDockerHealth(ctx context.Context, desired []Registration, errs *[]error) []string {
	if s.opt.DockerCheckID == nil || s.opt.DockerStatus == nil {
		return nil
	}
	var any bool
	keep := map[string]bool{}
	for _, r := range desired {
		any = any || r.DockerHealth
		keep[s.opt.DockerCheckID(r.ID)] = true
	}
	for id := range s.ttlAt {
		if !keep[id] {
			delete(s.ttlAt, id)
		}
	}
	if !any {
		return nil
	}
	checks, err := s.agent.Checks(ctx)
	if err != nil {
		*errs = append(*errs, err)
		return nil
	}
	var changes []string
	for _, r := range desired {
		if !r.DockerHealth {
			continue
		}
		id := s.opt.DockerCheckID(r.ID)
		want := s.opt.DockerStatus(r.DockerStatus)
		now := s.opt.Now()
		if c, ok := checks[id]; ok && c.Status == want {
			last := refreshedAt(c.Output)
			if t := s.ttlAt[id]; t.After(last) {
				last = t
			}
			if now.Sub(last) < s.opt.DockerRefresh {
				continue
			}
		}
		out := fmt.Sprintf("docker health: %s (refreshed %s)", r.DockerStatus, now.UTC().Format(time.RFC3339))
		if err := s.agent.UpdateTTL(ctx, id, out, want); err != nil {
			*errs = append(*errs, err)
			continue
		}
		s.ttlAt[id] = now
		changes = append(changes, fmt.Sprintf("ttl %s %s", id, want))
	}
	return changes
}

// refreshedAt reads the time a bridged status was last written from its
// output ("… (refreshed 2006-01-02T15:04:05Z)"); zero when it has none. The
// time comes from this host's own clock, written by this host, so it is
// compared only with that clock, and it survives an agent restart: a
// restarted agent refreshes only what is due.
func refreshedAt(output string) time.Time {
	i := strings.LastIndex(output, "(refreshed ")
	if i < 0 {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSuffix(output[i+len("(refreshed "):], ")"))
	if err != nil {
		return time.Time{}
	}
	return t
}

func sortedIDs(m map[string]*api.AgentService) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func short12(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
