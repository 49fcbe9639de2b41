package lb

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-net/drover/discovery"

	"github.com/drover-net/drover/discovery/contract"
)

// hostilePayloads are values a careless or hostile registration could
// carry: line breaks followed by directives, comment and quote characters,
// HAProxy's sample-fetch and environment syntax, NUL, unicode, very long
// strings, and values that are almost valid. Injected directives name
// "evil" so that the checks can look for it.
func hostilePayloads() []string {
	return []string{
		"", " ", "\t",
		"x\n    server evil 1.2.3.4:80",
		"x\r\n    server evil 1.2.3.4:80 weight 100",
		"x\rserver evil 1.2.3.4:80",
		"x\\\n    server evil 1.2.3.4:80",
		"x\nbackend evil\n    server evil 1.2.3.4:80",
		"x\nfrontend evil\n    bind :6666\n    default_backend evil",
		"x\n    use_backend evil if TRUE",
		"x\nglobal\n    lua-load /tmp/evil.lua",
		"/x\n    http-request redirect location http://evil.example",
		"web if TRUE", "web unless TRUE", "x disabled", "x backup",
		"%[src]", "/%[req.hdr(host)]", "/x%00", "{", "}", "/{evil}",
		"x # comment", "#evil", "/#evil",
		`x"y`, `"quoted evil"`, "x'y", `x\y`, `x\`, `\x41`,
		"x\x00y", "\x00", "/\x00evil", "x\ty",
		"ünïcödé", "ウェブ", "a\u200bb", "x\u2028server evil 1.2.3.4:80", "\ufeffweb", "web\u0085evil", "\xff\xfe",
		strings.Repeat("a", 4096), strings.Repeat("a.", 130) + "example",
		"/" + strings.Repeat("a", 1023), "/" + strings.Repeat("a", 1024),
		"${HOME}", "$HOME", `"${HOME}"`, "/${HOME}",
		"/path with spaces", "/ok", "/a?q=1&r=2", "/a;b", "path-without-slash", "//", "/..",
		"web.example:8080", "*.example", "WEB.example", "-web.example", "web.example.", "web..example",
		"web_example", "xn--wb-fka.example", "192.0.2.1",
		"http", "tcp", "none", "HTTP", "http ",
		"1.2.3.4:80", "::1", "[::1]", "::ffff:10.0.0.1", "fe80::1%eth0", "0.0.0.0", "::", "::ffff:0.0.0.0",
		"10.0.0.1 backup", "10.0.0.1\n    server evil 1.2.3.4:80", "010.000.000.001",
		"-1", "0", "1", "256", "257", "1e3", "0x10", "+80", "80 ", "99999999999999999999", "NaN",
		"1s\n    server evil 1.2.3.4:80", "500us", "1.5ms", "-1s", "2h", "1ms",
		"slot0", "slot7", "http_80", "GLOBAL", "MASTER", "defaults",
		"leastconn", "roundrobin evil", "uri", "source\n    server evil 1.2.3.4:80",
	}
}

// hostileFields put a payload into service "hostile" (its name) or into
// its only instance.
var hostileFields = []struct {
	name string
	set  func(svc *string, in *discovery.Instance, p string)
}{
	{"service", func(s *string, _ *discovery.Instance, p string) { *s = p }},
	{"id", func(_ *string, in *discovery.Instance, p string) { in.ID = p }},
	{"address", func(_ *string, in *discovery.Instance, p string) { in.Address = p }},
	{"meta-key", func(_ *string, in *discovery.Instance, p string) { in.Meta[p] = "x\n    server evil 1.2.3.4:80" }},
	{contract.KeyLBHost, metaSetter(contract.KeyLBHost)},
	{contract.KeyLBPath, metaSetter(contract.KeyLBPath)},
	{contract.KeyLBMode, metaSetter(contract.KeyLBMode)},
	{contract.KeyLBPort, metaSetter(contract.KeyLBPort)},
	{contract.KeyLBBalance, metaSetter(contract.KeyLBBalance)},
	{"weight", metaSetter("weight")},
	{contract.KeyCheckKind, metaSetter(contract.KeyCheckKind)},
	{contract.KeyCheckPath, func(_ *string, in *discovery.Instance, p string) {
		in.Meta[contract.KeyCheckKind], in.Meta[contract.KeyCheckPath] = "http", p
	}},
	{contract.KeyCheckInterval, metaSetter(contract.KeyCheckInterval)},
	{contract.KeyCheckTimeout, metaSetter(contract.KeyCheckTimeout)},
	{contract.KeyCheckRise, metaSetter(contract.KeyCheckRise)},
}

func metaSetter(key string) func(*string, *discovery.Instance, string) {
	return func(_ *string, in *discovery.Instance, p string) { in.Meta[key] = p }
}

// hostileCase is one hostile value in one field; port overrides the
// instance's port when the field is "port". n numbers the cases.
type hostileCase struct {
	field, payload string
	port           int
	n              int
}

func (c hostileCase) String() string {
	if c.field == "port" {
		return fmt.Sprintf("port=%d", c.port)
	}
	return fmt.Sprintf("%s=%.60q", c.field, c.payload)
}

func hostileCases() []hostileCase {
	var cs []hostileCase
	for _, f := range hostileFields {
		for _, p := range hostilePayloads() {
			cs = append(cs, hostileCase{field: f.name, payload: p, n: len(cs)})
		}
	}
	for _, port := range []int{-1, 0, 65536, 1 << 20, math.MaxInt, math.MinInt} {
		cs = append(cs, hostileCase{field: "port", port: port, n: len(cs)})
	}
	return cs
}

// services builds the input of case c: the valid service "good" and
// service "hostile-<n>" with one instance carrying the hostile value. Each
// call returns fresh maps. (The number keeps the backends of different
// cases apart, so that haproxy -c can check many cases in one file.)
func (c hostileCase) services() map[string][]discovery.Instance {
	name := fmt.Sprintf("hostile-%d", c.n)
	in := inst("hostile-1", "10.66.0.1", 8080, contract.KeyLBMode, "http", contract.KeyLBHost, "hostile.example")
	for _, f := range hostileFields {
		if f.name == c.field {
			f.set(&name, &in, c.payload)
		}
	}
	if c.field == "port" {
		in.Port = c.port
	}
	return map[string][]discovery.Instance{
		"good": {inst("good-1", "10.99.0.1", 8080, contract.KeyLBMode, "http", contract.KeyLBHost, "good.example")},
		name:   {in},
	}
}

// goodBackend is what service "good" must always become.
var goodBackend = Backend{Name: "good", Mode: "http", Balance: "roundrobin", Slots: 8, TunnelTimeout: DefaultTunnelTimeout,
	Servers: []Server{srv("good-1", "10.99.0.1:8080")}}

// TestHostileInputsNeverReachTheFile puts each hostile payload into each
// field of service "hostile" next to a valid service "good" and checks
// that the rendered file (a) is made only of lines of Render's own
// grammar, holds no injected fragment and has exactly the sections and
// server lines the two services imply, (b) is deterministic, and (c)
// passes haproxy -c without warnings (when haproxy is on PATH). It logs
// how many values were refused (left out with a Problem), defaulted
// (replaced with a Problem), sanitised (a name rewritten), ignored or
// accepted as valid.
func TestHostileInputsNeverReachTheFile(t *testing.T) {
	cases := hostileCases()
	if len(cases) < 100 {
		t.Fatalf("only %d hostile cases", len(cases))
	}
	dir := t.TempDir()
	g := Globals{StatsSocket: filepath.Join(dir, "haproxy.sock"), StateFile: filepath.Join(dir, "haproxy.state")}
	preamble := map[string]bool{}
	for _, l := range strings.Split(string(Render(State{}, g)), "\n") {
		preamble[l] = true
	}

	states := make([]State, len(cases))
	outcomes := map[string]int{}
	byField := map[string]map[string]int{}
	failed := 0
	for i, c := range cases {
		st, outcome, errs := checkHostile(c, g, preamble)
		for _, e := range errs {
			t.Errorf("%s: %s", c, e)
		}
		if len(errs) > 0 {
			if failed++; failed >= 20 {
				t.Fatal("too many failures")
			}
		}
		states[i] = st
		outcomes[outcome]++
		if byField[c.field] == nil {
			byField[c.field] = map[string]int{}
		}
		byField[c.field][outcome]++
	}
	t.Logf("%d hostile inputs: %s", len(cases), fmtCounts(outcomes))
	fields := make([]string, 0, len(byField))
	for f := range byField {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		t.Logf("  %-14s %s", f, fmtCounts(byField[f]))
	}
	haproxyCheckPacked(t, g, cases, states)
}

func fmtCounts(m map[string]int) string {
	var parts []string
	for _, k := range []string{"refused", "defaulted", "sanitised", "ignored", "accepted"} {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// checkHostile runs Desired and Render on case c and returns the state,
// the outcome for the hostile value and what is wrong.
func checkHostile(c hostileCase, g Globals, preamble map[string]bool) (st State, outcome string, errs []string) {
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	st, probs := Desired(Options{}, c.services())
	out := Render(st, g)
	cfg := string(out)

	// (b) Deterministic, from fresh input.
	st2, probs2 := Desired(Options{}, c.services())
	if !bytes.Equal(out, Render(st2, g)) || !reflect.DeepEqual(probs, probs2) {
		bad("two runs differ")
	}

	// The valid service is never collateral damage.
	var hostile *Backend
	good := false
	for i, b := range st.Backends {
		if b.Name == "good" {
			good = true
			if !reflect.DeepEqual(b, goodBackend) {
				bad("backend good is %+v", b)
			}
			continue
		}
		hostile = &st.Backends[i]
	}
	if !good {
		bad("backend good left out")
	}
	for _, p := range probs {
		if p.Service == "good" {
			bad("problem for good: %s", p)
		}
	}

	// (a) Only Render's grammar, no injected fragment, expected structure.
	errs = append(errs, checkLines(cfg, preamble, c.payload)...)
	errs = append(errs, checkStructure(cfg, st)...)
	if hostile != nil {
		if n := len(hostile.Servers); n != 1 {
			bad("hostile backend has %d servers", n)
		} else if a := hostile.Servers[0].Addr; c.field != "address" && a != "10.66.0.1:8080" {
			bad("hostile server address %s", a)
		}
	}

	switch {
	case hostile == nil:
		outcome = "refused"
		if len(probs) == 0 {
			bad("service left out without a Problem")
		}
	case len(probs) > 0:
		outcome = "defaulted"
	case (c.field == "service" || c.field == "id") && !strings.Contains(cfg, " "+c.payload+"\n") && !strings.Contains(cfg, " "+c.payload+" "):
		outcome = "sanitised"
	case c.field == "meta-key":
		outcome = "ignored"
	default:
		outcome = "accepted"
	}
	return st, outcome, errs
}

// fixedLines are lines Render writes as constants, whatever the input:
// they may use words an injection would (http-request).
var fixedLines = map[string]bool{
	"    http-request del-header X-Forwarded-For":              true,
	"    option forwardfor":                                    true,
	"    http-request set-header X-Forwarded-Proto http":       true,
	"    http-request set-header X-Forwarded-Port %[dst_port]": true,
}

// renderGrammar is every line Render writes after the global and defaults
// sections, with names, hosts and paths limited to what is safe unquoted.
var renderGrammar = func() []*regexp.Regexp {
	const (
		name = `[A-Za-z0-9_.-]+`
		host = `[a-z0-9.-]+`
		path = `/[!$-&(-\[\]-~]*` // printable ASCII but space, quotes, '\' and '#'
		dur  = `[0-9]+(?:ms|s)`
		addr = `(?:[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+|\[[0-9a-f:.]+\]):[0-9]+`
	)
	var res []*regexp.Regexp
	var fixed []string
	for l := range fixedLines {
		fixed = append(fixed, regexp.QuoteMeta(l))
	}
	for _, re := range []string{
		``,
		`(?:` + strings.Join(fixed, "|") + `)`,
		`frontend (?:http|tcp)_[0-9]+`,
		`backend ` + name,
		`    mode (?:http|tcp)`,
		`    bind :[0-9]+`,
		`    no option idle-close-on-response`,
		`    default_backend ` + name,
		`    acl r[0-9]+_host hdr\(host\) -i ` + host + ` ` + host + `:[0-9]+`,
		`    acl r[0-9]+_path path_beg ` + path,
		`    use_backend ` + name + ` if r[0-9]+_(?:host|path)(?: r[0-9]+_path)?`,
		`    balance (?:roundrobin|leastconn|source)`,
		`    retry-on conn-failure empty-response response-timeout`,
		`    option httpchk GET ` + path,
		`    timeout check ` + dur,
		`    timeout tunnel ` + dur,
		`    cookie drv_[0-9a-f]{8} insert indirect nocache httponly`,
		`    server ` + name + ` ` + addr + ` weight [0-9]+(?: check inter ` + dur + ` fall [0-9]+ rise [0-9]+)?` +
			`(?: send-proxy(?:-v2)?)?(?: check-send-proxy)?(?: cookie [0-9a-f]{8})?(?: disabled)?`,
	} {
		res = append(res, regexp.MustCompile(`^`+re+`$`))
	}
	return res
}()

// checkLines checks that every line is printable ASCII of Render's
// grammar, that no line holds a fragment of the payload that has a space
// in it (an injected directive), and that no word of the file is one an
// injection uses.
func checkLines(cfg string, preamble map[string]bool, payload string) []string {
	var errs []string
	for i := 0; i < len(cfg); i++ {
		if c := cfg[i]; c != '\n' && (c < ' ' || c > '~') {
			return []string{fmt.Sprintf("byte %#x at offset %d", c, i)}
		}
	}
	var frags []string
	for _, f := range strings.FieldsFunc(payload, func(r rune) bool { return r == '\n' || r == '\r' || r == 0 || r == '\u2028' || r == '\u0085' }) {
		if f = strings.TrimSpace(f); strings.Contains(f, " ") {
			frags = append(frags, f)
		}
	}
	lines := strings.Split(strings.TrimSuffix(cfg, "\n"), "\n")
lines:
	for n, l := range lines {
		for _, f := range frags {
			if strings.Contains(l, f) {
				errs = append(errs, fmt.Sprintf("line %d %q holds injected %q", n+1, l, f))
			}
		}
		if fixedLines[l] {
			continue // Render's own constant lines (never built from input)
		}
		for _, w := range strings.Fields(l) {
			switch w {
			case "evil", "TRUE", "unless", "backup", "1.2.3.4:80", "lua-load", "http-request":
				errs = append(errs, fmt.Sprintf("line %d %q has the word %q", n+1, l, w))
			}
		}
		if preamble[l] {
			continue
		}
		for _, re := range renderGrammar {
			if re.MatchString(l) {
				continue lines
			}
		}
		errs = append(errs, fmt.Sprintf("line %d %.200q is not Render's grammar", n+1, l))
	}
	return errs
}

// checkStructure counts sections and lines: one backend section per
// backend with Slots server lines of which exactly its servers are live
// (and none at an unspecified address), each backend referenced once by a
// frontend, and one frontend per port.
func checkStructure(cfg string, st State) []string {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	slots, live := map[string]int{}, map[string]int{}
	refs := map[string]int{}
	var backends, frontends []string
	cur := ""
	for _, l := range strings.Split(cfg, "\n") {
		w := strings.Fields(l)
		switch {
		case len(w) == 2 && w[0] == "backend":
			cur = w[1]
			backends = append(backends, cur)
		case len(w) == 2 && w[0] == "frontend":
			cur = ""
			frontends = append(frontends, w[1])
		case len(w) >= 2 && (w[0] == "use_backend" || w[0] == "default_backend"):
			refs[w[1]]++
		case len(w) >= 3 && w[0] == "server":
			slots[cur]++
			if w[len(w)-1] != "disabled" {
				live[cur]++
				if strings.HasPrefix(w[2], "0.0.0.0:") || strings.HasPrefix(w[2], "[::]:") {
					bad("server line %q has an unspecified address: HAProxy would connect to the client's destination, itself", l)
				}
			}
		}
	}
	if len(backends) != len(st.Backends) || len(backends) < 1 || len(backends) > 2 {
		bad("%d backend sections for %d backends, want 1 or 2", len(backends), len(st.Backends))
	}
	ports := map[int]bool{}
	for _, b := range st.Backends {
		if slots[b.Name] != b.Slots || live[b.Name] != len(b.Servers) {
			bad("backend %s: %d server lines (%d live), want %d (%d live)", b.Name, slots[b.Name], live[b.Name], b.Slots, len(b.Servers))
		}
		if refs[b.Name] != 1 {
			bad("backend %s referenced %d times", b.Name, refs[b.Name])
		}
	}
	for _, f := range st.Frontends {
		ports[f.Port] = true
	}
	if len(refs) != len(st.Backends) {
		bad("frontends reference %d backends, want %d", len(refs), len(st.Backends))
	}
	if len(frontends) != len(ports) || len(frontends) > len(backends) {
		bad("%d frontend sections for %d ports and %d backends", len(frontends), len(ports), len(backends))
	}
	return errs
}

// haproxyCheckPacked runs haproxy -c, a few at a time, on files that each
// hold the states of many cases (see statePack), and fails on any error
// or warning, naming the cases whose own file fails. One run per case
// would cost a process start (~50 ms) each.
func haproxyCheckPacked(t *testing.T, g Globals, cases []hostileCase, states []State) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Log("haproxy not on PATH: files not checked with haproxy -c")
		return
	}
	// drover keeps the state file; one with only a version line stands in.
	if err := os.WriteFile(g.StateFile, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(g.StateFile)
	var n int
	check := func(st State) ([]byte, error) {
		f, err := os.CreateTemp(dir, "haproxy-*.cfg")
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if _, err := f.Write(Render(st, g)); err != nil {
			return nil, err
		}
		out, err := exec.Command(bin, "-c", "-f", f.Name()).CombinedOutput()
		if err == nil && bytes.Contains(out, []byte("[WARNING]")) {
			err = errors.New("warnings")
		}
		return out, err
	}

	begin := time.Now()
	packs := packStates(states, 64)
	var mu sync.Mutex // guards bad and t's error reporting
	bad := 0
	next := make(chan *statePack)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for p := range next {
				if _, err := check(p.st); err == nil {
					continue
				}
				// Find the members that fail on their own.
				for _, i := range p.members {
					out, err := check(states[i])
					if err == nil {
						continue
					}
					mu.Lock()
					if bad++; bad <= 10 {
						t.Errorf("%s: haproxy -c: %v\n%s", cases[i], err, out)
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, p := range packs {
		n += len(p.st.Backends)
		next <- p
	}
	close(next)
	wg.Wait()
	t.Logf("haproxy -c on %d files holding the %d cases (%d backends): %d cases failed, %s",
		len(packs), len(states), n, bad, time.Since(begin).Round(time.Millisecond))
}

// statePack merges the states of many cases into one that Render can
// write, so that one haproxy -c checks them all: the pack's file has every
// backend section, server line and route of each member. A state joins a
// pack when its backends are new to it (or equal to one there) and its
// frontends agree with the pack's on mode and catch-all backend.
type statePack struct {
	st      State
	members []int              // indexes of the merged states
	bes     map[string]Backend // by name
	fes     map[int]int        // port → index in st.Frontends
}

// packStates puts each state into the first pack it fits, at most
// maxBackends backends a pack.
func packStates(states []State, maxBackends int) []*statePack {
	var packs []*statePack
	for i, s := range states {
		var p *statePack
		for _, q := range packs {
			if q.fits(s, maxBackends) {
				p = q
				break
			}
		}
		if p == nil {
			p = &statePack{bes: map[string]Backend{}, fes: map[int]int{}}
			packs = append(packs, p)
		}
		p.add(i, s)
	}
	for _, p := range packs {
		for i := range p.st.Frontends {
			sortRoutes(p.st.Frontends[i].Routes)
		}
		sort.Slice(p.st.Frontends, func(i, j int) bool { return p.st.Frontends[i].Port < p.st.Frontends[j].Port })
		sort.Slice(p.st.Backends, func(i, j int) bool { return p.st.Backends[i].Name < p.st.Backends[j].Name })
	}
	return packs
}

func (p *statePack) fits(s State, maxBackends int) bool {
	n := len(p.bes)
	for _, b := range s.Backends {
		if o, ok := p.bes[b.Name]; !ok {
			n++
		} else if !reflect.DeepEqual(o, b) {
			return false
		}
	}
	if n > maxBackends {
		return false
	}
	for _, f := range s.Frontends {
		i, ok := p.fes[f.Port]
		if !ok {
			continue
		}
		o := p.st.Frontends[i]
		if o.Mode != f.Mode ||
			o.DefaultBackend != "" && f.DefaultBackend != "" && o.DefaultBackend != f.DefaultBackend ||
			catchAll(o) != "" && catchAll(f) != "" && catchAll(o) != catchAll(f) {
			return false
		}
	}
	return true
}

func (p *statePack) add(i int, s State) {
	p.members = append(p.members, i)
	for _, b := range s.Backends {
		if _, ok := p.bes[b.Name]; !ok {
			p.bes[b.Name] = b
			p.st.Backends = append(p.st.Backends, b)
		}
	}
	for _, f := range s.Frontends {
		j, ok := p.fes[f.Port]
		if !ok {
			p.fes[f.Port] = len(p.st.Frontends)
			f.Routes = slices.Clone(f.Routes)
			p.st.Frontends = append(p.st.Frontends, f)
			continue
		}
		o := &p.st.Frontends[j]
		if f.DefaultBackend != "" {
			o.DefaultBackend = f.DefaultBackend
		}
		for _, r := range f.Routes {
			if !slices.Contains(o.Routes, r) {
				o.Routes = append(o.Routes, r)
			}
		}
	}
}

// catchAll is the backend of f's route without host and path, if any.
func catchAll(f Frontend) string {
	for _, r := range f.Routes {
		if r.Host == "" && r.PathPrefix == "" {
			return r.Backend
		}
	}
	return ""
}
