package middleware

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/postauth"
)

// connState is the attestation state of one connection: its Requester
// (pending challenges), the verified results per route and the
// server-attests budget. It lives in the connection's context
// ([ConfigureServer]) or in the fallback cache, and dies with the connection.
type connState struct {
	mu      sync.Mutex // guards everything below
	reqr    *postauth.Requester
	chErr   error
	results []cachedResult
	// challenges are the outstanding connection-mode requests, one per
	// route, each handed to every request for that route that needs one
	// until it is answered or half expired, so that concurrent requests
	// share one attestation.
	challenges []sharedChallenge
	// serverBudget limits server-attests answers on this connection.
	serverBudget tokenBucket
	// closed is set when the connection ends; late users see a fresh state.
	closed bool
}

var errConnClosed = postauth.NewError(postauth.CodeCanceled, postauth.ReasonConnectionClosed, errors.New("middleware: connection closed"))

type sharedChallenge struct {
	route   *route
	encoded string
	until   time.Time
}

func (s *connState) sharedChallenge(rt *route, now time.Time) string {
	for _, c := range s.challenges {
		if c.route == rt && now.Before(c.until) {
			return c.encoded
		}
	}
	return ""
}

func (s *connState) setSharedChallenge(rt *route, encoded string, until time.Time) {
	s.dropSharedChallenge(rt)
	s.challenges = append(s.challenges, sharedChallenge{rt, encoded, until})
}

func (s *connState) dropSharedChallenge(rt *route) {
	s.challenges = slices.DeleteFunc(s.challenges, func(c sharedChallenge) bool { return c.route == rt })
	if len(s.challenges) == 0 {
		s.challenges = nil
	}
}

type cachedResult struct {
	route *route
	res   *postauth.Result
	// hint is the posture head as the client sends it in
	// Attestation-Posture (":base64:"), empty if the result has no posture.
	hint string
	// shared is the verdict's state for the coordinator and observers
	// (coordinate.go); nil when neither is configured.
	shared *verdictState
}

// requester returns the connection's Requester, creating it from r.TLS on
// first use. TLS problems (no TLS, not 1.3) are remembered.
func (s *connState) requester(r *http.Request, rp *postauth.RelyingParty) (*postauth.Requester, error) {
	if s.reqr != nil || s.chErr != nil {
		return s.reqr, s.chErr
	}
	if s.closed {
		return nil, errConnClosed
	}
	ch, err := postauth.NewChannel(r.TLS)
	if err != nil {
		if postauth.CodeOf(err) == postauth.CodeInvalid && r.TLS != nil && !r.TLS.HandshakeComplete {
			return nil, err // early data: do not remember, the handshake will complete
		}
		s.chErr = err
		return nil, err
	}
	s.reqr, s.chErr = rp.NewRequester(ch, postauth.RoleClient)
	return s.reqr, s.chErr
}

// hasVerdict reports whether s holds a cached verdict.
func (s *connState) hasVerdict() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.results) > 0
}

func (s *connState) lookup(rt *route) *cachedResult {
	for i := range s.results {
		if s.results[i].route == rt {
			return &s.results[i]
		}
	}
	return nil
}

func (s *connState) store(rt *route, res *postauth.Result, hint string, shared *verdictState) {
	if c := s.lookup(rt); c != nil {
		c.res, c.hint, c.shared = res, hint, shared
		return
	}
	s.results = append(s.results, cachedResult{route: rt, res: res, hint: hint, shared: shared})
}

func (s *connState) drop(rt *route) {
	for i := range s.results {
		if s.results[i].route == rt {
			s.results = append(s.results[:i], s.results[i+1:]...)
			return
		}
	}
}

// tokenBucket is a rate limit: at most burst at once, refilled at rate per
// second. The zero value is a full bucket. Not safe for concurrent use.
type tokenBucket struct {
	tokens float64
	at     time.Time
}

func (b *tokenBucket) take(now time.Time, rate float64, burst int) bool {
	if b.at.IsZero() {
		b.tokens = float64(burst)
	} else {
		b.tokens = min(b.tokens+now.Sub(b.at).Seconds()*rate, float64(burst))
	}
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

type connKey struct{}

// ServerHeaderTableSize is the HTTP/2 HPACK encoder table size
// [ConfigureServer] gives a server that did not choose one (Go's default
// is 4096 bytes).
const ServerHeaderTableSize = 256

// Conns tracks the attestation state of the connections of one
// [http.Server]; see [ConfigureServer].
type Conns struct {
	live atomic.Int64
	m    sync.Map // net.Conn -> *connState
}

// Len is the number of open connections with attestation state.
func (c *Conns) Len() int { return int(c.live.Load()) }

// ConfigureServer installs the per-connection hooks reattest needs on srv:
// ConnContext gives every connection its own attestation state (shared by
// the HTTP/2 streams of the connection), and ConnState drops it when the
// connection closes or is hijacked. Existing hooks are kept and called
// first. Call it before the server starts. Without it the middleware falls
// back to a bounded cache keyed by an exporter-derived connection id, which
// costs an exporter call per protected request.
//
// When srv.HTTP2.MaxEncoderHeaderTableSize is unset, ConfigureServer sets
// it to [ServerHeaderTableSize]: the challenge's single-use
// Attestation-Request would otherwise stay in each connection's HPACK
// table (about 1.4 KB more per attested connection, bench/FINDINGS.md);
// small response fields are still indexed. Set the field yourself to keep
// another size.
func ConfigureServer(srv *http.Server) *Conns {
	c := &Conns{}
	if srv.HTTP2 == nil {
		srv.HTTP2 = &http.HTTP2Config{}
	}
	if srv.HTTP2.MaxEncoderHeaderTableSize == 0 {
		srv.HTTP2.MaxEncoderHeaderTableSize = ServerHeaderTableSize
	}
	prevCtx, prevState := srv.ConnContext, srv.ConnState
	srv.ConnContext = func(ctx context.Context, nc net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, nc)
		}
		st := &connState{}
		c.m.Store(nc, st)
		c.live.Add(1)
		return context.WithValue(ctx, connKey{}, st)
	}
	srv.ConnState = func(nc net.Conn, cs http.ConnState) {
		if prevState != nil {
			prevState(nc, cs)
		}
		if cs != http.StateClosed && cs != http.StateHijacked {
			return
		}
		if v, ok := c.m.LoadAndDelete(nc); ok {
			c.live.Add(-1)
			st := v.(*connState)
			st.mu.Lock()
			st.closed = true
			st.results, st.reqr, st.challenges = nil, nil, nil
			st.mu.Unlock()
		}
	}
	return c
}

// ContextWithConnState returns a context carrying fresh per-connection
// attestation state, for servers that manage connections themselves (for
// example http3.Server.ConnContext). Call it once per connection.
func ContextWithConnState(ctx context.Context) context.Context {
	return context.WithValue(ctx, connKey{}, &connState{})
}
