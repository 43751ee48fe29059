package middleware

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reattest/reattest/internal/wire"
	"github.com/reattest/reattest/postauth"
)

// Header names of the HTTP binding (docs/protocol.md, "HTTP binding").
const (
	HeaderAttestationRequest = wire.HeaderRequest
	HeaderAttestation        = wire.HeaderAttestation
	HeaderPosture            = wire.HeaderPosture
	HeaderResult             = wire.HeaderResult
	WellKnownPath            = wire.WellKnownPath
)

// route is a configured high-impact route.
type route struct {
	pattern string
	Route
	policy *postauth.Policy
}

// Guard is the server side of reattest: net/http middleware that demands
// fresh attestation, bound to the request's own TLS connection, before
// high-impact routes run, and caches verdicts per connection. Routes that
// are not marked high-impact pass through untouched. A Guard is safe for
// concurrent use.
type Guard struct {
	cfg      config
	verifier postauth.Verifier
	mux      *http.ServeMux
	routes   map[string]*route
	// methods, if not nil, holds every method a route pattern names: a
	// request with another method skips route matching (nil when some
	// pattern has no method and matches them all).
	methods  map[string]bool
	fallback *fallbackCache
	discover []byte

	serverMu     sync.Mutex // guards serverBudget
	serverBudget tokenBucket
}

// routeMarker is registered in the Guard's ServeMux to look routes up.
type routeMarker struct{ *route }

func (routeMarker) ServeHTTP(http.ResponseWriter, *http.Request) {}

// New returns a Guard that verifies Evidence with v (the default for every
// route). It fails on invalid configuration (a bad route pattern, a route
// without a verifier).
func New(v postauth.Verifier, opts ...Option) (g *Guard, err error) {
	cfg := config{discovery: true}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.requester.Time == nil {
		cfg.requester.Time = cfg.now
	}
	if cfg.requester.ContextTTL <= 0 {
		cfg.requester.ContextTTL = postauth.DefaultContextTTL
	}
	if cfg.verifyTimeout <= 0 {
		cfg.verifyTimeout = DefaultVerifyTimeout
	}
	if cfg.retryAfter <= 0 {
		cfg.retryAfter = DefaultRetryAfter
	}
	if cfg.fallbackSize <= 0 {
		cfg.fallbackSize = DefaultFallbackSize
	}
	if cfg.fallbackIdle <= 0 {
		cfg.fallbackIdle = DefaultFallbackIdle
	}
	if cfg.serverRate <= 0 || cfg.serverBurst <= 0 {
		cfg.serverRate, cfg.serverBurst = DefaultServerAttestationRate, DefaultServerAttestationBurst
	}
	if (cfg.serverID == nil) != (cfg.serverAtt == nil) {
		return nil, errors.New("middleware: server attestation needs both an identity and an attester")
	}
	g = &Guard{cfg: cfg, verifier: v, mux: http.NewServeMux(), routes: make(map[string]*route),
		fallback: newFallbackCache(cfg.fallbackSize, cfg.fallbackIdle)}
	for _, spec := range cfg.routes {
		rt, err := g.newRoute(spec.pattern, spec.route)
		if err != nil {
			return nil, err
		}
		if err := registerPattern(g.mux, spec.pattern, rt); err != nil {
			return nil, err
		}
		g.routes[spec.pattern] = rt
	}
	g.methods = routeMethods(cfg.routes)
	if g.discover, err = g.discoveryDocument(); err != nil {
		return nil, err
	}
	return g, nil
}

// routeMethods returns the methods the patterns name ("POST /pay" names
// POST; GET also matches HEAD in http.ServeMux), or nil if a pattern names
// none.
func routeMethods(specs []routeSpec) map[string]bool {
	m := make(map[string]bool)
	for _, s := range specs {
		method, _, found := strings.Cut(s.pattern, " ")
		if !found || method == "" || strings.Contains(method, "/") {
			return nil
		}
		m[method] = true
		if method == http.MethodGet {
			m[http.MethodHead] = true
		}
	}
	return m
}

func registerPattern(mux *http.ServeMux, pattern string, rt *route) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("middleware: route %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, routeMarker{rt})
	return nil
}

func (g *Guard) newRoute(pattern string, r Route) (*route, error) {
	if r.Mode != ModeConnection && r.Mode != ModeOperation {
		return nil, fmt.Errorf("middleware: route %q: unknown mode %d", pattern, r.Mode)
	}
	if r.MaxAge <= 0 {
		r.MaxAge = DefaultMaxAge
	}
	if r.MaxBody <= 0 {
		r.MaxBody = DefaultMaxBody
	}
	if r.Verifier == nil {
		r.Verifier = g.verifier
	}
	if r.Verifier == nil {
		return nil, fmt.Errorf("middleware: route %q has no verifier", pattern)
	}
	if r.Formats == nil {
		r.Formats = g.cfg.formats
	}
	val := g.cfg.validate
	if r.Validate != nil {
		val = *r.Validate
	}
	if val.Time == nil {
		val.Time = g.cfg.now
	}
	return &route{pattern: pattern, Route: r, policy: &postauth.Policy{
		Verifier: r.Verifier, Formats: r.Formats, Validate: val,
		AttestationExtension: g.cfg.requester.AttestationExtension, Time: g.cfg.now,
	}}, nil
}

// Middleware returns next wrapped so that the routes configured with
// [WithRoute] require attestation, the discovery document is served, and
// server attestation requests are answered. Its signature fits chi's Use.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.discovery && r.URL.Path == wire.WellKnownPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			g.serveDiscovery(w, r)
			return
		}
		g.serve(w, r, g.match(r), next)
	})
}

// match returns the configured route r falls under, or nil. It matches as
// http.ServeMux does (unclean paths as the redirect they lead to), and also
// on the decoded path: routers such as gin and httprouter route
// "/v1%2Fconfig" to "/v1/config", which ServeMux treats as one segment. A
// request that either reading puts under a route is protected.
func (g *Guard) match(r *http.Request) *route {
	if len(g.routes) == 0 || (g.methods != nil && !g.methods[r.Method]) {
		return nil
	}
	if _, pattern := g.mux.Handler(r); pattern != "" {
		return g.routes[pattern]
	}
	if r.URL.RawPath != "" {
		u := *r.URL
		u.RawPath = ""
		decoded := *r
		decoded.URL = &u
		if _, pattern := g.mux.Handler(&decoded); pattern != "" {
			return g.routes[pattern]
		}
	}
	return nil
}

// Handler wraps a single handler with policy r, independently of any
// routing: the safest way to protect a route, since no router disagreement
// can bypass it.
func (g *Guard) Handler(h http.Handler, r Route) (http.Handler, error) {
	rt, err := g.newRoute(fmt.Sprintf("handler %p", h), r)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { g.serve(w, req, rt, h) }), nil
}

// Check runs the attestation check of route rt for request r, for adapters
// of other frameworks (package ginattest). If it returns ok, the
// request may proceed with the returned request, whose context carries the
// Result; otherwise the response has been written.
func (g *Guard) Check(w http.ResponseWriter, r *http.Request, rt *ProtectedRoute) (*http.Request, bool) {
	if rt == nil || rt.r == nil {
		// A route not made by Prepare: misconfiguration, never a pass.
		http.Error(w, "attestation misconfigured", http.StatusInternalServerError)
		return nil, false
	}
	var out *http.Request
	g.serve(w, r, rt.r, http.HandlerFunc(func(_ http.ResponseWriter, r2 *http.Request) { out = r2 }))
	return out, out != nil
}

// ProtectedRoute is a route policy prepared for [Guard.Check].
type ProtectedRoute struct{ r *route }

// Prepare validates r for use with [Guard.Check]; name labels it in logs.
func (g *Guard) Prepare(name string, r Route) (*ProtectedRoute, error) {
	rt, err := g.newRoute(name, r)
	if err != nil {
		return nil, err
	}
	return &ProtectedRoute{rt}, nil
}

func (g *Guard) serve(w http.ResponseWriter, r *http.Request, rt *route, next http.Handler) {
	if g.cfg.serverAtt != nil && r.Header[wire.HeaderRequest] != nil {
		g.answerServerAttestation(w, r)
	}
	if rt == nil {
		next.ServeHTTP(w, r)
		return
	}
	if r.TLS != nil && !r.TLS.HandshakeComplete {
		// TLS early data can be replayed; nothing high-impact runs on it.
		g.writeProblem(w, r, rt, http.StatusTooEarly, "too-early", "Too Early", &postauth.Error{Code: postauth.CodeRequired, Reason: "early_data"})
		return
	}
	st, err := g.connState(r)
	if err != nil {
		g.fail(w, r, rt, nil, nil, err)
		return
	}
	var binding []byte
	if rt.Mode == ModeOperation {
		body, err := readBody(r, rt.MaxBody)
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, errBodyTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			g.writeProblem(w, r, rt, status, "bad-body", http.StatusText(status), &postauth.Error{Code: postauth.CodeInvalid, Reason: "bad_body"})
			return
		}
		binding = wire.OperationDigest(r.Method, requestTarget(r), body)
	}
	if hdr := r.Header.Get(wire.HeaderAttestation); hdr != "" {
		g.verify(w, r, st, rt, binding, hdr, next)
		return
	}
	code, reason := postauth.CodeRequired, wire.ErrRequired
	if rt.Mode == ModeConnection {
		st.mu.Lock()
		if c := st.lookup(rt); c != nil {
			switch {
			case !c.res.ValidAt(g.cfg.now(), rt.MaxAge):
				code, reason = postauth.CodeStale, wire.ErrStale
				st.drop(rt)
			case !hintMatches(r.Header.Get(wire.HeaderPosture), c):
				code, reason = postauth.CodeStale, wire.ErrPostureChanged
				st.drop(rt)
			default:
				res := c.res
				st.mu.Unlock()
				g.observePass(r.Context(), rt, OutcomeCacheHit, "", time.Time{}, 0)
				g.preArm(w, r, st, rt)
				next.ServeHTTP(w, r.WithContext(postauth.NewContext(r.Context(), res)))
				return
			}
		}
		st.mu.Unlock()
	}
	g.challenge(w, r, st, rt, binding, http.StatusUnauthorized, reason, &postauth.Error{Code: code, Reason: reason})
}

// hintMatches reports whether the client's posture hint agrees with the
// cached result. No hint means no news (max-age governs); a hint for a
// result without posture, or a different head, means the posture changed.
func hintMatches(hint string, c *cachedResult) bool {
	if hint == "" || hint == c.hint {
		return true
	}
	if c.hint == "" {
		return false
	}
	b, _, err := wire.DecodeBytes(hint, wire.MaxPostureHeader)
	return err == nil && bytes.Equal(b, c.res.PostureHead())
}

func (g *Guard) connState(r *http.Request) (*connState, error) {
	if st, ok := r.Context().Value(connKey{}).(*connState); ok {
		return st, nil
	}
	ch, err := postauth.NewChannel(r.TLS)
	if err != nil {
		return nil, err
	}
	id, err := ch.ID()
	if err != nil {
		return nil, err
	}
	return g.fallback.get(string(id), g.cfg.now()), nil
}

// verify checks the Attestation header of r and runs next on success.
func (g *Guard) verify(w http.ResponseWriter, r *http.Request, st *connState, rt *route, binding []byte, hdr string, next http.Handler) {
	raw, _, err := wire.DecodeBytes(hdr, wire.MaxAttestationHeader)
	if err != nil {
		g.fail(w, r, rt, st, binding, &postauth.Error{Code: postauth.CodeInvalid, Reason: "malformed_header", Err: err})
		return
	}
	st.mu.Lock()
	reqr, err := st.requester(r, &g.cfg.requester)
	if rt.Mode == ModeConnection {
		// The shared challenge may be the one being answered: stop handing
		// it out.
		st.dropSharedChallenge(rt)
	}
	st.mu.Unlock()
	if err != nil {
		g.fail(w, r, rt, st, binding, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.verifyTimeout)
	defer cancel()
	start := time.Now()
	res, err := reqr.Verify(ctx, raw, "", binding, rt.policy)
	if err == nil && rt.Appraise != nil {
		if err = rt.Appraise(ctx, res); err != nil && postauth.CodeOf(err) == postauth.CodeUnknown {
			err = &postauth.Error{Code: postauth.CodePolicyDenied, Reason: "policy_denied", Err: err}
		}
	}
	if err != nil {
		if rt.Mode == ModeConnection && postauth.CodeOf(err) == postauth.CodePolicyDenied {
			// The peer's current state is denied: its earlier verdict must
			// not serve this route any more. (A merely invalid answer, such
			// as a late duplicate, does not revoke a valid verdict.)
			st.mu.Lock()
			st.drop(rt)
			st.mu.Unlock()
		}
		if g.cfg.observe != nil {
			err = &timedError{err, start, time.Since(start)}
		}
		g.fail(w, r, rt, st, binding, err)
		return
	}
	verifyDur := time.Since(start)
	if rt.Mode == ModeConnection {
		hint := ""
		if h := res.PostureHead(); h != nil {
			hint = wire.EncodeBytes(h)
		}
		st.mu.Lock()
		st.store(rt, res, hint)
		if st.reqr == reqr && st.challenges == nil && reqr.Pending() == 0 {
			// Nothing is pending: a cache hit needs only the Result. The
			// Requester (and its channel) is rebuilt from r.TLS at the next
			// challenge; it knows no old context, so a late replay is
			// refused as unknown. This keeps an idle attested connection at
			// about half a kilobyte.
			st.reqr = nil
		}
		st.mu.Unlock()
	}
	g.logAttested(r, rt, res)
	g.observePass(r.Context(), rt, OutcomeVerified, res.Format(), start, verifyDur)
	w.Header().Set(wire.HeaderResult, resultHeader(res, rt))
	g.preArm(w, r, st, rt)
	next.ServeHTTP(w, r.WithContext(postauth.NewContext(r.Context(), res)))
}

func resultHeader(res *postauth.Result, rt *route) string {
	s := "status=affirming"
	if rt.Mode == ModeConnection {
		s += ", max-age=" + strconv.Itoa(int(rt.MaxAge/time.Second))
	}
	if h := res.PostureHead(); h != nil {
		s += ", posture=" + wire.EncodeBytes(h)
	}
	return s
}

// challenge answers with status (401) and a fresh Attestation-Request.
func (g *Guard) challenge(w http.ResponseWriter, r *http.Request, st *connState, rt *route, binding []byte, status int, errCode string, cause error) {
	enc, err := g.issue(r, st, rt, binding, false)
	if err != nil {
		g.fail(w, r, rt, nil, nil, err)
		return
	}
	h := w.Header()
	ch := wire.Challenge{Error: errCode, Mode: rt.Mode.String()}
	if rt.Mode == ModeConnection {
		ch.MaxAge = int(rt.MaxAge / time.Second)
	}
	h.Set("WWW-Authenticate", ch.Format())
	h.Set(wire.HeaderRequest, enc)
	g.writeProblem(w, r, rt, status, problemSlug(errCode), "Attestation required", cause)
}

// issue returns an encoded Attestation-Request for rt on this connection.
// Connection-mode requests are shared by concurrent requests until answered
// or half expired; operation-mode requests are bound to binding, or are a
// template when template is set.
func (g *Guard) issue(r *http.Request, st *connState, rt *route, binding []byte, template bool) (string, error) {
	now := g.cfg.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	reqr, err := st.requester(r, &g.cfg.requester)
	if err != nil {
		return "", err
	}
	if rt.Mode == ModeConnection && !template {
		if enc := st.sharedChallenge(rt, now); enc != "" {
			return enc, nil
		}
	}
	var req *postauth.Request
	switch {
	case template:
		req, err = reqr.NewTemplate("")
	case rt.Mode == ModeOperation:
		req, err = reqr.NewRequest("", binding)
	default:
		req, err = reqr.NewRequest("", nil)
	}
	if err != nil {
		return "", err
	}
	b, err := req.Marshal()
	if err != nil {
		return "", err
	}
	if template {
		return wire.EncodeBytes(b, wire.ParamOp), nil
	}
	enc := wire.EncodeBytes(b)
	if rt.Mode == ModeConnection {
		st.setSharedChallenge(rt, enc, now.Add(g.cfg.requester.ContextTTL/2))
	}
	return enc, nil
}

// preArm adds a fresh Attestation-Request to the response if rt asks for it.
func (g *Guard) preArm(w http.ResponseWriter, r *http.Request, st *connState, rt *route) {
	if !rt.PreArm {
		return
	}
	enc, err := g.issue(r, st, rt, nil, rt.Mode == ModeOperation)
	if err == nil {
		w.Header().Set(wire.HeaderRequest, enc)
	}
}

// fail answers a request that attestation stopped, by the error's code.
// st may be nil when no challenge can be issued (no TLS 1.3).
func (g *Guard) fail(w http.ResponseWriter, r *http.Request, rt *route, st *connState, binding []byte, err error) {
	code := postauth.CodeOf(err)
	switch code {
	case postauth.CodePolicyDenied:
		g.writeProblem(w, r, rt, http.StatusForbidden, "policy-denied", "Attestation policy denied the request", err)
	case postauth.CodeUnavailable, postauth.CodeCanceled:
		w.Header().Set("Retry-After", strconv.Itoa(int((g.cfg.retryAfter+time.Second-1)/time.Second)))
		g.writeProblem(w, r, rt, http.StatusServiceUnavailable, "verifier-unavailable", "Attestation could not be verified now", err)
	default:
		errCode := wire.ErrInvalid
		switch code {
		case postauth.CodeRequired:
			errCode = wire.ErrRequired
		case postauth.CodeStale:
			errCode = wire.ErrStale
		}
		if st == nil {
			w.Header().Set("WWW-Authenticate", wire.Challenge{Error: errCode}.Format())
			g.writeProblem(w, r, rt, http.StatusUnauthorized, "attestation-impossible", "Attestation needs TLS 1.3", err)
			return
		}
		g.challenge(w, r, st, rt, binding, http.StatusUnauthorized, errCode, err)
	}
}

func problemSlug(errCode string) string {
	switch errCode {
	case wire.ErrStale:
		return "attestation-stale"
	case wire.ErrPostureChanged:
		return "posture-changed"
	case wire.ErrInvalid:
		return "invalid-attestation"
	}
	return "attestation-required"
}

var errBodyTooLarge = errors.New("middleware: request body too large")

// readBody reads the whole body (at most max bytes) and puts it back for
// the handler.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, errBodyTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > max {
		return nil, errBodyTooLarge
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// requestTarget is the request-target as the client sent it.
func requestTarget(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

func (g *Guard) logAttested(r *http.Request, rt *route, res *postauth.Result) {
	if g.cfg.log == nil {
		return
	}
	g.cfg.log.LogAttrs(r.Context(), slog.LevelInfo, "reattest: attested",
		slog.String("route", rt.pattern), slog.String("mode", rt.Mode.String()),
		slog.String("format", res.Format()), slog.String("subject", res.Subject()),
		slog.String("remote", r.RemoteAddr))
}

// Filter runs the checks of [Guard.Middleware] for one request, for adapters
// of other frameworks. If it returns ok, the request may proceed with the
// returned request; otherwise the response has been written.
func (g *Guard) Filter(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	var out *http.Request
	g.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r2 *http.Request) { out = r2 })).ServeHTTP(w, r)
	return out, out != nil
}
