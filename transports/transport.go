package transports

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/internal/wire"
	"github.com/reattest/reattest/postauth"
)

// Conn is one connection the Transport pins requests to: a challenge is
// answered with its exporter and the retry goes on it. *http.ClientConn
// implements it; package transports/h3 adapts HTTP/3 connections.
type Conn interface {
	// RoundTrip sends a request on this connection (waiting for a free
	// slot if needed).
	RoundTrip(*http.Request) (*http.Response, error)
	// Reserve reserves a request slot, or fails if the connection is busy
	// or closed; Release gives an unused reservation back (see
	// http.ClientConn).
	Reserve() error
	Release()
	// InFlight counts requests in flight, reservations included.
	InFlight() int
	// Err is non-nil once the connection cannot be used any more.
	Err() error
	// Close closes the connection.
	Close() error
}

var _ Conn = (*http.ClientConn)(nil)

// DialFunc opens a new connection to addr ("host:port") and returns it with
// the TLS state of its completed handshake (it must not return before the
// handshake completes: early data cannot carry attestation).
type DialFunc func(ctx context.Context, addr string) (Conn, *tls.ConnectionState, error)

// Errors.
var (
	// ErrBodyNotReplayable: the server demanded attestation and the request
	// body cannot be sent again (no GetBody). The request was sent once and
	// not retried.
	ErrBodyNotReplayable = errors.New("transports: attestation challenge, but the request body cannot be replayed (set Request.GetBody)")
	// ErrNoAttester: the server demanded attestation and no attester is
	// configured.
	ErrNoAttester = errors.New("transports: attestation challenge, but no attester is configured")
	// ErrServerNotAttested: the server could not be attested; the request
	// was not sent.
	ErrServerNotAttested = errors.New("transports: server attestation failed; request not sent")
	// ErrClosed: the Transport is closed.
	ErrClosed = errors.New("transports: transport closed")
)

// Transport is an http.RoundTripper that answers reattest challenges. It
// keeps its own connections, one [http.ClientConn] each, so that a
// challenge is always answered with the exporter of the connection that
// carries the retry, for HTTP/1.1 and HTTP/2 alike. Concurrent requests on
// one connection that are challenged in connection mode share one
// attestation; a request is retried at most once, with its body replayed
// from GetBody. A Transport is safe for concurrent use. Create it with
// [New]; the zero Transport works but answers no challenges.
type Transport struct {
	base          *http.Transport
	id            *postauth.Identity
	att           postauth.Attester
	respond       postauth.RespondOptions
	posture       PostureSource
	requireServer func(*http.Request) bool
	serverPolicy  *postauth.Policy
	serverMaxAge  time.Duration
	proactive     func(*http.Request) bool
	attestFor     func(*http.Request) bool
	dialer        DialFunc
	observe       func(Event)
	now           func() time.Time
	maxConns      int

	initOnce sync.Once
	hint     atomic.Pointer[string] // encoded posture head
	unsub    func()
	mu       sync.Mutex // guards hosts, learned, closed
	hosts    map[string]*hostConns
	learned  map[routeKey]string
	closed   bool
}

type hostConns struct {
	conns    []*conn
	dialDone chan struct{} // closed when the dial in progress ends
}

type routeKey struct{ host, method, path string }

// maxLearned bounds the remembered high-impact routes.
const maxLearned = 1024

var (
	_ http.RoundTripper = (*Transport)(nil)
	_ io.Closer         = (*Transport)(nil)
)

// New returns a Transport over base, which must be an *http.Transport (nil
// means a new one that speaks HTTP/1.1 and HTTP/2 over TLS 1.3 only). base
// provides dialing, TLS configuration and proxies; the Transport keeps its
// own connection pool on top of it.
func New(base *http.Transport, opts ...Option) (*Transport, error) {
	t := &Transport{}
	if base != nil {
		t.base = base.Clone()
	}
	for _, o := range opts {
		o(t)
	}
	t.init()
	if (t.id == nil) != (t.att == nil) {
		return nil, errors.New("transports: an attester needs an identity and vice versa")
	}
	if t.att != nil && t.attestFor == nil {
		return nil, errors.New("transports: WithAttester needs WithAttestTo or WithAttestFor: Evidence reveals the agent's machine and posture, so say which servers may receive it")
	}
	if t.requireServer != nil && (t.serverPolicy == nil || t.serverPolicy.Verifier == nil) {
		return nil, errors.New("transports: server attestation needs a policy with a verifier")
	}
	if t.posture != nil {
		t.setHint(t.posture.Head())
		t.unsub = t.posture.Subscribe(t.setHint)
	}
	return t, nil
}

// init fills in defaults, so that the zero Transport works: it then
// answers no challenges (no attester) and speaks HTTP/1.1 and HTTP/2 over
// TLS 1.3.
func (t *Transport) init() {
	t.initOnce.Do(func() {
		if t.base == nil {
			t.base = &http.Transport{
				TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS13},
				ForceAttemptHTTP2: true,
				IdleConnTimeout:   90 * time.Second,
			}
		}
		if t.base.Protocols == nil {
			p := new(http.Protocols)
			p.SetHTTP1(true)
			p.SetHTTP2(true)
			t.base.Protocols = p
		}
		if t.now == nil {
			t.now = time.Now
		}
		t.mu.Lock()
		if t.hosts == nil {
			t.hosts = make(map[string]*hostConns)
		}
		if t.learned == nil {
			t.learned = make(map[routeKey]string)
		}
		t.mu.Unlock()
	})
}

func (t *Transport) setHint(head []byte) {
	if head == nil {
		t.hint.Store(nil)
		return
	}
	s := wire.EncodeBytes(head)
	t.hint.Store(&s)
}

func (t *Transport) currentHint() string {
	if p := t.hint.Load(); p != nil {
		return *p
	}
	return ""
}

// Close closes all connections and stops following posture changes.
func (t *Transport) Close() error {
	t.init()
	t.mu.Lock()
	t.closed = true
	hosts := t.hosts
	t.hosts = map[string]*hostConns{}
	t.mu.Unlock()
	if t.unsub != nil {
		t.unsub()
	}
	for _, h := range hosts {
		for _, c := range h.conns {
			c.conn.Close()
		}
	}
	return nil
}

// CloseIdleConnections closes connections with no request in flight.
func (t *Transport) CloseIdleConnections() {
	t.init()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range t.hosts {
		kept := h.conns[:0]
		for _, c := range h.conns {
			if c.conn.InFlight() == 0 {
				c.conn.Close()
				continue
			}
			kept = append(kept, c)
		}
		h.conns = kept
	}
}

// Conns is the number of connections the Transport holds.
func (t *Transport) Conns() int {
	t.init()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, h := range t.hosts {
		n += len(h.conns)
	}
	return n
}

// RoundTrip sends req on one of the Transport's connections, answering an
// attestation challenge at most once. Requests that are not https go to
// the base transport untouched.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.init()
	if req.URL == nil || req.URL.Scheme != "https" {
		if t.requireServer != nil && req.URL != nil && t.requireServer(req) {
			// A critical request must not leave in clear text to a server
			// nobody attested (for example after a redirect to http).
			closeBody(req)
			return nil, fmt.Errorf("%w: %s is not https", ErrServerNotAttested, req.URL.Scheme)
		}
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	c, reserved, err := t.getConn(ctx, hostPort(req.URL))
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if t.requireServer != nil && t.requireServer(req) {
		if err := c.ensureServerAttested(ctx, req); err != nil {
			if reserved {
				c.conn.Release()
			}
			closeBody(req)
			return nil, err
		}
	}
	return c.do(req)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// getConn returns a connection to addr, with a reserved request slot when
// possible (reserved), dialing a new one when all are busy. While a dial is
// in progress, other callers wait for it rather than dial too, so that
// concurrent HTTP/2 requests share one connection. A reservation is
// consumed by the next RoundTrip on the connection, whoever makes it.
func (t *Transport) getConn(ctx context.Context, addr string) (c *conn, reserved bool, err error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, false, ErrClosed
		}
		h := t.hosts[addr]
		if h == nil {
			h = &hostConns{}
			t.hosts[addr] = h
		}
		pick, leastBusy := h.pick(t.now(), t.base.IdleConnTimeout)
		if pick != nil {
			t.mu.Unlock()
			return pick, true, nil
		}
		if t.maxConns > 0 && len(h.conns) >= t.maxConns && leastBusy != nil {
			t.mu.Unlock()
			return leastBusy, false, nil // RoundTrip waits for a free slot
		}
		if wait := h.dialDone; wait != nil {
			t.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		done := make(chan struct{})
		h.dialDone = done
		t.mu.Unlock()

		c, err = t.dial(ctx, addr)

		t.mu.Lock()
		h.dialDone = nil
		close(done)
		if err != nil {
			t.mu.Unlock()
			return nil, false, err
		}
		if t.closed {
			t.mu.Unlock()
			c.conn.Close()
			return nil, false, ErrClosed
		}
		h.conns = append(h.conns, c)
		t.mu.Unlock()
		return c, c.conn.Reserve() == nil, nil
	}
}

// pick drops dead and long-idle connections and returns one with a slot
// reserved, or else the least busy one.
func (h *hostConns) pick(now time.Time, idleTimeout time.Duration) (pick, leastBusy *conn) {
	kept := h.conns[:0]
	for _, c := range h.conns {
		idle := now.Sub(time.Unix(0, c.lastUsed.Load()))
		if c.conn.Err() != nil || (idleTimeout > 0 && c.conn.InFlight() == 0 && idle > idleTimeout) {
			c.conn.Close()
			continue
		}
		kept = append(kept, c)
		if pick == nil && c.conn.Reserve() == nil {
			pick = c
		}
		if leastBusy == nil || c.conn.InFlight() < leastBusy.conn.InFlight() {
			leastBusy = c
		}
	}
	clear(h.conns[len(kept):])
	h.conns = kept
	return pick, leastBusy
}

func (t *Transport) dial(ctx context.Context, addr string) (*conn, error) {
	if t.dialer != nil {
		pc, state, err := t.dialer(ctx, addr)
		if err != nil {
			return nil, err
		}
		return newConn(t, pc, state, addr), nil
	}
	var state *tls.ConnectionState
	trace := &httptrace.ClientTrace{TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
		if err == nil {
			state = &cs
		}
	}}
	cc, err := t.base.NewClientConn(httptrace.WithClientTrace(ctx, trace), "https", addr)
	if err != nil {
		return nil, err
	}
	c := newConn(t, cc, state, addr)
	return c, nil
}

// newConn wraps a freshly dialed connection. state is the TLS state of its
// completed handshake (nil if unknown).
func newConn(t *Transport, pc Conn, state *tls.ConnectionState, addr string) *conn {
	c := &conn{t: t, conn: pc, addr: addr}
	// A connection that cannot carry attestation (TLS 1.2, a handshake the
	// trace did not see) still serves ordinary requests; answering a
	// challenge on it fails with chErr.
	var err error
	if state == nil {
		c.chErr = errors.New("transports: TLS handshake not observed (custom DialTLSContext?); cannot bind attestation to the connection")
	} else if c.ch, err = postauth.NewChannel(state); err != nil {
		c.chErr = fmt.Errorf("transports: %s: %w", addr, err)
	}
	c.lastUsed.Store(t.now().UnixNano())
	return c
}

// learn remembers that a route needs attestation in mode.
func (t *Transport) learn(req *http.Request, mode string) {
	k := routeKey{req.URL.Host, req.Method, req.URL.Path}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.learned[k]; !ok && len(t.learned) >= maxLearned {
		clear(t.learned)
	}
	t.learned[k] = mode
}

func (t *Transport) learnedMode(req *http.Request) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.learned[routeKey{req.URL.Host, req.Method, req.URL.Path}]
}

func (t *Transport) emit(e Event) {
	if t.observe != nil {
		t.observe(e)
	}
}

// conn is one pinned connection and the attestation state on it.
type conn struct {
	t     *Transport
	conn  Conn
	ch    *postauth.Channel // nil if the connection cannot carry attestation
	chErr error             // why ch is nil
	addr  string
	// lastUsed is when a request last started on the connection (Unix
	// nanoseconds).
	lastUsed atomic.Int64

	mu sync.Mutex // guards everything below
	// pre-armed requests from the server
	prearmConn []byte
	prearmOps  [][]byte
	// connection-mode attestation state as the server reported it
	attestedAt    time.Time
	attestedUntil time.Time
	attestedHint  string
	// flights are the connection-mode attestations in progress, by the
	// challenge they answer (requests that received the same challenge
	// share one attestation) and by route (a request of that route
	// challenged with a newer challenge waits for it too).
	flights      map[string]*flight
	routeFlights map[routeKey]*flight
	// epochs count the connection-mode attestations that succeeded, by
	// route (host, method, path): a request challenged after being sent in
	// an older epoch of its route may ride on the newer one.
	epochs map[routeKey]uint64
	// server attestation (client as relying party)
	reqr         *postauth.Requester
	serverOK     time.Time
	serverFlight *flight
}

type flight struct {
	done      chan struct{}
	err       error
	challenge string // the connection-mode challenge it answers ("" for server attestation)
}

// maxPrearmOps bounds the operation templates kept per connection.
const maxPrearmOps = 4

// roundTrip sends r on this connection.
func (c *conn) roundTrip(r *http.Request) (*http.Response, error) {
	c.lastUsed.Store(c.t.now().UnixNano())
	return c.conn.RoundTrip(r)
}

// do sends req, answering one challenge.
func (c *conn) do(req *http.Request) (*http.Response, error) {
	t := c.t
	mayAttest := t.att != nil && t.attestFor(req)
	hint := ""
	if mayAttest {
		hint = t.currentHint()
	}
	sentAt := t.now()
	rk := routeKey{req.URL.Host, req.Method, req.URL.Path}
	c.mu.Lock()
	sentEpoch := c.epochs[rk]
	c.mu.Unlock()
	first := req.Clone(req.Context())
	if hint != "" {
		first.Header.Set(wire.HeaderPosture, hint)
	}
	proactive := ""
	if mayAttest {
		proactive = c.proactiveAttestation(first, hint)
	}
	resp, err := c.roundTrip(first)
	if err != nil {
		return nil, err
	}
	c.harvest(resp, proactive != "", hint, sentAt)
	if proactive != "" && resp.StatusCode != http.StatusUnauthorized {
		t.emit(Event{Kind: EventAttested, Method: req.Method, URL: req.URL.String(), Mode: proactive, Proactive: true, Duration: t.now().Sub(sentAt)})
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}
	chal, ok := wire.ParseChallenge(resp.Header.Values("WWW-Authenticate"))
	encReq := resp.Header.Get(wire.HeaderRequest)
	if !ok || encReq == "" {
		return resp, nil // not ours, or nothing to answer: the caller sees the 401
	}
	t.emit(Event{Kind: EventChallenged, Method: req.Method, URL: req.URL.String(), Mode: chal.Mode, Reason: chal.Error})
	if t.att == nil {
		drain(resp)
		return nil, ErrNoAttester
	}
	if !mayAttest {
		return resp, nil // this server may not receive Evidence
	}
	t.learn(req, chal.Mode)
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		drain(resp)
		return nil, ErrBodyNotReplayable
	}
	drain(resp) // frees an HTTP/1.1 connection for the retry

	if chal.Mode != wire.ModeOperation {
		// Share one attestation among concurrent challenged requests.
		ride, f, err := c.joinOrLead(req.Context(), encReq, rk, sentEpoch)
		if err != nil {
			return nil, err
		}
		if ride {
			retry, err := c.retryRequest(req, hint, nil)
			if err != nil {
				return nil, err
			}
			t.emit(Event{Kind: EventShared, Method: req.Method, URL: req.URL.String(), Mode: chal.Mode})
			resp, err := c.roundTrip(retry)
			if err == nil {
				c.harvest(resp, false, hint, sentAt)
			}
			return resp, err
		}
		resp, err := c.answerAndRetry(req, encReq, hint, chal, sentAt)
		c.land(f, encReq, rk, resp, err)
		return resp, err
	}
	return c.answerAndRetry(req, encReq, hint, chal, sentAt)
}

// answerAndRetry answers the encoded request and sends req again with it.
func (c *conn) answerAndRetry(req *http.Request, encReq string, hint string, chal wire.Challenge, sentAt time.Time) (*http.Response, error) {
	t := c.t
	start := t.now()
	raw, params, err := wire.DecodeBytes(encReq, wire.MaxRequestHeader)
	if err != nil {
		return nil, fmt.Errorf("transports: bad Attestation-Request: %w", err)
	}
	var body []byte
	if hasParam(params, wire.ParamOp) || chal.Mode == wire.ModeOperation {
		if body, err = readReplayable(req); err != nil {
			return nil, err
		}
	}
	answer, err := c.answer(req, raw, hasParam(params, wire.ParamOp), body)
	if err != nil {
		return nil, err
	}
	retry, err := c.retryRequest(req, hint, answer)
	if err != nil {
		return nil, err
	}
	resp, err := c.roundTrip(retry)
	if err != nil {
		return nil, err
	}
	c.harvest(resp, true, hint, sentAt)
	t.emit(Event{Kind: EventAttested, Method: req.Method, URL: req.URL.String(), Mode: chal.Mode, Reason: chal.Error, Duration: t.now().Sub(start)})
	return resp, nil
}

// answer makes an attested authenticator for an encoded request received
// on this connection. For an operation template, the context is completed
// with req's operation digest.
func (c *conn) answer(req *http.Request, raw []byte, template bool, body []byte) ([]byte, error) {
	if c.ch == nil {
		return nil, c.chErr
	}
	areq, err := postauth.ParseRequest(raw)
	if err != nil {
		return nil, fmt.Errorf("transports: bad Attestation-Request: %w", err)
	}
	if template {
		areq.Context = append(areq.Context, wire.OperationDigest(req.Method, req.URL.RequestURI(), body)...)
	}
	out, err := postauth.Respond(req.Context(), c.ch, postauth.RoleClient, areq, c.t.id, c.t.att, &c.t.respond)
	if err != nil {
		return nil, fmt.Errorf("transports: attesting: %w", err)
	}
	return out, nil
}

// retryRequest clones req with a fresh body and, if answer is set, the
// Attestation header.
func (c *conn) retryRequest(req *http.Request, hint string, answer []byte) (*http.Request, error) {
	r := req.Clone(req.Context())
	if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
		b, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("transports: replaying body: %w", err)
		}
		r.Body = b
	}
	if hint != "" {
		r.Header.Set(wire.HeaderPosture, hint)
	}
	if answer != nil {
		r.Header.Set(wire.HeaderAttestation, wire.EncodeBytes(answer))
	}
	return r, nil
}

// proactiveAttestation attaches an answer to a pre-armed request when the
// route is known to need one and the transport holds a fitting request. It
// returns the mode used, or "".
func (c *conn) proactiveAttestation(r *http.Request, hint string) string {
	t := c.t
	if t.att == nil {
		return ""
	}
	mode := t.learnedMode(r)
	if mode == "" && t.proactive != nil && t.proactive(r) {
		mode = wire.ModeOperation
	}
	if mode == "" {
		return ""
	}
	now := t.now()
	c.mu.Lock()
	var raw []byte
	template := false
	switch mode {
	case wire.ModeOperation:
		if n := len(c.prearmOps); n > 0 {
			raw, c.prearmOps = c.prearmOps[n-1], c.prearmOps[:n-1]
			template = true
		}
	default:
		stale := !now.Before(c.attestedUntil) || hint != c.attestedHint
		if stale && c.prearmConn != nil && len(c.flights) == 0 {
			raw, c.prearmConn = c.prearmConn, nil
		}
	}
	c.mu.Unlock()
	if raw == nil {
		return ""
	}
	var body []byte
	if template {
		b, err := readReplayable(r)
		if err != nil {
			return "" // cannot bind the body: let the server challenge
		}
		body = b
	}
	answer, err := c.answer(r, raw, template, body)
	if err != nil {
		return ""
	}
	r.Header.Set(wire.HeaderAttestation, wire.EncodeBytes(answer))
	return mode
}

// harvest records what a response says about attestation on this
// connection: pre-armed requests and the verdict's lifetime.
func (c *conn) harvest(resp *http.Response, attested bool, hint string, sentAt time.Time) {
	pre := resp.Header.Get(wire.HeaderRequest)
	res := resp.Header.Get(wire.HeaderResult)
	if resp.StatusCode == http.StatusUnauthorized {
		pre = "" // a challenge, not a pre-armed request
	}
	if pre == "" && res == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if pre != "" {
		if raw, params, err := wire.DecodeBytes(pre, wire.MaxRequestHeader); err == nil {
			if hasParam(params, wire.ParamOp) {
				if len(c.prearmOps) >= maxPrearmOps {
					c.prearmOps = c.prearmOps[1:]
				}
				c.prearmOps = append(c.prearmOps, raw)
			} else {
				c.prearmConn = raw
			}
		}
	}
	if res != "" && attested && resp.StatusCode < 300 {
		if maxAge, ok := resultMaxAge(res); ok {
			c.attestedAt = sentAt
			c.attestedUntil = sentAt.Add(time.Duration(maxAge) * time.Second)
			c.attestedHint = hint
		}
	}
}

// resultMaxAge reads max-age from an Attestation-Result value.
func resultMaxAge(v string) (int, bool) {
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && k == "max-age" {
			n, err := strconv.Atoi(val)
			return n, err == nil && n >= 0
		}
	}
	return 0, false
}

// joinOrLead decides how a request challenged in connection mode (with
// challenge enc, for route rk, sent in epoch sentEpoch of that route) goes
// on: it rides (ride: resend without an authenticator) if its route was
// attested since it was sent, or once an attestation in flight for the same
// challenge or the same route succeeds; otherwise it leads (f: answer, then
// land f). Deciding and registering a flight happen under one lock, so two
// requests never both answer one challenge.
func (c *conn) joinOrLead(ctx context.Context, enc string, rk routeKey, sentEpoch uint64) (ride bool, f *flight, err error) {
	c.mu.Lock()
	for {
		if c.epochs[rk] > sentEpoch {
			c.mu.Unlock()
			return true, nil, nil
		}
		wait := c.flights[enc]
		if wait == nil {
			wait = c.routeFlights[rk]
		}
		if wait == nil {
			if c.flights == nil {
				c.flights = make(map[string]*flight)
				c.routeFlights = make(map[routeKey]*flight)
			}
			f = &flight{done: make(chan struct{}), challenge: enc}
			c.flights[enc] = f
			c.routeFlights[rk] = f
			c.mu.Unlock()
			return false, f, nil
		}
		c.mu.Unlock()
		select {
		case <-wait.done:
		case <-ctx.Done():
			return false, nil, ctx.Err()
		}
		if wait.err == nil && wait.challenge == enc {
			return true, nil, nil
		}
		// The other flight failed, or was for another challenge of the
		// route (its success shows in the epoch): decide again.
		c.mu.Lock()
	}
}

// land ends flight f for challenge enc of route rk.
func (c *conn) land(f *flight, enc string, rk routeKey, resp *http.Response, err error) {
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		err = errors.New("transports: attestation refused")
	}
	f.err = err
	c.mu.Lock()
	if c.flights[enc] == f {
		delete(c.flights, enc)
	}
	if c.routeFlights[rk] == f {
		delete(c.routeFlights, rk)
	}
	if err == nil {
		if c.epochs == nil {
			c.epochs = make(map[routeKey]uint64)
		}
		c.epochs[rk]++
	}
	c.mu.Unlock()
	close(f.done)
}

func hasParam(params []string, p string) bool {
	for _, q := range params {
		if q == p {
			return true
		}
	}
	return false
}

// readReplayable returns the body of req without consuming req.Body.
func readReplayable(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	if req.GetBody == nil {
		return nil, ErrBodyNotReplayable
	}
	rc, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// drain reads a little of resp's body and closes it, so an HTTP/1.1
// connection can carry the next request.
func drain(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

// ensureServerAttested validates a fresh server authenticator on this
// connection unless one younger than the configured max age exists.
func (c *conn) ensureServerAttested(ctx context.Context, req *http.Request) error {
	t := c.t
	for {
		c.mu.Lock()
		if !c.serverOK.IsZero() && t.now().Sub(c.serverOK) < t.serverMaxAge {
			c.mu.Unlock()
			return nil
		}
		if f := c.serverFlight; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
				if f.err != nil {
					return f.err
				}
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if c.ch == nil {
			c.mu.Unlock()
			return fmt.Errorf("%w: %w", ErrServerNotAttested, c.chErr)
		}
		f := &flight{done: make(chan struct{})}
		c.serverFlight = f
		if c.reqr == nil {
			r, err := postauth.NewRequester(c.ch, postauth.RoleServer, nil)
			if err != nil {
				c.serverFlight = nil
				c.mu.Unlock()
				close(f.done)
				return err
			}
			c.reqr = r
		}
		reqr := c.reqr
		c.mu.Unlock()

		res, err := c.attestServer(ctx, req, reqr)
		c.mu.Lock()
		if err == nil {
			c.serverOK = t.now()
		}
		c.serverFlight = nil
		c.mu.Unlock()
		f.err = err
		close(f.done)
		if err != nil {
			return err
		}
		t.emit(Event{Kind: EventServerAttested, Method: req.Method, URL: req.URL.String(), Result: res})
		return nil
	}
}

// attestServer asks the server for an authenticator on the discovery
// document and validates it.
func (c *conn) attestServer(ctx context.Context, req *http.Request, reqr *postauth.Requester) (*postauth.Result, error) {
	areq, err := reqr.NewRequest("", nil)
	if err != nil {
		return nil, err
	}
	raw, err := areq.Marshal()
	if err != nil {
		return nil, err
	}
	u := *req.URL
	u.Path, u.RawPath, u.RawQuery, u.Fragment = wire.WellKnownPath, "", "", ""
	probe, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	probe.Header.Set(wire.HeaderRequest, wire.EncodeBytes(raw))
	resp, err := c.roundTrip(probe)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrServerNotAttested, err)
	}
	hdr := resp.Header.Get(wire.HeaderAttestation)
	drain(resp)
	if hdr == "" {
		return nil, fmt.Errorf("%w: the server sent no Attestation (status %d)", ErrServerNotAttested, resp.StatusCode)
	}
	answer, _, err := wire.DecodeBytes(hdr, wire.MaxAttestationHeader)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrServerNotAttested, err)
	}
	res, err := reqr.Verify(ctx, answer, "", nil, c.t.serverPolicy)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrServerNotAttested, err)
	}
	return res, nil
}
