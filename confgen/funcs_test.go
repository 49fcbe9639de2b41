package confgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"text/template"

	"github.com/google/go-cmp/cmp"

	"github.com/drover-net/drover/discovery/contract"
)

// The golden cases live in testdata/funcs: <case>.input is a header of
// "key = value" lines (plus "#" comments and the directive "@services
// none"), a line "---", then the template; <case>.golden is the rendered
// output, or "ERROR: <substring>" when rendering must fail with an error
// containing the substring. Regenerate with
//
//	go test ./confgen/ -run Funcs -update
//
// and review the diff.

// The -update flag is registered in init, and only if no other test file
// of the package has registered it, so two golden suites can share it.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata")
	}
}

func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

const funcsDir = "testdata/funcs"

type fakeServices struct{}

func (fakeServices) Service(name string) ([]Instance, error) {
	switch name {
	case "unread":
		return nil, errors.New("reading service unread: no answer from Consul within 5s")
	case "web":
		return []Instance{
			{ID: "drover:n1:0123456789ab:8080", Service: "web", Node: "n1", Address: "10.42.1.10", Port: 8080,
				Tags: []string{"http", "v1"}, Meta: map[string]string{"version": "1.2", contract.KeyLBMode: "http"}},
			{ID: "drover:n2:ba9876543210:8080", Service: "web", Node: "n2", Address: "10.42.2.10", Port: 8080},
		}, nil
	case "db":
		return []Instance{{ID: "drover:n3:cafecafecafe:5432", Service: "db", Node: "n3", Address: "10.42.3.5", Port: 5432}}, nil
	}
	return nil, nil
}

func (fakeServices) ServiceNames() ([]string, error) {
	return []string{"db", "drover-node", "web"}, nil
}
func (fakeServices) Nodes() ([]string, error) { return []string{"n1", "n2", "n3"}, nil }
func (fakeServices) MeshPeers() ([]Peer, error) {
	return []Peer{
		{Node: "n1", Subnet: "10.42.1.0/24", Endpoint: "192.0.2.1:51820", Reachable: true},
		{Node: "n2", Subnet: "10.42.2.0/24", Endpoint: "192.0.2.2:51820", Reachable: false},
	}, nil
}

// funcsCase is one parsed .input file.
type funcsCase struct {
	kv    map[string]string
	svc   Services
	tmpl  string
	input string // file name, for messages
}

func parseFuncsCase(t *testing.T, file string) funcsCase {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	header, tmpl, ok := strings.Cut("\n"+string(b), "\n---\n")
	if !ok {
		t.Fatalf("%s: no line \"---\" between the header and the template", file)
	}
	c := funcsCase{kv: map[string]string{}, svc: fakeServices{}, tmpl: tmpl, input: file}
	sc := bufio.NewScanner(strings.NewReader(header))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case line == "@services none":
			c.svc = nil
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s:%d: want \"key = value\", got %q", file, n, line)
			}
			c.kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return c
}

// render executes c the way process.go does (missingkey=error, no data).
func (c funcsCase) render(name string) (string, error) {
	t, err := template.New(name).Funcs(FuncMap(NewStore(c.kv), c.svc)).Option("missingkey=error").Parse(c.tmpl)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	if err := t.Execute(&out, nil); err != nil {
		return "", err
	}
	return out.String(), nil
}

// funcsEnv sets what the getenv and fileExists cases read.
func funcsEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "present"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONFGEN_TEST_DIR", dir)
	t.Setenv("CONFGEN_TEST_VAR", "from-env")
	t.Setenv("CONFGEN_TEST_UNSET", "")
}

func TestFuncsGolden(t *testing.T) {
	funcsEnv(t)
	inputs, err := filepath.Glob(filepath.Join(funcsDir, "*.input"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no cases in %s: %v", funcsDir, err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input")
		t.Run(name, func(t *testing.T) {
			c := parseFuncsCase(t, in)
			got, err := c.render(name)
			got2, err2 := c.render(name)
			if got != got2 || errString(err) != errString(err2) {
				t.Fatalf("two renders differ:\n%q (%v)\n%q (%v)", got, err, got2, err2)
			}
			golden := strings.TrimSuffix(in, ".input") + ".golden"
			if updating() {
				if err != nil {
					if keepErrorGolden(golden, err) {
						return
					}
					got = "ERROR: " + err.Error() + "\n"
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantb, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run with -update to create it)", rerr)
			}
			want := string(wantb)
			if sub, isErr := strings.CutPrefix(want, "ERROR: "); isErr {
				sub = strings.TrimSuffix(sub, "\n")
				if err == nil {
					t.Fatalf("rendered without error, want an error containing %q; output:\n%s", sub, got)
				}
				if !strings.Contains(err.Error(), sub) {
					t.Fatalf("error %q does not contain %q", err, sub)
				}
				return
			}
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("output differs from %s (-want +got):\n%s", golden, d)
			}
		})
	}
}

// keepErrorGolden reports whether golden already expects an error that
// err matches, so -update keeps a hand-trimmed substring.
func keepErrorGolden(golden string, err error) bool {
	b, rerr := os.ReadFile(golden)
	if rerr != nil {
		return false
	}
	sub, ok := strings.CutPrefix(string(b), "ERROR: ")
	return ok && strings.Contains(err.Error(), strings.TrimSuffix(sub, "\n"))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestFuncsEveryFunctionHasACase checks that each template function is
// called in at least one golden case.
func TestFuncsEveryFunctionHasACase(t *testing.T) {
	inputs, _ := filepath.Glob(filepath.Join(funcsDir, "*.input"))
	action := regexp.MustCompile(`(?s){{.*?}}`)
	var actions strings.Builder
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range action.FindAllString(string(b), -1) {
			actions.WriteString(a + "\n")
		}
	}
	all := actions.String()
	for name := range FuncMap(nil, nil) {
		used := regexp.MustCompile(`(^|[\s({|])` + name + `([\s)}.]|$)`)
		if !used.MatchString(all) {
			t.Errorf("no golden case in %s calls %s", funcsDir, name)
		}
	}
}

func TestFuncsNilStoreAndServices(t *testing.T) {
	c := funcsCase{tmpl: `{{len (service "web")}} {{len services}} {{len nodes}} {{len meshPeers}} {{exists "/a"}} {{getv "/a" "d"}}`}
	got, err := c.render("nil")
	if err != nil || got != "0 0 0 0 false d" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TestFuncsListsAreNotMutated checks that reverse and the sorts return
// copies: a template variable keeps its order.
func TestFuncsListsAreNotMutated(t *testing.T) {
	fm := FuncMap(nil, nil)
	in := []string{"ccc", "a", "bb"}
	r, err := fm["reverse"].(func(any) (any, error))(in)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"bb", "a", "ccc"}, r); d != "" {
		t.Errorf("reverse (-want +got):\n%s", d)
	}
	if s := fm["sortByLength"].(func([]string) []string)(in); !cmp.Equal(s, []string{"a", "bb", "ccc"}) {
		t.Errorf("sortByLength = %q", s)
	}
	kv := []KVPair{{"/bb", "2"}, {"/a", "1"}}
	if s := fm["sortKVByLength"].(func([]KVPair) []KVPair)(kv); s[0].Key != "/a" {
		t.Errorf("sortKVByLength = %v", s)
	}
	if !cmp.Equal(in, []string{"ccc", "a", "bb"}) || kv[0].Key != "/bb" {
		t.Errorf("arguments were mutated: %q %v", in, kv)
	}
}

// fakeResolver answers lookups from fixed data, without a network.
type fakeResolver struct {
	ips  []net.IP
	srvs []*net.SRV
	err  error
}

func (f fakeResolver) LookupIP(context.Context, string, string) ([]net.IP, error) {
	return f.ips, f.err
}

func (f fakeResolver) LookupSRV(context.Context, string, string, string) (string, []*net.SRV, error) {
	return "", f.srvs, f.err
}

func TestFuncsLookupSortsAndFilters(t *testing.T) {
	r := fakeResolver{
		ips: []net.IP{net.ParseIP("10.0.0.9"), net.ParseIP("2001:db8::2"), net.ParseIP("10.0.0.10"), net.ParseIP("::ffff:192.0.2.1"), net.ParseIP("2001:db8::1")},
		srvs: []*net.SRV{
			{Target: "b.example.", Port: 80, Priority: 1, Weight: 1},
			{Target: "a.example.", Port: 9, Priority: 1, Weight: 5},
			{Target: "a.example.", Port: 10, Priority: 1, Weight: 5},
			{Target: "c.example.", Port: 12, Priority: 3, Weight: 0},
			{Target: "c.example.", Port: 1, Priority: 23, Weight: 0},
		},
	}
	fm := funcMap(nil, nil, r)
	for fn, want := range map[string][]string{
		"lookupIP":   {"10.0.0.10", "10.0.0.9", "192.0.2.1", "2001:db8::1", "2001:db8::2"},
		"lookupIPV4": {"10.0.0.10", "10.0.0.9", "192.0.2.1"},
		"lookupIPV6": {"2001:db8::1", "2001:db8::2"},
	} {
		got, err := fm[fn].(func(string) ([]string, error))("h")
		if err != nil || !cmp.Equal(got, want) {
			t.Errorf("%s = %q, %v; want %q", fn, got, err, want)
		}
	}
	srvs, err := fm["lookupSRV"].(func(string, string, string) ([]*net.SRV, error))("s", "tcp", "h")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range srvs {
		got = append(got, fmt.Sprintf("%s %d %d", s.Target, s.Port, s.Priority))
	}
	// confd's order compares target+port+priority+weight as one string,
	// so port 10 sorts before port 9; equal strings fall back to port.
	want := []string{"a.example. 10 1", "a.example. 9 1", "b.example. 80 1", "c.example. 1 23", "c.example. 12 3"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("lookupSRV order (-want +got):\n%s", d)
	}
}

func TestFuncsLookupErrors(t *testing.T) {
	notFound := &net.DNSError{Err: "no such host", Name: "h", IsNotFound: true}
	timeout := &net.DNSError{Err: "i/o timeout", Name: "h", IsTimeout: true}

	fm := funcMap(nil, nil, fakeResolver{err: notFound})
	if got, err := fm["lookupIP"].(func(string) ([]string, error))("h"); err != nil || len(got) != 0 {
		t.Errorf("lookupIP on a missing name = %q, %v; want empty, nil", got, err)
	}
	if got, err := fm["lookupSRV"].(func(string, string, string) ([]*net.SRV, error))("s", "tcp", "h"); err != nil || len(got) != 0 {
		t.Errorf("lookupSRV on a missing name = %v, %v; want empty, nil", got, err)
	}

	fm = funcMap(nil, nil, fakeResolver{err: timeout})
	if _, err := fm["lookupIPV4"].(func(string) ([]string, error))("h"); !errors.Is(err, timeout) {
		t.Errorf("lookupIPV4 on a timeout: err = %v, want the timeout", err)
	}
	if _, err := fm["lookupSRV"].(func(string, string, string) ([]*net.SRV, error))("s", "tcp", "h"); !errors.Is(err, timeout) {
		t.Errorf("lookupSRV on a timeout: err = %v, want the timeout", err)
	}
}

func TestStoreNormalisesKeys(t *testing.T) {
	s := NewStore(map[string]string{
		"app/db/host":   "h",    // no leading slash
		"/app/db/":      "",     // folder marker, collides with the value below
		"app/db":        "v",    // wins: already clean
		"//app//x/../y": "y",    // cleaned to /app/y
		"":              "drop", // root: dropped
		"/":             "drop",
	})
	var got []string
	for _, kv := range mustGetAll(t, s, "/*/*") {
		got = append(got, kv.Key+"="+kv.Value)
	}
	got = append(got, mustGetAll(t, s, "/*/*/*")[0].Key)
	want := []string{"/app/db=v", "/app/y=y", "/app/db/host"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("keys (-want +got):\n%s", d)
	}
	if n := len(mustGetAll(t, s, "/*")); n != 0 {
		t.Errorf("root keys: %d, want 0", n)
	}
}

func mustGetAll(t *testing.T, s *Store, pattern string) []KVPair {
	t.Helper()
	kvs, err := s.GetAll(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return kvs
}

func TestStoreGet(t *testing.T) {
	s := NewStore(map[string]string{"/a/b": "1"})
	for _, k := range []string{"/a/b", "a/b", "/a/b/", "/a//b"} {
		kv, err := s.Get(k)
		if err != nil || kv != (KVPair{"/a/b", "1"}) {
			t.Errorf("Get(%q) = %v, %v", k, kv, err)
		}
		if !s.Exists(k) {
			t.Errorf("Exists(%q) = false", k)
		}
	}
	_, err := s.Get("/a/c")
	if !errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), "/a/c") {
		t.Errorf("Get(missing) error = %v, want ErrNotExist naming /a/c", err)
	}
	if s.Exists("/a") {
		t.Error("Exists(/a) = true for a directory")
	}
	if v, err := s.GetValue("/a/c", "d", "ignored"); v != "d" || err != nil {
		t.Errorf("GetValue with default = %q, %v", v, err)
	}
	if _, err := s.GetValue("/a/c"); !errors.Is(err, ErrNotExist) {
		t.Errorf("GetValue without default: err = %v", err)
	}
}

// storeTree is the data of the List, ListDir and GetAll tests.
var storeTree = map[string]string{
	"/top":              "t",
	"/apple":            "x", // shares a prefix with /app
	"/app/name":         "n",
	"/app/db/host":      "h",
	"/app/db/port":      "p",
	"/app/web/1/addr":   "a1",
	"/app/web/2/addr":   "a2",
	"/app/web/2/weight": "w2",
}

func TestStoreList(t *testing.T) {
	s := NewStore(storeTree)
	for _, tc := range []struct {
		p    string
		want []string
	}{
		{"/", []string{"app", "apple", "top"}},
		{"", []string{"app", "apple", "top"}},
		{"/app", []string{"db", "name", "web"}},
		{"/app/", []string{"db", "name", "web"}},
		{"app", []string{"db", "name", "web"}},
		{"/app/web", []string{"1", "2"}},
		{"/app/web/2", []string{"addr", "weight"}},
		{"/app/db/host", []string{"host"}}, // a key lists itself, as in confd
		{"/ap", []string{}},
		{"/missing", []string{}},
	} {
		if d := cmp.Diff(tc.want, s.List(tc.p)); d != "" {
			t.Errorf("List(%q) (-want +got):\n%s", tc.p, d)
		}
	}
}

func TestStoreListDir(t *testing.T) {
	s := NewStore(storeTree)
	for _, tc := range []struct {
		p    string
		want []string
	}{
		{"/", []string{"app"}},
		{"/app", []string{"db", "web"}},
		{"/app/", []string{"db", "web"}},
		{"/app/web", []string{"1", "2"}},
		{"/app/web/2", []string{}},
		{"/app/db/host", []string{}},
		{"/missing", []string{}},
	} {
		if d := cmp.Diff(tc.want, s.ListDir(tc.p)); d != "" {
			t.Errorf("ListDir(%q) (-want +got):\n%s", tc.p, d)
		}
	}
}

func TestStoreGetAll(t *testing.T) {
	s := NewStore(storeTree)
	for _, tc := range []struct {
		pattern string
		want    []string // keys
	}{
		{"/*", []string{"/apple", "/top"}},
		{"/app/*", []string{"/app/name"}}, // * does not cross "/"
		{"/app/*/*", []string{"/app/db/host", "/app/db/port"}},
		{"/app/web/*/addr", []string{"/app/web/1/addr", "/app/web/2/addr"}},
		{"/app/web/[2-9]/*", []string{"/app/web/2/addr", "/app/web/2/weight"}},
		{"app/db/?ost", []string{"/app/db/host"}},
		{"/app/db/host", []string{"/app/db/host"}},
		{"/app/", []string{}},
		{"/nothing/*", []string{}},
	} {
		kvs := mustGetAll(t, s, tc.pattern)
		got := []string{}
		for _, kv := range kvs {
			got = append(got, kv.Key)
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("GetAll(%q) (-want +got):\n%s", tc.pattern, d)
		}
	}
	if _, err := s.GetAll("/app/["); err == nil || !strings.Contains(err.Error(), "/app/[") {
		t.Errorf("GetAll(bad pattern) error = %v, want one naming the pattern", err)
	}
	if _, err := NewStore(nil).GetAll("/["); err == nil {
		t.Error("GetAll(bad pattern) on an empty store: no error")
	}
	vs, err := s.GetAllValues("/app/web/*/*")
	if err != nil || !sort.StringsAreSorted(vs) || len(vs) != 3 || vs[0] != "a1" || vs[2] != "w2" {
		t.Errorf("GetAllValues = %q, %v", vs, err)
	}
}

// A service Consul has not answered for fails the render (the old file is
// kept) instead of rendering it as having no instances (issue 12, defect 6).
func TestUnreadServiceFailsTheRender(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "t.tmpl")
	if err := os.WriteFile(src, []byte("{{range service \"unread\"}}server {{.Address}}\n{{end}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Resource{File: "t.toml", Src: src, Dest: filepath.Join(dir, "out"), Keys: []string{"/a"}, Prefix: "/", UID: -1, GID: -1}
	out, err := Render(r, map[string]string{}, fakeServices{})
	if err == nil || !strings.Contains(err.Error(), "no answer from Consul") {
		t.Errorf("render = %q, %v; want the unanswered read as an error", out, err)
	}
}
