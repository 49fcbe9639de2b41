package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/drover-net/drover/lb"
	"github.com/drover-net/drover/lb/haproxy"
)

// proxyShim adapts the HAProxy adapter to lb.Proxy: lb's states become
// the config bytes lb renders for the adapter's paths (with the state as
// the running record, and lb's filter of the server-state dump), lb's
// operations the adapter's, and the adapter's validation refusal lb's
// ErrInvalidConfig.
type proxyShim struct {
	h   *haproxy.HAProxy
	log *slog.Logger
}

var (
	_ lb.Proxy         = proxyShim{}
	_ lb.CertInstaller = certShim{}
)

// config is what the adapter installs for st.
func (p proxyShim) config(st lb.State) (haproxy.Config, error) {
	rec, err := json.Marshal(st)
	if err != nil {
		return haproxy.Config{}, fmt.Errorf("saving running state: %w", err)
	}
	return haproxy.Config{
		Bytes:     lb.Render(st, lb.Globals(p.h.Globals())),
		Record:    rec,
		KeepState: func(dump string) string { return lb.KeepServerState(dump, st) },
	}, nil
}

func (p proxyShim) Running() (lb.State, bool) {
	b, ok := p.h.Record()
	if !ok {
		return lb.State{}, false
	}
	var st lb.State
	if err := json.Unmarshal(b, &st); err != nil {
		p.log.Warn("ignoring unreadable running state; the next change reloads HAProxy", "file", p.h.RecordPath(), "err", err)
		return lb.State{}, false
	}
	return st, true
}

func (p proxyShim) Start(ctx context.Context, initial lb.State) error {
	c, err := p.config(initial)
	if err != nil {
		return err
	}
	return p.h.Start(ctx, c)
}

func (p proxyShim) Ensure(ctx context.Context) (bool, error) { return p.h.Ensure(ctx) }

func (p proxyShim) Apply(ctx context.Context, ops []lb.Op) error {
	out := make([]haproxy.ServerOp, len(ops))
	for i, o := range ops {
		out[i] = haproxy.ServerOp{Kind: haproxy.OpKind(o.Kind), Backend: o.Backend, Server: o.Server, Addr: o.Addr, Weight: o.Weight}
	}
	return p.h.Apply(ctx, out)
}

func (p proxyShim) Persist(ctx context.Context, st lb.State) error {
	c, err := p.config(st)
	if err != nil {
		return err
	}
	return lbError(p.h.Persist(ctx, c))
}

func (p proxyShim) Reload(ctx context.Context, next lb.State) error {
	c, err := p.config(next)
	if err != nil {
		return err
	}
	return lbError(p.h.Reload(ctx, c))
}

// lbError adds lb.ErrInvalidConfig to an error of a config the adapter's
// validation refused; its text stays the adapter's.
func lbError(err error) error {
	if errors.Is(err, haproxy.ErrInvalid) {
		return invalidConfig{err}
	}
	return err
}

type invalidConfig struct{ err error }

func (e invalidConfig) Error() string   { return e.err.Error() }
func (e invalidConfig) Unwrap() []error { return []error{e.err, lb.ErrInvalidConfig} }

// certShim adapts the HAProxy adapter to lb.CertInstaller.
type certShim struct{ h *haproxy.HAProxy }

func (c certShim) InstalledCerts() (map[string]string, error) { return c.h.InstalledCerts() }

func (c certShim) ApplyCerts(ctx context.Context, add, update []lb.Cert, remove []string) error {
	return c.h.ApplyCerts(ctx, certFiles(add), certFiles(update), remove)
}

func certFiles(cs []lb.Cert) []haproxy.CertFile {
	out := make([]haproxy.CertFile, len(cs))
	for i, c := range cs {
		out[i] = haproxy.CertFile{Name: c.Name, Bundle: c.Bundle}
	}
	return out
}
