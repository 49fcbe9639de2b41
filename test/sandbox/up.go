package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// state is what a finished Up records; a later Up with the same shape keeps
// the running cluster and only restarts what died.
type state struct {
	Prefix        string    `json:"prefix"`
	Hosts         int       `json:"hosts"`
	ConsulServers int       `json:"consul_servers"`
	LB            string    `json:"lb,omitempty"`
	Created       time.Time `json:"created"`
}

func (s *Sandbox) stateFile() string { return filepath.Join(s.opt.Dir, "state.json") }

func (s *Sandbox) readState() (state, bool) {
	var st state
	b, err := os.ReadFile(s.stateFile())
	if err != nil || json.Unmarshal(b, &st) != nil {
		return state{}, false
	}
	return st, true
}

// Up makes the sandbox exist with its shape and every daemon running, then
// loads the demo image into every host. It converges: a sandbox of the same
// shape that is already up is kept (dead daemons are restarted); anything
// else with the prefix, such as the remains of a killed run or a sandbox of
// another shape, is removed first.
func (s *Sandbox) Up(ctx context.Context) error {
	for _, b := range []string{"consul", "drover", "drover-demo"} {
		if _, err := os.Stat(s.bin(b)); err != nil {
			return fmt.Errorf("sandbox needs %s (run `make build`): %w", s.bin(b), err)
		}
	}
	if st, ok := s.readState(); ok && s.canGrow(st) {
		s.log.Info("sandbox already up; checking its daemons", "prefix", s.opt.Prefix, "hosts", st.Hosts)
		for i := st.Hosts + 1; i <= s.opt.Hosts; i++ {
			s.log.Info("adding a host", "host", s.Host(i).Name)
			if err := s.buildHost(ctx, s.Host(i)); err != nil {
				return err
			}
		}
	} else {
		if len(s.netnsList()) > 0 || ok || dirExists(s.opt.Dir) || dirExists(s.opt.RunDir) {
			s.log.Info("removing an earlier sandbox with this prefix", "prefix", s.opt.Prefix)
			if err := s.Down(ctx); err != nil {
				return fmt.Errorf("removing the earlier sandbox: %w", err)
			}
		}
		if err := s.build(ctx); err != nil {
			return err
		}
	}
	if err := s.startAll(ctx); err != nil {
		return err
	}
	st := state{Prefix: s.opt.Prefix, Hosts: s.opt.Hosts, ConsulServers: s.opt.ConsulServers, LB: s.opt.LB, Created: time.Now().UTC()}
	if old, ok := s.readState(); ok && s.canGrow(old) {
		st.Created = old.Created
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(s.stateFile(), b, 0o644); err != nil {
		return fmt.Errorf("recording sandbox state: %w", err)
	}
	return nil
}

// canGrow reports whether the recorded sandbox st exists and becomes this
// one by adding hosts.
func (s *Sandbox) canGrow(st state) bool {
	if st.Prefix != s.opt.Prefix || st.ConsulServers != s.opt.ConsulServers || st.Hosts > s.opt.Hosts {
		return false
	}
	old := *s
	old.opt.Hosts = st.Hosts
	// A sandbox from before Consul was secured is rebuilt, not grown.
	return fileExists(s.CAFile()) && old.namespacesPresent()
}

func (s *Sandbox) sameShape(st state) bool {
	return st.Prefix == s.opt.Prefix && st.Hosts == s.opt.Hosts && st.ConsulServers == s.opt.ConsulServers
}

func (s *Sandbox) namespacesPresent() bool {
	names := []string{s.SwitchNS()}
	for _, sv := range s.Servers() {
		names = append(names, sv.NetNS)
	}
	for _, h := range s.Hosts() {
		if _, err := os.Stat(h.MountNS); err != nil {
			return false
		}
		names = append(names, h.NetNS)
	}
	for _, n := range names {
		if !netnsExists(n) {
			return false
		}
	}
	return true
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// build creates the namespaces, links and directories of a new sandbox.
func (s *Sandbox) build(ctx context.Context) error {
	s.log.Info("building the underlay", "switch", s.SwitchNS(), "network", Underlay.String())
	for _, d := range []string{s.opt.Dir, s.opt.RunDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if err := s.buildSwitch(ctx); err != nil {
		return err
	}
	for _, sv := range s.Servers() {
		if err := s.attach(ctx, sv.NetNS, sv.Name, sv.Addr.String()); err != nil {
			return err
		}
		if err := s.firewallNS(ctx, sv.NetNS, true, false); err != nil {
			return err
		}
	}
	for _, h := range s.Hosts() {
		if err := s.buildHost(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// buildHost creates host h's namespaces and directories.
func (s *Sandbox) buildHost(ctx context.Context, h Host) error {
	if err := os.MkdirAll(h.Run, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", h.Run, err)
	}
	if err := s.attach(ctx, h.NetNS, h.Name, h.Addr.String()); err != nil {
		return err
	}
	if err := s.firewallNS(ctx, h.NetNS, false, s.opt.LB == h.Name); err != nil {
		return err
	}
	return s.buildMountNS(ctx, h)
}

// startAll starts whatever daemon is not running, waits until the cluster
// is usable and loads the demo image where it is missing.
func (s *Sandbox) startAll(ctx context.Context) error {
	if err := s.ensureSecrets(ctx); err != nil {
		return err
	}
	for _, sv := range s.Servers() {
		if err := s.ensureServer(sv); err != nil {
			return err
		}
	}
	// Client agents start with their agent tokens, which need the servers.
	if err := s.ensureTokens(ctx); err != nil {
		return err
	}
	for _, h := range s.Hosts() {
		if err := s.ensureHost(h); err != nil {
			return err
		}
	}
	s.log.Info("waiting for Consul and dockerd", "hosts", s.opt.Hosts, "servers", s.opt.ConsulServers)
	if err := s.waitConsul(ctx); err != nil {
		return err
	}
	archive, err := ImageArchive(s.bin("drover-demo"), DemoImage)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range s.Hosts() {
		if err := s.waitHost(ctx, h); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.loadImage(ctx, h, archive); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil || !s.opt.Agents {
		return err
	}
	for _, h := range s.Hosts() {
		if err := s.ensureAgent(h); err != nil {
			return err
		}
	}
	for _, h := range s.Hosts() {
		if err := s.waitAgent(ctx, h); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
