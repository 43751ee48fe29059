package middleware

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// Mode is a route's freshness mode.
type Mode uint8

const (
	// ModeConnection (the default): one attestation per connection, reused
	// for this route until MaxAge passes, the verifier's expiry passes, or
	// the client's posture hint changes.
	ModeConnection Mode = iota
	// ModeOperation: every request needs its own authenticator, whose
	// context binds the method, the request target and a digest of the
	// body. Nothing is reused.
	ModeOperation
)

func (m Mode) String() string {
	if m == ModeOperation {
		return httpbind.ModeOperation
	}
	return httpbind.ModeConnection
}

// Route is the attestation policy of a high-impact route: plain data, like
// a posture policy. The zero value is valid: connection freshness with
// DefaultMaxAge, the Guard's verifier and protocol settings, no posture
// policy. Do not modify a Route after handing it to a Guard.
type Route struct {
	// Name labels the route in logs, observer decisions and the discovery
	// document. Zero means the pattern ([WithRoute]) or, for a wrapped
	// handler ([Guard.Handler]), the name the router reports
	// ([ContextWithRouteName]; the gin adapter reports the method and gin's
	// full path). A wrapped handler with neither is listed in discovery
	// once its first request names it.
	Name string
	// Mode is the freshness mode.
	Mode Mode
	// MaxAge bounds how long a verified attestation serves this route in
	// connection mode, counted from the Evidence's attestation time. Zero
	// means DefaultMaxAge. Within MaxAge a compromised agent keeps its
	// verdict unless its posture hint (or the verifier's expiry) says
	// otherwise: choose ModeOperation where that window is too long.
	MaxAge time.Duration
	// Verifier overrides the Guard's verifier for this route.
	Verifier postauth.Verifier
	// Protocol adds relying-party settings for this route after the
	// Guard's ([WithProtocol]): accepted formats, key trust. The request
	// settings of the connection (context lifetime, offered schemes,
	// cmw_attestation code point) stay the Guard's.
	Protocol []postauth.Option
	// Posture, if set, is the posture policy every newly verified Result of
	// this route must pass ([postauth.AppraisePosture]): a denial gives 403
	// naming the violations. A Result without posture is denied by a
	// policy with rules.
	Posture *posture.Policy
	// Appraise, if set, runs on every newly verified Result for this route
	// after Posture. An error denies the request, mapped by its code like
	// any other: CodePolicyDenied and errors without a code give 403 (naming
	// the violations), CodeUnavailable and CodeCanceled 503, and
	// CodeRequired, CodeStale or CodeInvalid 401 with a new challenge.
	Appraise func(ctx context.Context, res *postauth.Result) error
	// MaxBody bounds the body read to compute the operation digest
	// (ModeOperation). Zero means DefaultMaxBody; larger bodies get 413.
	MaxBody int64
	// PreArm adds a fresh Attestation-Request to the responses of this
	// route, so the client's next attestation needs no extra round trip.
	PreArm bool
	// ErrorHandler, if set, writes the response of this route's refusals
	// in place of the Guard's ([WithErrorHandler]) or the default problem
	// body, with the same status and headers (challenge, Retry-After).
	// Protocol adapters use it to refuse in their own error format
	// (package mcpattest: a JSON-RPC error). It must not let the request
	// through.
	ErrorHandler ErrorHandler
}

// route is a configured high-impact route.
type route struct {
	Route
	pattern string // the WithRoute pattern, or "" for a wrapped handler
	rp      *postauth.RelyingParty
	// name is the route's label: Route.Name, the pattern, or the first name
	// a router reported (set once).
	name atomic.Pointer[string]
}

func (rt *route) label(r *http.Request) string {
	if n := rt.name.Load(); n != nil {
		return *n
	}
	if n, ok := r.Context().Value(routeNameKey{}).(string); ok && n != "" {
		return n
	}
	return "unnamed route"
}

// newRoute checks r and fills in its defaults. Routes that override
// nothing of the protocol share the Guard's relying party.
func (g *Guard) newRoute(pattern string, r Route) (*route, error) {
	what := pattern
	if what == "" {
		what = r.Name
	}
	if r.Mode != ModeConnection && r.Mode != ModeOperation {
		return nil, fmt.Errorf("middleware: route %q: unknown mode %d", what, r.Mode)
	}
	if r.MaxAge <= 0 {
		r.MaxAge = DefaultMaxAge
	}
	if r.MaxBody <= 0 {
		r.MaxBody = DefaultMaxBody
	}
	rt := &route{Route: r, pattern: pattern, rp: g.rp}
	if r.Verifier == nil && g.rp == nil {
		return nil, fmt.Errorf("middleware: route %q has no verifier: give New a postauth.Verifier or set Route.Verifier", what)
	}
	if r.Verifier != nil || len(r.Protocol) > 0 {
		v := r.Verifier
		if v == nil {
			v = g.rp.Verifier()
		}
		opts := append(append([]postauth.Option{postauth.WithClock(g.cfg.now)}, g.cfg.protocol...), r.Protocol...)
		rp, err := postauth.NewRelyingParty(v, opts...)
		if err != nil {
			return nil, fmt.Errorf("middleware: route %q: %w", what, err)
		}
		rt.rp = rp
	}
	switch {
	case r.Name != "":
		rt.name.Store(&r.Name)
	case pattern != "":
		rt.name.Store(&pattern)
	}
	return rt, nil
}

// registerPattern registers pattern in mux (which only matches: its
// handlers never run), turning ServeMux's panic on a bad or duplicate
// pattern into an error.
func registerPattern(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("middleware: route %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

// splitPattern splits a ServeMux pattern ("[METHOD ][HOST]/[PATH]") as
// http.ServeMux does: the method ends at the first space or tab, and the
// spaces and tabs after it are dropped; the host ends at the first "/".
// A pattern ServeMux registered always has a "/".
func splitPattern(pattern string) (method, host, path string) {
	rest := pattern
	if i := strings.IndexAny(pattern, " \t"); i >= 0 {
		method, rest = pattern[:i], strings.TrimLeft(pattern[i+1:], " \t")
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	return method, host, path
}

// routeMethods returns the methods the patterns name ("POST /pay" names
// POST; GET also matches HEAD in http.ServeMux), or nil if a pattern names
// none. A short list, scanned: cheaper than a map's hash for the few
// methods routes name, on every request.
func routeMethods(specs []routeSpec) []string {
	m := []string{}
	for _, s := range specs {
		method, _, _ := splitPattern(s.pattern)
		if method == "" {
			return nil
		}
		m = append(m, method)
		if method == http.MethodGet {
			m = append(m, http.MethodHead)
		}
	}
	slices.Sort(m)
	return slices.Compact(m)
}

// match returns the pattern route r falls under, or nil. It matches as
// http.ServeMux does (unclean paths as the redirect they lead to), and also
// on the decoded path: routers such as gin and httprouter route
// "/v1%2Fconfig" to "/v1/config", which ServeMux treats as one segment. A
// request that either reading puts under a route is protected.
func (g *Guard) match(r *http.Request) *route {
	if g.byPattern == nil || (g.methods != nil && !slices.Contains(g.methods, r.Method)) {
		return nil
	}
	if g.outsideRoutes(r) {
		return nil
	}
	if rt := g.matchExact(r); rt != nil {
		return rt
	}
	return g.matchMux(r)
}

// exactRoute holds the routes of one literal path, by method.
type exactRoute struct {
	byMethod map[string]*route // "POST /pay"
	any      *route            // "/pay" (no method), nil if none
}

// exactRoutes indexes the routes whose pattern is a literal path ("POST
// /pay", "/admin/config": no wildcard, no trailing slash, only unreserved
// characters, clean), so that a request for exactly such a path finds its
// route without ServeMux. Without host patterns such a route is the most
// specific pattern that matches the request (ServeMux refuses to register
// two patterns that match the same requests with neither more specific),
// so the index and ServeMux agree (FuzzMatchExact). It returns nil if no
// pattern is literal or if a pattern names a host (a host pattern can be
// more specific than a literal path).
func exactRoutes(specs []routeSpec, byPattern map[string]*route) map[string]*exactRoute {
	var idx map[string]*exactRoute
	for _, s := range specs {
		method, host, path := splitPattern(s.pattern)
		if host != "" { // mutation: literal index host patterns
			return nil // a host pattern
		}
		if !literalPath(path) {
			continue
		}
		if idx == nil {
			idx = make(map[string]*exactRoute)
		}
		e := idx[path]
		if e == nil {
			e = &exactRoute{byMethod: make(map[string]*route)}
			idx[path] = e
		}
		if method == "" {
			e.any = byPattern[s.pattern]
		} else {
			e.byMethod[method] = byPattern[s.pattern]
		}
	}
	return idx
}

// literalPath reports whether a pattern's path matches one path only, the
// same string: clean, no wildcard, no trailing slash (a subtree), and made
// of unreserved characters only, which ServeMux neither escapes nor
// unescapes.
func literalPath(p string) bool {
	if len(p) < 2 || p[len(p)-1] == '/' || !cleanPath(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '/', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// matchExact returns the route of a literal pattern that r's path is
// exactly, preferring a pattern with r's method (GET patterns also match
// HEAD, as in ServeMux) to one without a method; nil if there is none, and
// then ServeMux decides.
func (g *Guard) matchExact(r *http.Request) *route {
	if g.exact == nil || r.URL.RawPath != "" {
		return nil
	}
	e := g.exact[r.URL.Path]
	if e == nil {
		return nil
	}
	if rt := e.byMethod[r.Method]; rt != nil {
		return rt
	}
	if r.Method == http.MethodHead {
		if rt := e.byMethod[http.MethodGet]; rt != nil {
			return rt
		}
	}
	return e.any
}

// outsideRoutes reports that r certainly matches no pattern route: a clean,
// unescaped path outside every pattern's static prefix, decided without
// ServeMux (and without allocating) for the unprotected majority of
// requests. FuzzOutsideRoutes checks it against matchMux.
func (g *Guard) outsideRoutes(r *http.Request) bool {
	return r.URL.RawPath == "" && cleanPath(r.URL.Path) && !hasAnyPrefix(r.URL.Path, g.prefixes)
}

// matchMux matches r with the Guard's ServeMux, on the escaped and on the
// decoded path.
func (g *Guard) matchMux(r *http.Request) *route {
	// Handler returns the pattern of the route an unclean path redirects
	// to, with the redirect handler: look the route up by pattern.
	if _, pattern := g.mux.Handler(r); pattern != "" {
		return g.byPattern[pattern]
	}
	if r.URL.RawPath != "" { // mutation: decoded path match
		u := *r.URL
		u.RawPath = ""
		decoded := *r
		decoded.URL = &u
		if _, pattern := g.mux.Handler(&decoded); pattern != "" {
			return g.byPattern[pattern]
		}
	}
	return nil
}

// staticPrefix is the part of a pattern's path before its first wildcard
// or escape, without a trailing slash: every path the pattern matches (or redirects to
// it) starts with it.
func staticPrefix(pattern string) string {
	_, _, path := splitPattern(pattern)
	// ServeMux unescapes a pattern's segments ("/a%20b" matches the path
	// "/a b", "/p%61y" the path "/pay"): the prefix ends before the first
	// escape, as before the first wildcard.
	if i := strings.IndexAny(path, "{%"); i >= 0 { // mutation: static prefix escapes
		path = path[:i]
	}
	return strings.TrimSuffix(path, "/")
}

func hasAnyPrefix(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// cleanPath reports whether p is a path that ServeMux would not redirect
// (no empty, "." or ".." segment).
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '/' || i+1 >= len(p) {
			continue
		}
		rest := p[i+1:]
		if rest[0] == '/' || rest == "." || rest == ".." || strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../") {
			return false
		}
	}
	return true
}

type routeNameKey struct{}

// ContextWithRouteName returns a copy of ctx that names the route a router
// matched (for example "POST /v1/payments/{id}"). A handler wrapped with
// [Guard.Handler] whose Route has no Name is labelled with it in logs,
// observer decisions and the discovery document. Router adapters (package
// ginattest) call it; it changes labels only, never what is protected.
func ContextWithRouteName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, routeNameKey{}, name)
}
