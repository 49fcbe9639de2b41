package webui

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// hostileStrings are values a label, a Consul registration or a Docker
// name could carry that a careless page would turn into markup or script.
var hostileStrings = []string{
	"<script>window.__pwned=1</script>",
	`<img src=x onerror="window.__pwned=1">`,
	`"><svg onload=window.__pwned=1>`,
	`'><iframe src=javascript:alert(1)>`,
	"</td></tr></table><b id=pwned>x</b>",
	"javascript:alert(1)",
	"{{constructor.constructor('alert(1)')()}}",
	"&lt;b&gt;not bold&lt;/b&gt;", "&amp;", "<!--", "]]>", "\u2028\u2029",
	"x\n    server evil 1.2.3.4:80", "x\x00y", "ünïcödé", "\ufeffweb", strings.Repeat("<", 300),
}

type fakeSource struct{ hostile string }

func (f fakeSource) Node() string { return "h1" }
func (f fakeSource) Mesh(context.Context) Mesh {
	return BuildMesh("h1", map[string]SeenRow{"h1": {Row: Row{Schema: Schema, Node: "h1", Version: f.hostile, Endpoint: f.hostile}}}, nil)
}
func (f fakeSource) Services(context.Context) Services {
	return BuildServices([]Service{{Name: f.hostile, Instances: []Instance{{ID: f.hostile, Node: "h1", Address: f.hostile,
		Tags: []string{f.hostile}, Meta: map[string]string{f.hostile: f.hostile}, Checks: []Check{{ID: f.hostile, Name: f.hostile, Status: "passing"}}}}}},
		map[string]Row{"h2": {Refused: []Refusal{{Container: f.hostile, Reason: f.hostile}}}}, []string{f.hostile})
}
func (f fakeSource) LBs(context.Context) LBs {
	return BuildLBs(map[string]LBSummary{"h1": {Schema: Schema, Node: "h1", Frontends: []LBFrontend{{Name: f.hostile, Routes: []LBRoute{{Host: f.hostile, Path: f.hostile}}}}}}, nil)
}
func (f fakeSource) Events(context.Context) Events {
	return BuildEvents(map[string]Row{"h1": {Events: []Event{{Node: "h1", Text: f.hostile}}}})
}

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Result()
}

func TestHeadersAndReadOnly(t *testing.T) {
	h := Handler(Options{Source: fakeSource{"x"}})
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/app.css", "/api/v1/", "/api/v1/mesh", "/api/v1/services", "/api/v1/lb", "/api/v1/events"} {
		resp := get(t, h, "GET", "http://127.0.0.1:9714"+p, nil)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != CSP {
			t.Errorf("GET %s: CSP %q", p, got)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: headers %v", p, resp.Header)
		}
		if strings.HasPrefix(p, "/api/") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET %s: content type %q", p, resp.Header.Get("Content-Type"))
		}
	}
	for _, p := range []string{"/api/v1/nothing", "/api/v1/mesh/x"} {
		if resp := get(t, h, "GET", "http://127.0.0.1"+p, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		resp := get(t, h, m, "http://127.0.0.1/api/v1/mesh", nil)
		if resp.StatusCode != 405 || resp.Header.Get("Content-Security-Policy") != CSP {
			t.Errorf("%s: %d, want 405 with the CSP", m, resp.StatusCode)
		}
	}
	for _, v := range []string{"'unsafe-inline'", "'unsafe-eval'", "*"} {
		if strings.Contains(CSP, v) {
			t.Errorf("CSP allows %s", v)
		}
	}
	for _, d := range []string{"default-src 'self'", "script-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(CSP, d) {
			t.Errorf("CSP lacks %s", d)
		}
	}
}

func TestHostWithoutToken(t *testing.T) {
	h := Handler(Options{Source: fakeSource{"x"}})
	for host, want := range map[string]int{
		"127.0.0.1:9714": 200, "[::1]:9714": 200, "localhost:9714": 200, "LOCALHOST": 200, "127.1.2.3": 200,
		"evil.example:9714": 403, "10.99.0.11:9714": 403, "localhost.evil.example": 403, "": 403,
	} {
		if resp := get(t, h, "GET", "http://x/api/v1/mesh", map[string]string{"Host": host}); resp.StatusCode != want {
			t.Errorf("Host %q: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

func TestToken(t *testing.T) {
	const tok = "s3cret-token"
	h := Handler(Options{Source: fakeSource{"x"}, Token: tok})
	cases := []struct {
		name   string
		target string
		hdr    map[string]string
		want   int
	}{
		{"none", "/api/v1/mesh", nil, 401},
		{"bearer", "/api/v1/mesh", map[string]string{"Authorization": "Bearer " + tok}, 200},
		{"wrong bearer", "/api/v1/mesh", map[string]string{"Authorization": "Bearer nope"}, 401},
		{"wrong bearer beats a good cookie", "/api/v1/mesh", map[string]string{"Authorization": "Bearer nope", "Cookie": CookieName + "=" + tok}, 401},
		{"basic", "/api/v1/mesh", map[string]string{"Authorization": "Basic " + tok}, 401},
		{"prefix of the token", "/api/v1/mesh", map[string]string{"Authorization": "Bearer s3cret"}, 401},
		{"cookie", "/api/v1/mesh", map[string]string{"Cookie": CookieName + "=" + tok}, 200},
		{"wrong cookie", "/ui/", map[string]string{"Cookie": CookieName + "=x"}, 401},
		{"query sets the cookie", "/ui/?token=" + tok + "&x=1", nil, 303},
		{"wrong query", "/ui/?token=nope", nil, 401},
		{"empty query", "/ui/?token=", nil, 401},
		{"any host with a token", "/api/v1/mesh", map[string]string{"Authorization": "Bearer " + tok, "Host": "10.99.0.11:9714"}, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := get(t, h, "GET", "http://127.0.0.1:9714"+c.target, c.hdr)
			if resp.StatusCode != c.want {
				t.Fatalf("%d, want %d", resp.StatusCode, c.want)
			}
			if resp.Header.Get("Content-Security-Policy") != CSP {
				t.Error("no CSP")
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 && strings.Contains(string(body), tok) {
				t.Errorf("the token is in a refusal: %q", body)
			}
			if c.want == 303 {
				loc := resp.Header.Get("Location")
				if strings.Contains(loc, "token") || loc != "/ui/?x=1" {
					t.Errorf("redirect to %q: want /ui/?x=1", loc)
				}
				var ck *http.Cookie
				for _, k := range resp.Cookies() {
					if k.Name == CookieName {
						ck = k
					}
				}
				if ck == nil || ck.Value != tok || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
					t.Errorf("cookie %+v: want %s=token, HttpOnly, SameSite=Strict, Path=/", ck, CookieName)
				}
			}
		})
	}
}

// TestHostileAPI: every hostile string comes back from every endpoint
// unchanged once decoded, and never as raw markup in the bytes.
func TestHostileAPI(t *testing.T) {
	for _, s := range hostileStrings {
		h := Handler(Options{Source: fakeSource{s}})
		for _, p := range []string{"/api/v1/mesh", "/api/v1/services", "/api/v1/lb", "/api/v1/events"} {
			resp := get(t, h, "GET", "http://127.0.0.1"+p, nil)
			body, _ := io.ReadAll(resp.Body)
			if strings.ContainsAny(string(body), "<>") || strings.Contains(string(body), "&amp") {
				t.Errorf("%s with %q: raw markup in the answer", p, s)
			}
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("%s with %q: %v", p, s, err)
			}
			want := s
			if !strings.ContainsRune(s, 0) && strings.ToValidUTF8(s, "\ufffd") == s && !strings.Contains(string(body), "\\u0000") {
				if !containsString(v, want) {
					t.Errorf("%s with %q: the string does not come back as text", p, s)
				}
			}
		}
	}
}

func containsString(v any, s string) bool {
	switch x := v.(type) {
	case string:
		return x == s
	case []any:
		for _, e := range x {
			if containsString(e, s) {
				return true
			}
		}
	case map[string]any:
		for k, e := range x {
			if k == s || containsString(e, s) {
				return true
			}
		}
	}
	return false
}

// TestAssetsHaveNoInlineCode: the page loads its script and style from
// files (the CSP forbids inline ones), sets no handler attributes, and the
// script never parses strings as HTML.
func TestAssetsHaveNoInlineCode(t *testing.T) {
	page, _ := fs.ReadFile(assets, "assets/index.html")
	html := string(page)
	for _, re := range []string{`<script(?:\s[^>]*)?>\s*[^<\s]`, `<script(?:(?!src=)[^>])*>`, `<style`, `\sstyle=`, `\son[a-z]+=`, `javascript:`, `https?://`} {
		if re == `<script(?:(?!src=)[^>])*>` {
			// Go's regexp has no lookahead: every script tag must have src.
			for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1) {
				if !strings.Contains(tag, ` src="`) {
					t.Errorf("index.html: script tag without src: %s", tag)
				}
			}
			continue
		}
		if m := regexp.MustCompile(re).FindString(html); m != "" {
			t.Errorf("index.html: %q matches %s", m, re)
		}
	}
	js, _ := fs.ReadFile(assets, "assets/app.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute(\"on", "http://", "https://"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}
