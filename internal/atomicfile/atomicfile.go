// Package atomicfile is drover's one way to replace a file: the new content
// is staged in a hidden file beside the target (same directory, so the
// rename is atomic), with its mode and owner set and fsynced, then renamed
// over the target and the directory fsynced. A reader, or a crash at any
// point, sees the old file or the new one, never a part; a full disk or a
// permission problem fails while staging, before anything is replaced; a
// stage that is not committed is removed.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Options are the new file's mode and owner; UID or GID -1 keeps the
// process's.
type Options struct {
	Mode     os.FileMode
	UID, GID int
}

// Staged is new content waiting beside its target.
type Staged struct {
	target, name string
	done         bool
}

// StagePrefix starts the name of every stage file: "." + the target's base
// name + StagePrefix + a random suffix. Leftovers of a crash can be found
// (and removed) by it.
const StagePrefix = ".drover-stage-"

// Stage writes data to a new file beside path.
func Stage(path string, data []byte, o Options) (*Staged, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+StagePrefix)
	if err != nil {
		return nil, fmt.Errorf("staging %s: %w", path, err)
	}
	s := &Staged{target: path, name: f.Name()}
	_, werr := f.Write(data)
	merr := f.Chmod(o.Mode.Perm())
	var oerr error
	if o.UID >= 0 || o.GID >= 0 {
		oerr = f.Chown(o.UID, o.GID)
	}
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, merr, oerr, serr, cerr); err != nil {
		s.Discard()
		return nil, fmt.Errorf("staging %s: %w", path, err)
	}
	return s, nil
}

// Name is the staged file's path (for a check command to read).
func (s *Staged) Name() string { return s.name }

// Commit renames the stage over the target and fsyncs the directory.
func (s *Staged) Commit() error {
	if s.done {
		return fmt.Errorf("replacing %s: stage already used", s.target)
	}
	s.done = true
	if err := os.Rename(s.name, s.target); err != nil {
		os.Remove(s.name)
		return fmt.Errorf("replacing %s: %w", s.target, err)
	}
	if d, err := os.Open(filepath.Dir(s.target)); err == nil {
		err = d.Sync()
		d.Close()
		// Some file systems cannot fsync a directory (EINVAL): the rename
		// stands.
		if err != nil && !errors.Is(err, fs.ErrInvalid) {
			return fmt.Errorf("syncing the directory of %s: %w", s.target, err)
		}
	}
	return nil
}

// Keep leaves the stage where it is, uncommitted (for an operator to look
// at after a failed check), and returns its path.
func (s *Staged) Keep() string {
	s.done = true
	return s.name
}

// Discard removes the stage; it does nothing after Commit.
func (s *Staged) Discard() {
	if !s.done {
		s.done = true
		os.Remove(s.name)
	}
}

// Write replaces path with data (Stage, then Commit).
func Write(path string, data []byte, mode os.FileMode) error {
	s, err := Stage(path, data, Options{Mode: mode, UID: -1, GID: -1})
	if err != nil {
		return err
	}
	return s.Commit()
}

// RemoveStale removes the stage files a crash left beside path and reports
// how many.
func RemoveStale(path string) (int, error) {
	dir, base := filepath.Dir(path), "."+filepath.Base(path)+StagePrefix
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", dir, err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), base) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
				n++
			}
		}
	}
	return n, nil
}

// RemoveStaleIn removes every stage file a crash left in dir (any target)
// and reports how many; for a directory only its owner writes into.
func RemoveStaleIn(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", dir, err)
	}
	n := 0
	for _, e := range ents {
		if !e.IsDir() && strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), StagePrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
				n++
			}
		}
	}
	return n, nil
}
