package confgen

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// ErrNotExist is returned (wrapped, with the key) by Store.Get and
// Store.GetValue when a key is missing. Test for it with errors.Is.
var ErrNotExist = errors.New("key does not exist")

// KVPair is one key and value; keys are confd-style absolute paths
// ("/app/db/host").
type KVPair struct{ Key, Value string }

// Store is an immutable snapshot of key/values with confd's memkv
// semantics: the functions get, gets, getv, getvs, ls, lsdir and exists
// read it. It is safe for concurrent use because nothing mutates it after
// NewStore, and every method returns fresh slices.
type Store struct {
	m    map[string]string // normalised key → value
	keys []string          // keys of m, sorted
}

// NewStore builds a Store from kv. Keys are normalised to an absolute,
// clean path without a trailing "/" ("app/db/" → "/app/db"), as confd does
// when it loads a backend's keys. Keys that normalise to "/" are dropped.
// When several keys normalise to the same path, the one that was already
// in normal form (but for a missing leading "/") wins, so a value beats a
// Consul folder marker; among equals the lexically smallest key wins.
func NewStore(kv map[string]string) *Store {
	orig := make([]string, 0, len(kv))
	for k := range kv {
		orig = append(orig, k)
	}
	sort.Strings(orig)

	s := &Store{m: make(map[string]string, len(kv))}
	exact := make(map[string]bool, len(kv)) // normalised key came from a clean original
	for _, k := range orig {
		n := normKey(k)
		if n == "/" {
			continue
		}
		clean := n == k || n == "/"+k
		if _, seen := s.m[n]; seen && (exact[n] || !clean) {
			continue
		}
		s.m[n] = kv[k]
		exact[n] = clean
	}
	s.keys = make([]string, 0, len(s.m))
	for k := range s.m {
		s.keys = append(s.keys, k)
	}
	sort.Strings(s.keys)
	return s
}

// normKey turns a key or directory into an absolute clean path; "" and
// "/" become "/".
func normKey(k string) string { return path.Join("/", k) }

// Get returns the pair stored at key (normalised like NewStore's keys). A
// missing key is an error wrapping ErrNotExist that names the key.
func (s *Store) Get(key string) (KVPair, error) {
	n := normKey(key)
	v, ok := s.m[n]
	if !ok {
		return KVPair{}, fmt.Errorf("%w: %s", ErrNotExist, key)
	}
	return KVPair{Key: n, Value: v}, nil
}

// GetValue returns the value stored at key. When key is missing it
// returns def[0] if given (further defaults are ignored, as in confd) and
// otherwise Get's error.
func (s *Store) GetValue(key string, def ...string) (string, error) {
	kv, err := s.Get(key)
	if err != nil {
		if len(def) > 0 {
			return def[0], nil
		}
		return "", err
	}
	return kv.Value, nil
}

// GetAll returns the pairs whose key matches pattern (path.Match syntax,
// so "*" stops at "/"), sorted by key. No match is an empty result, not an
// error; a malformed pattern is an error. A pattern without a leading "/"
// gets one, since every key has one.
func (s *Store) GetAll(pattern string) ([]KVPair, error) {
	if !strings.HasPrefix(pattern, "/") {
		pattern = "/" + pattern
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("matching keys against %q: %w", pattern, err)
	}
	out := []KVPair{}
	for _, k := range s.keys {
		ok, err := path.Match(pattern, k)
		if err != nil {
			return nil, fmt.Errorf("matching keys against %q: %w", pattern, err)
		}
		if ok {
			out = append(out, KVPair{Key: k, Value: s.m[k]})
		}
	}
	return out, nil
}

// GetAllValues returns the values of GetAll(pattern), sorted by value (not
// by key), as confd does.
func (s *Store) GetAllValues(pattern string) ([]string, error) {
	kvs, err := s.GetAll(pattern)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, kv.Value)
	}
	sort.Strings(out)
	return out, nil
}

// List returns the sorted, unique names of the direct children of
// directory p, both keys and directories: with "/a/b" and "/a/c/d",
// List("/a") is ["b", "c"]. As in confd, when p is itself a key its own
// base name is included too. A missing p gives an empty list.
func (s *Store) List(p string) []string {
	p = normKey(p)
	return s.children(p, func(k, rest string) (string, bool) {
		if k == p {
			return path.Base(k), true
		}
		if rest == "" {
			return "", false
		}
		name, _, _ := strings.Cut(rest, "/")
		return name, true
	})
}

// ListDir returns the sorted, unique names of the direct children of
// directory p that are directories themselves (have keys below them):
// with "/a/b" and "/a/c/d", ListDir("/a") is ["c"].
func (s *Store) ListDir(p string) []string {
	return s.children(normKey(p), func(_, rest string) (string, bool) {
		name, _, isDir := strings.Cut(rest, "/")
		return name, isDir
	})
}

// children collects pick(key, rest) over the keys, where rest is the part
// of key below directory p ("" when key is not below p).
func (s *Store) children(p string, pick func(key, rest string) (string, bool)) []string {
	prefix := p + "/"
	if p == "/" {
		prefix = "/"
	}
	out := []string{}
	for _, k := range s.keys {
		rest, below := strings.CutPrefix(k, prefix)
		if !below {
			rest = ""
		}
		if name, ok := pick(k, rest); ok && name != "" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Exists reports whether key (normalised like NewStore's keys) is stored.
func (s *Store) Exists(key string) bool {
	_, ok := s.m[normKey(key)]
	return ok
}
