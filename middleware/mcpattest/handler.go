package mcpattest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
)

// DefaultMaxBody bounds a POST body the Handler reads to classify it.
const DefaultMaxBody = middleware.DefaultMaxBody

// Option configures a [Handler].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	maxBody int64
	prefix  string
}

func newConfig(opts []Option) config {
	c := config{maxBody: DefaultMaxBody, prefix: "mcp"}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithMaxBody bounds the POST bodies the Handler reads (once, to classify
// them, and again for the operation digest); larger bodies get 413 and
// CodeNotAttestable. Keep it at most the MCP handler's own limit
// (mcp.StreamableHTTPOptions.MaxRequestBodyBytes, 4 MiB by default). Zero
// or less means DefaultMaxBody (1 MiB).
func WithMaxBody(n int64) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxBody = n
		}
	})
}

// WithRoutePrefix sets the first word of the rules' default names ("mcp
// tools/call payments.*"), to tell apart several MCP endpoints of one
// Guard. Empty means "mcp".
func WithRoutePrefix(prefix string) Option {
	return optionFunc(func(c *config) {
		if prefix != "" {
			c.prefix = prefix
		}
	})
}

// Handler is an MCP Streamable HTTP endpoint guarded by rules: it reads
// each POST body once (bounded), classifies its JSON-RPC messages, and
// passes the request through the Guard's route of every rule that
// matches, strictest first, before the MCP handler serves it. Requests
// that match no rule, GET (the SSE stream) and DELETE (session end) pass
// untouched. A Handler is safe for concurrent use.
type Handler struct {
	cfg   config
	next  http.Handler
	rules []*rule
}

var _ http.Handler = (*Handler)(nil)

// New returns next (the MCP SDK's *mcp.StreamableHTTPHandler, or any
// Streamable HTTP endpoint) guarded by rules on Guard g. Each rule becomes
// one route of g ([middleware.Guard.Handler]) named after it, so the
// discovery document lists the protected tools; refusals are answered as
// JSON-RPC errors (see [CodeFor], [ErrorData]). It fails on a nil Guard or
// handler, an invalid rule, or two rules of the same name.
func New(g *middleware.Guard, next http.Handler, rules []Rule, opts ...Option) (*Handler, error) {
	if g == nil || next == nil {
		return nil, errors.New("mcpattest: New needs a Guard and the MCP handler")
	}
	h := &Handler{cfg: newConfig(opts), next: next}
	resume := http.HandlerFunc(h.resume)
	names := map[string]bool{}
	for i, r := range rules {
		r, err := r.check()
		if err != nil {
			return nil, fmt.Errorf("mcpattest: rule %d: %w", i, err)
		}
		rl := &rule{Rule: r, index: i, targets: slices.Concat(r.Tools, r.URIs)}
		switch {
		case len(r.Tools) > 0:
			rl.key = "name"
		case len(r.URIs) > 0:
			rl.key = "uri"
		}
		rl.name = r.Name
		if rl.name == "" {
			rl.name = strings.Join(append([]string{h.cfg.prefix, r.Method}, rl.targets...), " ")
		}
		if names[rl.name] {
			return nil, fmt.Errorf("mcpattest: two rules named %q", rl.name)
		}
		names[rl.name] = true
		rl.route = middleware.Route{
			Name: rl.name, Mode: r.Mode, MaxAge: r.MaxAge, PreArm: r.PreArm,
			Posture: r.Posture, Appraise: r.Appraise, MaxBody: h.cfg.maxBody,
			ErrorHandler: func(w http.ResponseWriter, req *http.Request, status int, err error) {
				var c *classification
				if ch, ok := req.Context().Value(chainKey{}).(*chain); ok {
					c = ch.c
				}
				writeRefusal(w, status, err, c, rl.name)
			},
		}
		if rl.route.MaxAge == 0 {
			rl.route.MaxAge = middleware.DefaultMaxAge
		}
		if rl.guarded, err = g.Handler(resume, rl.route); err != nil {
			return nil, fmt.Errorf("mcpattest: rule %q: %w", rl.name, err)
		}
		h.rules = append(h.rules, rl)
	}
	return h, nil
}

// chainKey carries the chain of a request through the Guard's routes.
type chainKey struct{}

// chain is a classified request on its way through its rules' routes.
type chain struct {
	c    *classification
	next int // the index in c.rules of the next route to pass
}

// ServeHTTP classifies r and serves it through the routes of its rules.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || len(h.rules) == 0 {
		// Only a POST carries messages from the client (GET opens the SSE
		// stream, DELETE ends a session); the MCP handler refuses other
		// methods.
		h.next.ServeHTTP(w, r)
		return
	}
	body, err := readBody(r, h.cfg.maxBody)
	if err != nil {
		writeRefusal(w, 0, err, nil, "")
		return
	}
	c, err := classify(body, h.rules)
	if err != nil {
		writeRefusal(w, 0, postauth.ErrorFor(postauth.ReasonBadBody, err), nil, "")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(c.rules) == 0 { // mutation: mcp classification applies
		h.next.ServeHTTP(w, r)
		return
	}
	ch := &chain{c: c}
	c.rules[0].guarded.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), chainKey{}, ch)))
}

// resume runs after a route let the request through: the next route of
// the chain, or the MCP handler after the last.
func (h *Handler) resume(w http.ResponseWriter, r *http.Request) {
	ch, ok := r.Context().Value(chainKey{}).(*chain)
	if !ok {
		// A rule's route reached without ServeHTTP: never serve it.
		writeRefusal(w, 0, postauth.ErrorFor(postauth.ReasonMisconfigured,
			errors.New("mcpattest: a rule's handler ran outside the Handler")), nil, "")
		return
	}
	ch.next++
	if ch.next < len(ch.c.rules) { // mutation: mcp every matched rule
		ch.c.rules[ch.next].guarded.ServeHTTP(w, r)
		return
	}
	h.next.ServeHTTP(w, r)
}

var errBodyTooLarge = errors.New("mcpattest: request body too large")

// readBody reads the whole body (at most max bytes). The caller puts it
// back for the handlers.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, postauth.ErrorFor(postauth.ReasonBodyTooLarge, errBodyTooLarge)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	r.Body.Close()
	if err != nil {
		return nil, postauth.ErrorFor(postauth.ReasonBadBody, err)
	}
	if int64(len(body)) > max { // mutation: mcp body limit
		return nil, postauth.ErrorFor(postauth.ReasonBodyTooLarge, errBodyTooLarge)
	}
	return body, nil
}
