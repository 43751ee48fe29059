package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// Header names of the HTTP binding (docs/protocol.md, section 5.1).
const (
	HeaderAttestationRequest = httpbind.HeaderAttestationRequest
	HeaderAttestation        = httpbind.HeaderAttestation
	HeaderPosture            = httpbind.HeaderPosture
	HeaderResult             = httpbind.HeaderResult
	WellKnownPath            = httpbind.WellKnownPath
)

// Guard is the server side of reattest: net/http middleware that demands
// fresh attestation, bound to the request's own TLS connection, before
// high-impact routes run, and caches verdicts per connection. Routes that
// are not marked high-impact pass through untouched. A Guard is safe for
// concurrent use.
type Guard struct {
	cfg config
	// rp is the relying party of every route that overrides nothing; its
	// request settings are those of every connection's Requester.
	rp *postauth.RelyingParty
	// server answers the server-attests requests (nil: the server does not
	// attest).
	server    *postauth.Responder
	mux       *http.ServeMux    // matches WithRoute patterns
	patterns  []*route          // routes of WithRoute, in order
	byPattern map[string]*route // the same, by pattern; nil if none
	prefixes  []string          // their static path prefixes (staticPrefix)
	// methods, if not nil, holds every method a route pattern names: a
	// request with another method skips route matching (nil when some
	// pattern has no method and matches them all).
	methods []string
	// exact indexes the routes whose pattern is a literal path (exactRoutes),
	// nil if none or if a pattern names a host.
	exact    map[string]*exactRoute
	fallback *fallbackCache

	mu       sync.Mutex // guards handlers
	handlers []*route   // routes of wrapped handlers, in creation order
	// nested is set once a wrapped handler exists: a request may then meet
	// the Guard twice (a pattern route and a wrapped handler), and passes
	// carry a mark so that it is verified once.
	nested   atomic.Bool
	discover atomic.Pointer[[]byte] // the discovery document; nil: rebuild

	serverMu     sync.Mutex // guards serverBudget
	serverBudget tokenBucket

	co     *coordination // nil without WithCoordinator (coordinate.go)
	limits *limiter      // nil without WithLimits (limit.go)
}

// New returns a Guard that verifies Evidence with v (the default for every
// route). It fails on invalid configuration: a nil verifier, a bad route
// pattern or route, server attestation without an identity or an attester.
func New(v postauth.Verifier, opts ...Option) (*Guard, error) {
	cfg := newConfig(opts)
	if (cfg.serverID == nil) != (cfg.serverAtt == nil) {
		return nil, errors.New("middleware: server attestation needs both an identity and an attester")
	}
	if v == nil && (cfg.serverAtt == nil || len(cfg.routes) > 0) {
		return nil, errors.New("middleware: New needs a postauth.Verifier (for example a *softeat.Verifier): without one every attestation would fail (nil is allowed only for a server that only attests itself: WithServerAttestation and no WithRoute)")
	}
	g := &Guard{cfg: cfg, mux: http.NewServeMux()}
	var err error
	g.rp, err = postauth.NewRelyingParty(v, append([]postauth.Option{postauth.WithClock(cfg.now)}, cfg.protocol...)...)
	if err != nil && v != nil {
		return nil, fmt.Errorf("middleware: %w", err)
	}
	pendingTTL := postauth.DefaultContextTTL
	if g.rp != nil {
		pendingTTL = g.rp.ContextTTL()
	}
	g.fallback = newFallbackCache(cfg.fallbackSize, cfg.fallbackIdle, pendingTTL)
	if cfg.serverAtt != nil {
		if g.server, err = postauth.NewResponder(cfg.serverID, cfg.serverAtt, cfg.protocol...); err != nil {
			return nil, fmt.Errorf("middleware: %w", err)
		}
	}
	for _, spec := range cfg.routes {
		rt, err := g.newRoute(spec.pattern, spec.route)
		if err != nil {
			return nil, err
		}
		if err := registerPattern(g.mux, spec.pattern); err != nil {
			return nil, err
		}
		if g.byPattern == nil {
			g.byPattern = make(map[string]*route)
		}
		g.patterns = append(g.patterns, rt)
		g.byPattern[spec.pattern] = rt
		g.prefixes = append(g.prefixes, staticPrefix(spec.pattern))
	}
	g.methods = routeMethods(cfg.routes)
	g.exact = exactRoutes(cfg.routes, g.byPattern)
	g.startCoordination()
	return g, nil
}

// Middleware returns next wrapped so that the routes configured with
// [WithRoute] require attestation, the discovery document is served, and
// server attestation requests are answered. Its signature fits chi's Use.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.discovery && r.URL.Path == WellKnownPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			g.serveDiscovery(w, r)
			return
		}
		g.serve(w, r, g.match(r), next)
	})
}

// Handler wraps a single handler with policy r, independently of any
// routing: the safest way to protect a route, since no router disagreement
// can bypass it. A request that a [WithRoute] pattern of the same Guard
// already verified is not verified again: the handler's route checks the
// same Result against what it adds (max-age, posture policy, Appraise); if
// the two routes cannot share a verdict (other verifier or protocol
// settings, or an operation-mode handler inside a connection-mode pattern)
// the request gets 500 and the log says why.
func (g *Guard) Handler(h http.Handler, r Route) (http.Handler, error) {
	if h == nil {
		return nil, errors.New("middleware: Handler needs a handler")
	}
	rt, err := g.newRoute("", r)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.handlers = append(g.handlers, rt)
	g.mu.Unlock()
	g.nested.Store(true)
	g.discover.Store(nil)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if rt.name.Load() == nil {
			g.learnName(rt, req)
		}
		g.serve(w, req, rt, h)
	}), nil
}

// learnName names a wrapped handler's route after the first name a router
// reports for it, so that discovery lists it.
func (g *Guard) learnName(rt *route, r *http.Request) {
	if n, ok := r.Context().Value(routeNameKey{}).(string); ok && n != "" {
		if rt.name.CompareAndSwap(nil, &n) {
			g.discover.Store(nil)
		}
	}
}

// passKey marks a request that the Guard let through, so that an inner
// layer of the same Guard does not verify it again.
type passKey struct{}

type pass struct {
	g     *Guard
	rt    *route
	res   *postauth.Result
	fresh bool // verified for this request (not a cached verdict)
	bound bool // verified in operation mode, bound to this very request
}

// serve decides a request for route rt (nil: not high-impact).
func (g *Guard) serve(w http.ResponseWriter, r *http.Request, rt *route, next http.Handler) {
	if g.server != nil && r.Header[HeaderAttestationRequest] != nil {
		g.answerServerAttestation(w, r)
	}
	if rt == nil {
		next.ServeHTTP(w, r)
		return
	}
	x := &exchange{g: g, w: w, r: r, rt: rt}
	if g.nested.Load() {
		if p, ok := r.Context().Value(passKey{}).(*pass); ok && p.g == g {
			x.reenter(p, next)
			return
		}
	}
	x.decide(next)
}

// connState returns the attestation state of r's connection: the one
// ConfigureServer installed, or else the fallback cache's entry for the
// connection's exporter-derived id.
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

// appraise runs the route's posture policy and Appraise hook on a verified
// Result. An Appraise error without a code is a denial.
func (rt *route) appraise(ctx context.Context, res *postauth.Result) error {
	if rt.Posture != nil {
		if err := postauth.AppraisePosture(ctx, rt.Posture, res); err != nil { // mutation: route posture policy
			return err
		}
	}
	if rt.Appraise != nil {
		if err := rt.Appraise(ctx, res); err != nil { // mutation: route appraise hook
			if postauth.CodeOf(err) == postauth.CodeUnknown {
				return &postauth.Error{Code: postauth.CodePolicyDenied, Reason: postauth.ReasonPolicyDenied, Err: err}
			}
			return err
		}
	}
	return nil
}
