package lb

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type fakeCertSource struct {
	kv, dir map[string][]byte
	err     error
}

func (f *fakeCertSource) Certs() (map[string][]byte, map[string][]byte, error) {
	return f.kv, f.dir, f.err
}
func (f *fakeCertSource) Changed() <-chan struct{} { return nil }

// fakeInstaller holds installed bundles by name.
type fakeInstaller struct {
	files   map[string]Cert
	applies int
}

func (f *fakeInstaller) InstalledCerts() (map[string]string, error) {
	out := map[string]string{}
	for n, c := range f.files {
		out[n] = c.Fingerprint
	}
	return out, nil
}

func (f *fakeInstaller) ApplyCerts(_ context.Context, add, update []Cert, remove []string) error {
	f.applies++
	for _, c := range append(add, update...) {
		f.files[c.Name] = c
	}
	for _, n := range remove {
		delete(f.files, n)
	}
	return nil
}

func TestCertSyncKeepsTheGoodOne(t *testing.T) {
	day := 24 * time.Hour
	v1, _ := bundle(t, []string{"secure.example"}, certNow.Add(-day), certNow.Add(day), false)
	v2, _ := bundle(t, []string{"secure.example"}, certNow.Add(-day), certNow.Add(day), false)
	src := &fakeCertSource{kv: map[string][]byte{"secure-example": v1}}
	dst := &fakeInstaller{files: map[string]Cert{}}
	s := NewCertSync(src, dst, slog.New(slog.NewTextHandler(io.Discard, nil)), 0)
	ctx := context.Background()

	s.Pass(ctx, certNow)
	fp1 := dst.files["secure-example"].Fingerprint
	if dst.applies != 1 || fp1 == "" {
		t.Fatalf("after the first pass: %d applies, installed %v", dst.applies, dst.files)
	}
	s.Pass(ctx, certNow)
	if dst.applies != 1 {
		t.Errorf("an unchanged source applied again (%d)", dst.applies)
	}
	// A bad new version: refused, v1 keeps serving.
	src.kv["secure-example"] = []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
	s.Pass(ctx, certNow)
	st := s.Status()
	if dst.files["secure-example"].Fingerprint != fp1 || len(st.Refused) != 1 || !strings.Contains(st.Refused[0], "keeps serving") {
		t.Errorf("bad bundle: installed %v, refused %v", dst.files, st.Refused)
	}
	// An unreadable source changes nothing.
	src.err = errors.New("consul down")
	s.Pass(ctx, certNow)
	if _, ok := dst.files["secure-example"]; !ok || !strings.Contains(s.Status().LastError, "consul down") {
		t.Errorf("source error removed the certificate or was not reported: %v %q", dst.files, s.Status().LastError)
	}
	src.err = nil
	// A good new version replaces it.
	src.kv["secure-example"] = v2
	s.Pass(ctx, certNow)
	if dst.files["secure-example"].Fingerprint == fp1 || dst.applies != 2 {
		t.Errorf("rotation not applied: %d applies", dst.applies)
	}
	for _, c := range s.Status().Certs {
		if c.Bundle != nil {
			t.Error("status holds a bundle")
		}
	}
	// The key deleted from KV: removed.
	delete(src.kv, "secure-example")
	s.Pass(ctx, certNow)
	if len(dst.files) != 0 {
		t.Errorf("deleted bundle still installed: %v", dst.files)
	}
}
