package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplacesWithModeAndLeavesNoStage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.cfg")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Errorf("file %q mode %v, want \"new\" 0600", b, fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(ents))
	}
}

func TestDiscardKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("old"), 0o644)
	s, err := Stage(p, []byte("new"), Options{Mode: 0o644, UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(s.Name()); string(b) != "new" {
		t.Fatalf("stage holds %q", b)
	}
	s.Discard()
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("file %q after Discard, want old", b)
	}
	if _, err := os.Stat(s.Name()); !os.IsNotExist(err) {
		t.Errorf("stage left after Discard: %v", err)
	}
	if err := s.Commit(); err == nil {
		t.Error("Commit after Discard succeeded")
	}
}

func TestStageFailsWithThePath(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	p := filepath.Join(notDir, "f")
	err := Write(p, []byte("new"), 0o644)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("Write under a regular file = %v, want an error naming %s", err, p)
	}
	if b, _ := os.ReadFile(notDir); string(b) != "x" {
		t.Errorf("the file in the way changed to %q", b)
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "wg.key")
	for _, n := range []string{".wg.key" + StagePrefix + "123", ".wg.key" + StagePrefix + "456", "other"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	if n, err := RemoveStale(p); err != nil || n != 2 {
		t.Fatalf("RemoveStale = %d, %v; want 2", n, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "other" {
		t.Errorf("left %v, want only other", ents)
	}
}

// TestNoOtherRename fails when Go code outside this package renames files
// itself: replacing a file is done here, once. The status socket's
// rename-into-place (a socket, not content) is the one exception.
func TestNoOtherRename(t *testing.T) {
	root, _ := filepath.Abs("../..")
	self, _ := filepath.Abs(".")
	allowed := map[string]bool{"cmd/drover/unixsock.go": true}
	n := 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == self || strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "test" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		n++
		rel, _ := filepath.Rel(root, p)
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "os.Rename(") && !allowed[rel] {
			t.Errorf("%s renames files itself; use internal/atomicfile", rel)
		}
		return nil
	})
	if n < 50 {
		t.Fatalf("checked only %d files", n)
	}
}
