package main

// The agent's start-up: clients, node name, the wait for Consul.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/drover-net/drover/confgen"
	"github.com/drover-net/drover/discovery/consul"
	"github.com/drover-net/drover/discovery/docker"
	"github.com/drover-net/drover/internal/atomicfile"
	"github.com/drover-net/drover/internal/backoff"
	"github.com/drover-net/drover/internal/execcmd"
	"github.com/drover-net/drover/lb"
	"github.com/drover-net/drover/lb/haproxy"
	"github.com/drover-net/drover/overlay"
	"github.com/drover-net/drover/overlay/netlink"
	"github.com/drover-net/drover/overlay/wg"
	"golang.org/x/sync/errgroup"
)

// setup opens the clients and finds the node name, key, endpoint and MTU.
func (a *agent) setup(ctx context.Context) error {
	var err error
	if a.consul, err = consul.New(a.cfg.Consul.options()); err != nil {
		return err
	}
	if a.docker, err = docker.New(a.cfg.DockerHost); err != nil {
		return err
	}
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	consulNode, consulAddr, err := a.waitConsul(ctx)
	if err != nil {
		return err
	}
	if a.cfg.NodeName, err = persistNodeName(a.cfg.DataDir, a.cfg.NodeName, consulNode); err != nil {
		return err
	}
	a.endpointPinned, a.mtuPinned = a.cfg.Endpoint != "", a.cfg.MTU != 0
	if a.cfg.Endpoint == "" {
		a.cfg.Endpoint = consulAddr
	}
	ep, _ := parseEndpoint(a.cfg.Endpoint, a.cfg.ListenPort)
	a.cfg.Endpoint = ep.String()
	name, mtu, err := netlink.LinkOf(ep.Addr())
	if err == nil {
		a.underlay = name
	}
	if a.cfg.MTU == 0 {
		if err != nil {
			a.log.Warn("cannot find the underlay MTU; assuming 1500", "endpoint", ep, "err", err)
			mtu = 1500
		}
		a.cfg.MTU = overlay.WantMTU(mtu)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the drover binary: %w", err)
	}
	a.link, err = wg.New(wg.Options{Name: a.cfg.Interface, Mode: a.cfg.WGMode, MTU: a.cfg.MTU, Exe: exe, DataDir: a.cfg.DataDir, Log: a.log})
	return err
}

// waitConsul asks the local Consul agent who it is, retrying until it
// answers: the agent may start before Consul does.
func (a *agent) waitConsul(ctx context.Context) (node, addr string, err error) {
	err = backoff.Retry(ctx, backoff.New(250*time.Millisecond, 10*time.Second), func(ctx context.Context) error {
		var err error
		node, addr, err = a.consul.Self(ctx)
		return err
	}, func(err error, wait time.Duration) time.Duration {
		a.log.Warn("waiting for the local Consul agent", "err", err)
		return aclWait(err, wait)
	}, a.consul.TokenChanged)
	return node, addr, err
}

// aclWait caps a retry delay at 1 s for an ACL refusal: a new token file
// ends the wait at once, and the cap covers a right granted to the same
// token.
func aclWait(err error, wait time.Duration) time.Duration {
	if consul.IsACLDenied(err) {
		return min(wait, time.Second)
	}
	return wait
}

// persistNodeName returns the node name kept in the data dir; the first start
// stores flag (or, if empty, def). A later, different --node-name is refused:
// a node's identity never changes under it.
func persistNodeName(dir, flag, def string) (string, error) {
	path := filepath.Join(dir, "node-name")
	if b, err := os.ReadFile(path); err == nil {
		kept := strings.TrimSpace(string(b))
		if flag != "" && flag != kept {
			return "", fmt.Errorf("--node-name %q differs from %q kept in %s; a node's name does not change (remove the file after `drover leave` to rename)", flag, kept, path)
		}
		return kept, nil
	}
	name := flag
	if name == "" {
		name = def
	}
	if err := atomicfile.Write(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("storing node name: %w", err)
	}
	return name, nil
}

// newLogger is the agent's log/slog logger in --log-format and at --log-level.
func newLogger(w interface{ Write([]byte) (int, error) }, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// startOptional starts, under g, what flags turn on: confgen (--confdir)
// and the load balancer with its certificates and access log (--lb).
func (a *agent) startOptional(gctx context.Context, g *errgroup.Group) error {
	if a.cfg.Confdir != "" {
		rs, err := confgen.LoadResources(a.cfg.Confdir, a.cfg.Prefix)
		if err != nil {
			return err
		}
		opt := confgen.Options{Runner: execcmd.Shell{}, Log: a.log.With("component", "confgen")}
		opt.Services = confgen.NewWatchedServices(gctx, a.watches, a.catalogNames, func() { a.confgen.KickAll() })
		a.confgen = confgen.NewWatcher(confgen.NewProcessor(opt), rs, a.watches)
		g.Go(func() error { return a.confgen.Run(gctx) })
	}
	if a.cfg.LB {
		c, err := a.startLB()
		if err != nil {
			return err
		}
		a.lb = c
		g.Go(func() error { return a.lb.Run(gctx) })
		certs := newCertSource(a.watches, a.cfg.LBCertDir)
		a.certs = lb.NewCertSync(certs, certShim{a.haproxy}, a.log.With("component", "certs"), 0)
		g.Go(func() error { return certs.run(gctx) })
		g.Go(func() error { return a.certs.Run(gctx) })
		if a.cfg.LBAccessLog != "" {
			a.access = newAccessLog(a.log.With("component", "access"), a.cfg.LBLogRate)
			g.Go(func() error {
				if err := haproxy.ListenAccessLog(gctx, a.cfg.LBAccessLog, a.access.write); err != nil {
					a.log.Error("access log stopped; requests are still served", "err", err)
				}
				return nil
			})
		}
	}
	return nil
}
