package webui

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"strings"
)

//go:embed assets
var assets embed.FS

// CSP is the Content-Security-Policy of every answer: scripts and styles
// only from the agent itself, never inline; no plugins, no framing, no
// base-URI tricks.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"

// CookieName is the cookie that carries the UI token after a ?token= visit.
const CookieName = "drover_ui_token"

// Source answers the API's documents. The agent's wiring implements it
// over its watch hub and its own status.
type Source interface {
	Node() string
	Mesh(ctx context.Context) Mesh
	Services(ctx context.Context) Services
	LBs(ctx context.Context) LBs
	Events(ctx context.Context) Events
}

// Options configures the handler.
type Options struct {
	Source Source
	// Token, when set, is required on every request: "Authorization:
	// Bearer TOKEN", the CookieName cookie, or ?token=TOKEN (which sets the
	// cookie and redirects to the same URL without it). Without a token
	// only requests naming a loopback host (Host: 127.0.0.1:…, [::1]:…,
	// localhost:…) are answered, so a web page elsewhere cannot read the
	// API through DNS rebinding.
	Token string
}

// Handler serves /ui/ (the page) and /api/v1/ (the JSON it reads); both
// are read-only (GET and HEAD).
func Handler(opt Options) http.Handler {
	mux := http.NewServeMux()
	page, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(page)
	mux.Handle("/ui/", http.StripPrefix("/ui/", files))
	mux.HandleFunc("/ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusMovedPermanently) })
	src := opt.Source
	api := func(path string, f func(context.Context) any) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				http.NotFound(w, r)
				return
			}
			writeJSON(w, f(r.Context()))
		})
	}
	api("/api/v1/", func(context.Context) any {
		return Index{Schema: Schema, Node: src.Node(), Endpoints: map[string]string{
			"mesh":     "/api/v1/mesh",
			"services": "/api/v1/services",
			"lb":       "/api/v1/lb",
			"events":   "/api/v1/events",
		}}
	})
	api("/api/v1/mesh", func(ctx context.Context) any { return src.Mesh(ctx) })
	api("/api/v1/services", func(ctx context.Context) any { return src.Services(ctx) })
	api("/api/v1/lb", func(ctx context.Context) any { return src.LBs(ctx) })
	api("/api/v1/events", func(ctx context.Context) any { return src.Events(ctx) })
	return guard(opt, mux)
}

// Paths are the path prefixes Handler answers, for mounting it on a shared
// mux.
var Paths = []string{"/ui", "/ui/", "/api/v1/"}

// guard sets the security headers and checks method, host and token.
func guard(opt Options, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "read-only: GET and HEAD only", http.StatusMethodNotAllowed)
			return
		}
		if opt.Token == "" {
			if !LoopbackHost(r.Host) {
				http.Error(w, "this UI has no token and answers only requests to a loopback address (127.0.0.1, [::1], localhost)", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		switch checkToken(opt.Token, r) {
		case tokenOK:
			next.ServeHTTP(w, r)
		case tokenInQuery:
			http.SetCookie(w, &http.Cookie{Name: CookieName, Value: opt.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			u := *r.URL
			q := u.Query()
			q.Del("token")
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		default:
			h.Set("WWW-Authenticate", `Bearer realm="drover"`)
			http.Error(w, "token required: Authorization: Bearer TOKEN, or open /ui/?token=TOKEN once", http.StatusUnauthorized)
		}
	})
}

type tokenResult int

const (
	tokenMissing tokenResult = iota
	tokenOK
	tokenInQuery
)

// checkToken reports whether r carries token: as a bearer token, as the
// cookie, or in the query (which the caller turns into the cookie). Every
// comparison takes constant time.
func checkToken(token string, r *http.Request) tokenResult {
	eq := func(s string) bool { return s != "" && subtle.ConstantTimeCompare([]byte(s), []byte(token)) == 1 }
	if a := r.Header.Get("Authorization"); a != "" {
		if t, ok := strings.CutPrefix(a, "Bearer "); ok && eq(strings.TrimSpace(t)) {
			return tokenOK
		}
		return tokenMissing
	}
	if c, err := r.Cookie(CookieName); err == nil && eq(c.Value) {
		return tokenOK
	}
	if eq(r.URL.Query().Get("token")) {
		return tokenInQuery
	}
	return tokenMissing
}

// LoopbackHost reports whether a Host header names a loopback address or
// localhost.
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// writeJSON answers v as JSON. encoding/json escapes <, > and & in every
// string (\u003c…), so no answer carries markup even when read as HTML.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
