package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/watch"
	"github.com/drover-net/drover/internal/aclpolicy"
	"github.com/drover-net/drover/internal/kick"
	"github.com/drover-net/drover/lb"
)

// certSource is lb.CertSource over the KV watch of drover/v1/certs/ and
// the files of --lb-cert-dir (*.pem, read every 2 s; a changed size or
// modification time kicks a pass).
type certSource struct {
	kv     *watch.Latest[map[string]discovery.KVPair]
	kvKick <-chan struct{}
	dir    string
	kick   chan struct{}
}

func newCertSource(w *watch.Hub, dir string) *certSource {
	s := &certSource{dir: dir, kick: kick.New()}
	s.kv, s.kvKick = w.KV(aclpolicy.CertPrefix)
	return s
}

func (s *certSource) Changed() <-chan struct{} { return s.kick }

// Certs returns the bundles by name: the KV key after the prefix, the file
// name without ".pem".
func (s *certSource) Certs() (map[string][]byte, map[string][]byte, error) {
	pairs, ok, _ := s.kv.Get()
	if err := s.kv.Err(); err != nil {
		return nil, nil, fmt.Errorf("KV %s: %w", aclpolicy.CertPrefix, err)
	}
	if !ok {
		return nil, nil, fmt.Errorf("KV %s: %w", aclpolicy.CertPrefix, lb.ErrNotRead)
	}
	kv := map[string][]byte{}
	for k, p := range pairs {
		if name := strings.TrimPrefix(k, aclpolicy.CertPrefix); name != "" && !strings.HasSuffix(name, "/") {
			kv[name] = p.Value
		}
	}
	dir := map[string][]byte{}
	if s.dir != "" {
		ents, err := os.ReadDir(s.dir)
		if err != nil {
			return nil, nil, fmt.Errorf("reading --lb-cert-dir: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".pem") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
			if err != nil {
				return nil, nil, fmt.Errorf("reading --lb-cert-dir: %w", err)
			}
			dir[strings.TrimSuffix(e.Name(), ".pem")] = b
		}
	}
	return kv, dir, nil
}

// run passes on the KV watch's kicks and kicks when a file in the
// directory appears, goes or changes, until ctx ends (one goroutine, under
// the agent's errgroup).
func (s *certSource) run(ctx context.Context) error {
	last := ""
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if s.dir != "" {
			sig := ""
			if ents, err := os.ReadDir(s.dir); err == nil {
				for _, e := range ents {
					if fi, err := e.Info(); err == nil {
						sig += fmt.Sprintf("%s %d %d;", e.Name(), fi.Size(), fi.ModTime().UnixNano())
					}
				}
			}
			if sig != last {
				last = sig
				kick.Send(s.kick)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.kvKick:
			kick.Send(s.kick)
		case <-t.C:
		}
	}
}
