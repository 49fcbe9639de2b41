package wg

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKeyKeptAcrossStarts(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKey(dir)
	if err != nil || k1 != k2 {
		t.Fatalf("second start: %v, same key %v", err, k1 == k2)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// A start that died between creating wg.key.tmp and renaming it must not
// block every later start (issue 12, defect 10).
func TestLeftoverTempKeyDoesNotBlockStart(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, KeyFile+".tmp")
	if err := os.WriteFile(tmp, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatalf("start with a leftover %s: %v", tmp, err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", tmp, err)
	}
	again, err := LoadOrCreateKey(dir)
	if err != nil || again != k {
		t.Errorf("the new key was not kept: %v", err)
	}
}
