package confgen

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// confdir writes a confd-style directory: files maps relative paths to
// contents.
func confdir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadResources(t *testing.T) {
	dir := confdir(t, map[string]string{
		"templates/a.tmpl": "x",
		"conf.d/a.toml": `[template]
src = "a.tmpl"
dest = "/etc/a.conf"
keys = ["/db", "/cache"]
prefix = "app"
uid = 0
gid = 0
mode = "0600"
check_cmd = "true {{.src}}"
reload_cmd = "true"
min_wait = "100ms"
max_wait = "1s"
`,
	})
	rs, err := LoadResources(dir, "/prod")
	if err != nil {
		t.Fatal(err)
	}
	want := []Resource{{File: filepath.Join(dir, "conf.d/a.toml"), Src: filepath.Join(dir, "templates/a.tmpl"), Dest: "/etc/a.conf",
		Keys: []string{"/db", "/cache"}, Prefix: "/prod/app", UID: 0, GID: 0, Mode: "0600", CheckCmd: "true {{.src}}",
		ReloadCmd: "true", MinWait: 100 * time.Millisecond, MaxWait: time.Second}}
	if diff := cmp.Diff(want, rs); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if got := rs[0].Prefixes(); strings.Join(got, " ") != "prod/app/cache prod/app/db" {
		t.Errorf("Prefixes = %v", got)
	}
}

func TestLoadResourcesErrors(t *testing.T) {
	dir := confdir(t, map[string]string{
		"conf.d/bad.toml": `[template]
dest = "relative.conf"
mode = "999"
owner = "no-such-user-drover"
min_wait = "soon"
colour = "blue"
`,
		"conf.d/worse.toml": `[template]
src = "missing.tmpl"
dest = "/etc/x"
keys = ["/k"]
min_wait = "2s"
max_wait = "1s"
`,
	})
	_, err := LoadResources(dir, "")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"bad.toml", "src is missing", `dest "relative.conf": want an absolute path`, "keys is empty",
		`mode "999"`, `owner "no-such-user-drover"`, `min_wait "soon"`, `unknown key "template.colour"`,
		"worse.toml", "max_wait is shorter than min_wait", "missing.tmpl"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := LoadResources(t.TempDir(), ""); err == nil || !strings.Contains(err.Error(), "no template resources") {
		t.Errorf("empty confdir: %v", err)
	}
}

// fakeRunner records commands; commands containing "FAIL" fail.
type fakeRunner struct{ ran []string }

func (f *fakeRunner) Run(_ context.Context, cmd string) ([]byte, error) {
	f.ran = append(f.ran, cmd)
	if strings.Contains(cmd, "FAIL") {
		return []byte("check said no"), errors.New("exit status 1")
	}
	return nil, nil
}

func TestSync(t *testing.T) {
	ctx := context.Background()
	dir := confdir(t, map[string]string{"templates/t.tmpl": `host={{getv "/db/host"}} port={{getv "/db/port" "5432"}}` + "\n"})
	dest := filepath.Join(dir, "out.conf")
	r := Resource{File: "t.toml", Src: filepath.Join(dir, "templates/t.tmpl"), Dest: dest, Keys: []string{"/db"},
		Prefix: "/prod", UID: os.Getuid(), GID: os.Getgid(), Mode: "0640", CheckCmd: "check {{.src}}", ReloadCmd: "reload"}
	kv := map[string]string{"prod/db/host": "db1", "prod/other/x": "ignored", "db/host": "not-under-prefix"}
	run := &fakeRunner{}
	p := NewProcessor(Options{Runner: run, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})

	out, err := p.Sync(ctx, r, kv)
	if err != nil || !out.Changed || !out.Reloaded {
		t.Fatalf("first sync: %+v %v", out, err)
	}
	if got, _ := os.ReadFile(dest); string(got) != "host=db1 port=5432\n" {
		t.Errorf("dest = %q", got)
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v", fi.Mode())
	}
	if len(run.ran) != 2 || !strings.HasPrefix(run.ran[0], "check "+dir+"/.out.conf.drover-") || run.ran[1] != "reload" {
		t.Errorf("commands = %q", run.ran)
	}

	run.ran = nil
	if out, err := p.Sync(ctx, r, kv); err != nil || out.Changed || len(run.ran) != 0 {
		t.Errorf("unchanged sync: %+v %v, ran %q", out, err, run.ran)
	}

	r.Mode = "0600" // mode alone changes the file
	if out, err := p.Sync(ctx, r, kv); err != nil || !out.Changed {
		t.Errorf("mode change: %+v %v", out, err)
	}

	r.CheckCmd = "FAIL {{.src}}"
	kv["prod/db/host"] = "db2"
	run.ran = nil
	if _, err := p.Sync(ctx, r, kv); err == nil || !strings.Contains(err.Error(), "check said no") {
		t.Errorf("failing check: %v", err)
	}
	if got, _ := os.ReadFile(dest); string(got) != "host=db1 port=5432\n" {
		t.Errorf("failing check replaced dest: %q", got)
	}
	if len(run.ran) != 1 {
		t.Errorf("reload ran after a failed check: %q", run.ran)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".out.conf.drover-*")); len(left) != 0 {
		t.Errorf("stage files left: %v", left)
	}

	delete(kv, "prod/db/host")
	if _, err := p.Sync(ctx, r, kv); err == nil || !strings.Contains(err.Error(), "/db/host") {
		t.Errorf("missing key: %v", err)
	}

	r.CheckCmd = "check"
	kv["prod/db/host"] = "db3"
	noop := NewProcessor(Options{Noop: true, Runner: run, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	run.ran = nil
	out, err = noop.Sync(ctx, r, kv)
	if err != nil || !out.Changed || !strings.Contains(out.Diff, "+host=db3") || len(run.ran) != 0 {
		t.Errorf("noop: %+v %v %q", out, err, run.ran)
	}
	if got, _ := os.ReadFile(dest); string(got) != "host=db1 port=5432\n" {
		t.Errorf("noop wrote dest: %q", got)
	}
	syncOnly := NewProcessor(Options{SyncOnly: true, Runner: run, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if out, err := syncOnly.Sync(ctx, r, kv); err != nil || !out.Changed || out.Reloaded || len(run.ran) != 0 {
		t.Errorf("sync-only: %+v %v %q", out, err, run.ran)
	}
}

func TestBadTemplateKeepsFile(t *testing.T) {
	dir := confdir(t, map[string]string{"templates/t.tmpl": "{{ getv \"/a\" "})
	dest := filepath.Join(dir, "out.conf")
	if err := os.WriteFile(dest, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Resource{File: "t.toml", Src: filepath.Join(dir, "templates/t.tmpl"), Dest: dest, Keys: []string{"/a"}, Prefix: "/", UID: -1, GID: -1, Mode: "0644"}
	p := NewProcessor(Options{Runner: &fakeRunner{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := p.Sync(context.Background(), r, map[string]string{"a": "1"}); err == nil || !strings.Contains(err.Error(), "parsing template") {
		t.Errorf("bad template: %v", err)
	}
	if got, _ := os.ReadFile(dest); string(got) != "old\n" {
		t.Errorf("dest = %q", got)
	}
}

// An unset mode keeps the mode the file has, as confd does: an operator's
// 0600 is never widened to 0644 (issue 12, defect 4). A new file gets 0644.
func TestUnsetModeKeepsExistingMode(t *testing.T) {
	dir := confdir(t, map[string]string{"templates/t.tmpl": "a={{getv \"/a\"}}\n"})
	secret := filepath.Join(dir, "secret.conf")
	if err := os.WriteFile(secret, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := NewProcessor(Options{Runner: &fakeRunner{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, tc := range []struct {
		dest string
		want os.FileMode
	}{{secret, 0o600}, {filepath.Join(dir, "new.conf"), 0o644}} {
		r := Resource{File: "t.toml", Src: filepath.Join(dir, "templates/t.tmpl"), Dest: tc.dest, Keys: []string{"/a"}, Prefix: "/", UID: -1, GID: -1}
		if _, err := p.Sync(context.Background(), r, map[string]string{"a": "1"}); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(tc.dest)
		if err != nil || fi.Mode().Perm() != tc.want {
			t.Errorf("%s: mode %v (%v), want %v", filepath.Base(tc.dest), fi.Mode().Perm(), err, tc.want)
		}
		if got, _ := os.ReadFile(tc.dest); string(got) != "a=1\n" {
			t.Errorf("%s = %q", tc.dest, got)
		}
	}
}

// The diff of a rendered file may carry secrets: it never reaches JSON
// (status, `drover confgen --onetime` output) — issue 12, defect 4.
func TestOutcomeJSONHasNoDiff(t *testing.T) {
	b, err := json.Marshal(Outcome{Resource: "r", Dest: "/x", Changed: true, Diff: "-password=old\n+password=s3cret"})
	if err != nil || strings.Contains(string(b), "s3cret") {
		t.Errorf("outcome JSON %s (%v) carries the diff", b, err)
	}
}

// flakyRunner fails reload_cmd the first `fails` times.
type flakyRunner struct {
	fails int
	ran   []string
}

func (f *flakyRunner) Run(_ context.Context, cmd string) ([]byte, error) {
	f.ran = append(f.ran, cmd)
	if cmd == "reload" && f.fails > 0 {
		f.fails--
		return []byte("service not running"), errors.New("exit status 1")
	}
	return nil, nil
}

// A failed reload_cmd is run again on the next pass although the file is
// already in place, until it succeeds; then never again (issue 12, defect
// 5: identical bytes short-circuited and the error was cleared).
func TestFailedReloadIsRetried(t *testing.T) {
	ctx := context.Background()
	dir := confdir(t, map[string]string{"templates/t.tmpl": "a={{getv \"/a\"}}\n"})
	r := Resource{File: "t.toml", Src: filepath.Join(dir, "templates/t.tmpl"), Dest: filepath.Join(dir, "out.conf"),
		Keys: []string{"/a"}, Prefix: "/", UID: -1, GID: -1, ReloadCmd: "reload"}
	run := &flakyRunner{fails: 2}
	p := NewProcessor(Options{Runner: run, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	kv := map[string]string{"a": "1"}
	for i, want := range []string{"fail", "fail", "reloaded", "nothing"} {
		out, err := p.Sync(ctx, r, kv)
		switch want {
		case "fail":
			if err == nil || !strings.Contains(err.Error(), "reload_cmd") {
				t.Fatalf("pass %d: err = %v, want the reload failure", i, err)
			}
		case "reloaded":
			if err != nil || !out.Reloaded {
				t.Fatalf("pass %d: %+v, %v; want the retried reload", i, out, err)
			}
		case "nothing":
			if err != nil || out.Reloaded || out.Changed {
				t.Fatalf("pass %d: %+v, %v; want nothing", i, out, err)
			}
		}
	}
	if len(run.ran) != 3 {
		t.Errorf("ran %v, want reload 3 times", run.ran)
	}
}
