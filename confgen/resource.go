package confgen

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Resource is one template resource: the [template] table of a confd
// conf.d/*.toml file, with confd's keys and meaning, plus drover's
// debounce settings.
type Resource struct {
	File      string   // the conf.d file it came from
	Src       string   // template, relative to <confdir>/templates (or absolute)
	Dest      string   // the file to write
	Keys      []string // KV paths (under Prefix) the template reads
	Prefix    string   // global --prefix joined with the resource's prefix
	Owner     string
	UID, GID  int    // -1: keep the default (the process's)
	Mode      string // octal; empty: an existing dest keeps its mode, a new one gets 0644
	CheckCmd  string // run on the staged file ({{.src}}); non-zero keeps the old file
	ReloadCmd string // run after the file was replaced
	MinWait   time.Duration
	MaxWait   time.Duration
}

type resourceFile struct {
	Template struct {
		Src       string   `toml:"src"`
		Dest      string   `toml:"dest"`
		Keys      []string `toml:"keys"`
		Prefix    string   `toml:"prefix"`
		Owner     string   `toml:"owner"`
		UID       *int     `toml:"uid"`
		GID       *int     `toml:"gid"`
		Mode      string   `toml:"mode"`
		CheckCmd  string   `toml:"check_cmd"`
		ReloadCmd string   `toml:"reload_cmd"`
		MinWait   string   `toml:"min_wait"`
		MaxWait   string   `toml:"max_wait"`
	} `toml:"template"`
}

// LoadResources reads every <confdir>/conf.d/*.toml, in name order. Every
// problem of every file is reported at once; nothing is returned then.
func LoadResources(confdir, prefix string) ([]Resource, error) {
	files, err := filepath.Glob(filepath.Join(confdir, "conf.d", "*.toml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no template resources in %s", filepath.Join(confdir, "conf.d"))
	}
	sort.Strings(files)
	var out []Resource
	var errs []error
	for _, f := range files {
		r, err := parseResource(f, confdir, prefix)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func parseResource(file, confdir, prefix string) (Resource, error) {
	var rf resourceFile
	md, err := toml.DecodeFile(file, &rf)
	if err != nil {
		return Resource{}, fmt.Errorf("%s: %w", file, err)
	}
	var problems []string
	for _, k := range md.Undecoded() {
		problems = append(problems, fmt.Sprintf("unknown key %q", k.String()))
	}
	t := rf.Template
	r := Resource{File: file, Src: t.Src, Dest: t.Dest, Keys: t.Keys, Owner: t.Owner, UID: -1, GID: -1,
		Mode: t.Mode, CheckCmd: t.CheckCmd, ReloadCmd: t.ReloadCmd}
	r.Prefix = path.Join("/", prefix, t.Prefix)
	if r.Src == "" {
		problems = append(problems, "src is missing")
	} else if !filepath.IsAbs(r.Src) {
		r.Src = filepath.Join(confdir, "templates", r.Src)
	}
	if r.Dest == "" || !filepath.IsAbs(r.Dest) {
		problems = append(problems, fmt.Sprintf("dest %q: want an absolute path", r.Dest))
	}
	if len(r.Keys) == 0 {
		problems = append(problems, "keys is empty (list the KV paths the template reads)")
	}
	// An unset mode stays unset: the file keeps the mode it has (as with
	// confd), and a new file gets 0644 (see Resource.FileMode).
	if m, err := strconv.ParseUint(r.Mode, 8, 32); r.Mode != "" && (err != nil || m > 0o7777) {
		problems = append(problems, fmt.Sprintf("mode %q: want an octal mode such as 0644", r.Mode))
	}
	if t.UID != nil {
		r.UID = *t.UID
	}
	if t.GID != nil {
		r.GID = *t.GID
	}
	if r.Owner != "" {
		u, err := user.Lookup(r.Owner)
		if err != nil {
			problems = append(problems, fmt.Sprintf("owner %q: %v", r.Owner, err))
		} else if r.UID < 0 {
			r.UID, _ = strconv.Atoi(u.Uid)
			if r.GID < 0 {
				r.GID, _ = strconv.Atoi(u.Gid)
			}
		}
	}
	for name, s := range map[string]string{"min_wait": t.MinWait, "max_wait": t.MaxWait} {
		if s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			problems = append(problems, fmt.Sprintf("%s %q: want a duration such as 200ms", name, s))
			continue
		}
		if name == "min_wait" {
			r.MinWait = d
		} else {
			r.MaxWait = d
		}
	}
	if r.MaxWait > 0 && r.MaxWait < r.MinWait {
		problems = append(problems, "max_wait is shorter than min_wait")
	}
	if _, err := os.Stat(r.Src); r.Src != "" && err != nil {
		problems = append(problems, fmt.Sprintf("template %s: %v", r.Src, err))
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return Resource{}, fmt.Errorf("%s: %s", file, strings.Join(problems, "; "))
	}
	return r, nil
}

// Prefixes returns the KV prefixes (Consul style, no leading "/") the
// resource reads.
func (r Resource) Prefixes() []string {
	var out []string
	for _, k := range r.Keys {
		out = append(out, strings.TrimPrefix(path.Join(r.Prefix, k), "/"))
	}
	sort.Strings(out)
	return out
}

// StoreFor builds the template's store from a KV snapshot (Consul keys, no
// leading "/"): only the resource's keys, with its prefix stripped, as confd
// does.
func (r Resource) StoreFor(kv map[string]string) *Store {
	m := map[string]string{}
	prefix := strings.Trim(r.Prefix, "/")
	for _, p := range r.Prefixes() {
		for k, v := range kv {
			if k == p || strings.HasPrefix(k, strings.TrimSuffix(p, "/")+"/") || p == "" {
				// Keys keep their raw form (a folder marker "db/" stays
				// distinct from "db"), so NewStore decides collisions the
				// same way every time.
				rel := strings.TrimPrefix(strings.TrimPrefix(k, prefix), "/")
				m["/"+rel] = v
			}
		}
	}
	return NewStore(m)
}

// FileMode is the mode dest gets: Mode when set; else the mode dest already
// has (an operator's 0600 is never widened); else 0644.
func (r Resource) FileMode() os.FileMode {
	if r.Mode != "" {
		m, _ := strconv.ParseUint(r.Mode, 8, 32)
		return os.FileMode(m)
	}
	if fi, err := os.Stat(r.Dest); err == nil {
		return fi.Mode().Perm()
	}
	return 0o644
}
