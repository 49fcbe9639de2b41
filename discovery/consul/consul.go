// Package consul is the Consul adapter: a thin, context-aware wrapper of
// github.com/hashicorp/consul/api for the calls drover makes (agent
// service registration, health blocking queries, KV with check-and-set).
// It returns SDK types and knows nothing of drover's domain.
package consul

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// Client talks to the local Consul agent.
type Client struct {
	api *api.Client
	ts  *tokenSource
	req *requests
	// WaitTime bounds each blocking query (Consul's default is 5 minutes).
	WaitTime time.Duration
}

// New returns a client. Its settings start from api.DefaultConfig(), which
// honours CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN(_FILE), CONSUL_CACERT and
// friends; every set field of opt wins.
func New(opt Options) (*Client, error) {
	cfg, ts, err := opt.config()
	if err != nil {
		return nil, wrap(err, "consul client")
	}
	req := &requests{}
	cfg.HttpClient.Transport = &countingTransport{base: cfg.HttpClient.Transport, r: req}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, wrap(err, fmt.Sprintf("consul client for %s", cfg.Address))
	}
	return &Client{api: c, ts: ts, req: req, WaitTime: 60 * time.Second}, nil
}

// Requests returns what this client has asked of Consul so far.
func (c *Client) Requests() RequestStats { return c.req.stats() }

// TokenChanged returns a channel closed when the token (file) next changes:
// loops waiting after an ACL refusal retry at once.
func (c *Client) TokenChanged() <-chan struct{} { return c.ts.Changed() }

// CheckToken re-reads the token file now if it changed (else at most once
// a second) and reports whether a token is set.
func (c *Client) CheckToken() bool {
	tok, err := c.ts.Token()
	return err == nil && tok != ""
}

// Self returns the local agent's node name and advertised address.
func (c *Client) Self(ctx context.Context) (node, addr string, err error) {
	// Agent().Self() takes no context; the raw query does, so a hung agent
	// cannot hold the caller past its deadline.
	var self map[string]map[string]interface{}
	_, err = c.api.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", "", wrap(err, "asking the local consul agent who it is")
	}
	cfg, _ := self["Config"]
	member, _ := self["Member"]
	node, _ = cfg["NodeName"].(string)
	addr, _ = member["Addr"].(string)
	if node == "" || addr == "" {
		return "", "", fmt.Errorf("consul agent/self lacks NodeName or Member.Addr")
	}
	return node, addr, nil
}

// HealthService runs a blocking query for every instance of service with its
// checks (passing or not).
func (c *Client) HealthService(ctx context.Context, service string, index uint64) ([]*api.ServiceEntry, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: c.WaitTime}).WithContext(ctx)
	es, meta, err := c.api.Health().Service(service, "", false, q)
	if err != nil {
		return nil, 0, wrap(err, fmt.Sprintf("watching service %s", service))
	}
	if meta.ResultsFilteredByACLs {
		return nil, 0, filtered(fmt.Sprintf("watching service %s", service), "service:read and node:read on every node")
	}
	if err := leaderless(len(es), meta, fmt.Sprintf("watching service %s", service)); err != nil {
		return nil, 0, err
	}
	return es, meta.LastIndex, nil
}

// HealthState runs a blocking query on every check in the catalog
// (/v1/health/state/any): node checks such as serfHealth and every service
// instance's checks, each with its node, service and modify index. Its
// index moves on any check change.
func (c *Client) HealthState(ctx context.Context, index uint64) (api.HealthChecks, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: c.WaitTime}).WithContext(ctx)
	hc, meta, err := c.api.Health().State(api.HealthAny, q)
	if err != nil {
		return nil, 0, wrap(err, "watching every health check")
	}
	if meta.ResultsFilteredByACLs {
		return nil, 0, filtered("watching every health check", "service:read and node:read on every node")
	}
	if err := leaderless(len(hc), meta, "watching every health check"); err != nil {
		return nil, 0, err
	}
	return hc, meta.LastIndex, nil
}

// WatchServiceNames runs a blocking query on the service names (with their
// tags) of the catalog, keeping only services one of whose instances
// matches filter (Consul's filter language; empty keeps all).
func (c *Client) WatchServiceNames(ctx context.Context, filter string, index uint64) (map[string][]string, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: c.WaitTime, Filter: filter}).WithContext(ctx)
	m, meta, err := c.api.Catalog().Services(q)
	if err != nil {
		return nil, 0, wrap(err, "watching catalog services")
	}
	if meta.ResultsFilteredByACLs {
		return nil, 0, filtered("watching catalog services", "service:read on every service")
	}
	if err := leaderless(len(m), meta, "watching catalog services"); err != nil {
		return nil, 0, err
	}
	return m, meta.LastIndex, nil
}

// KVList runs a blocking query on a KV prefix.
func (c *Client) KVList(ctx context.Context, prefix string, index uint64) (api.KVPairs, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: c.WaitTime}).WithContext(ctx)
	ps, meta, err := c.api.KV().List(prefix, q)
	if err != nil {
		return nil, 0, wrap(err, fmt.Sprintf("listing KV %s", prefix))
	}
	if meta.ResultsFilteredByACLs {
		return nil, 0, filtered(fmt.Sprintf("listing KV %s", prefix), "key:read on "+prefix)
	}
	if err := leaderless(len(ps), meta, fmt.Sprintf("listing KV %s", prefix)); err != nil {
		return nil, 0, err
	}
	return ps, meta.LastIndex, nil
}

// KVCAS writes p if its ModifyIndex still matches (0: must not exist).
func (c *Client) KVCAS(ctx context.Context, p *api.KVPair) (bool, error) {
	ok, _, err := c.api.KV().CAS(p, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return false, wrap(err, fmt.Sprintf("writing KV %s", p.Key))
	}
	return ok, nil
}

// KVPut writes key unconditionally (a key only this agent writes).
func (c *Client) KVPut(ctx context.Context, key string, value []byte) error {
	if _, err := c.api.KV().Put(&api.KVPair{Key: key, Value: value}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return wrap(err, fmt.Sprintf("writing KV %s", key))
	}
	return nil
}

// KVDelete deletes key (absent is fine).
func (c *Client) KVDelete(ctx context.Context, key string) error {
	if _, err := c.api.KV().Delete(key, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return wrap(err, fmt.Sprintf("deleting KV %s", key))
	}
	return nil
}

// KVDeleteCAS deletes p if its ModifyIndex still matches.
func (c *Client) KVDeleteCAS(ctx context.Context, p *api.KVPair) (bool, error) {
	ok, _, err := c.api.KV().DeleteCAS(p, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return false, wrap(err, fmt.Sprintf("deleting KV %s", p.Key))
	}
	return ok, nil
}

// Service returns the local agent's registration of id, or nil.
func (c *Client) Service(ctx context.Context, id string) (*api.AgentService, error) {
	s, _, err := c.api.Agent().Service(id, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		if se, ok := err.(api.StatusError); ok && se.Code == 404 {
			return nil, nil
		}
		return nil, wrap(err, fmt.Sprintf("reading service %s from the local agent", id))
	}
	return s, nil
}

// WaitService runs a blocking query on the local agent's registration of
// id: while hash is not "" and still the registration's content hash, it
// waits (up to WaitTime). It returns the current hash, "" when the agent
// has no such service.
func (c *Client) WaitService(ctx context.Context, id, hash string) (string, error) {
	q := (&api.QueryOptions{WaitHash: hash, WaitTime: c.WaitTime}).WithContext(ctx)
	_, meta, err := c.api.Agent().Service(id, q)
	if err != nil {
		if se, ok := err.(api.StatusError); ok && se.Code == 404 {
			return "", nil
		}
		return "", fmt.Errorf("watching service %s on the local agent: %w", id, err)
	}
	if meta == nil || meta.LastContentHash == "" {
		return "", fmt.Errorf("watching service %s on the local agent: no content hash in the answer", id)
	}
	return meta.LastContentHash, nil
}

// Register registers (or replaces) a service on the local agent.
func (c *Client) Register(ctx context.Context, r *api.AgentServiceRegistration) error {
	if err := c.api.Agent().ServiceRegisterOpts(r, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return wrap(err, fmt.Sprintf("registering service %s", r.ID))
	}
	return nil
}

// Deregister removes a service from the local agent.
func (c *Client) Deregister(ctx context.Context, id string) error {
	if err := c.api.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return wrap(err, fmt.Sprintf("deregistering service %s", id))
	}
	return nil
}

// Services returns the local agent's services.
func (c *Client) Services(ctx context.Context) (map[string]*api.AgentService, error) {
	s, err := c.api.Agent().ServicesWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, wrap(err, "listing the local agent's services")
	}
	return s, nil
}

// Checks returns the local agent's checks.
func (c *Client) Checks(ctx context.Context) (map[string]*api.AgentCheck, error) {
	s, err := c.api.Agent().ChecksWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, wrap(err, "listing the local agent's checks")
	}
	return s, nil
}

// UpdateTTL sets a TTL check's status ("passing", "warning", "critical").
func (c *Client) UpdateTTL(ctx context.Context, checkID, output, status string) error {
	if err := c.api.Agent().UpdateTTLOpts(checkID, output, status, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return wrap(err, fmt.Sprintf("updating check %s", checkID))
	}
	return nil
}

// CatalogServices lists the service names in the catalog with their tags.
func (c *Client) CatalogServices(ctx context.Context) (map[string][]string, error) {
	s, meta, err := c.api.Catalog().Services((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, wrap(err, "listing catalog services")
	}
	if meta.ResultsFilteredByACLs {
		return nil, filtered("listing catalog services", "service:read on every service")
	}
	return s, nil
}

// ErrLeaderless is (wrapped in) the error of an empty answer from a server
// that knows no leader: a server that has just started, or lost its
// cluster, can answer a stale read with nothing, and "nothing" would look
// like every instance, check or lease gone. Watches treat it as an
// unanswered read (fail static) and ask again.
var ErrLeaderless = errors.New("an empty answer from a Consul server without a known leader (X-Consul-KnownLeader: false); not trusted")

// leaderless refuses an empty answer whose server knows no leader. The
// streaming backend (blocking health queries on a client agent) always
// says KnownLeader false (measured on 1.14.8), so its answers are not
// judged by it.
func leaderless(n int, meta *api.QueryMeta, op string) error {
	if n == 0 && meta != nil && !meta.KnownLeader && meta.QueryBackend != api.QueryBackendStreaming {
		return fmt.Errorf("%s: %w", op, ErrLeaderless)
	}
	return nil
}

// filtered is the error of a read whose answer Consul cut down for the
// token's ACLs: a partial answer would look like vanished nodes or keys,
// so it is refused as a whole.
func filtered(op, need string) error {
	return &ACLError{Op: op, Reason: "results filtered by ACLs: the token lacks " + need}
}
