package transports

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// Transport is an http.RoundTripper that answers reattest challenges. It
// keeps its own connections, one [http.ClientConn] each, so that a
// challenge is always answered with the exporter of the connection that
// carries the retry, for HTTP/1.1 and HTTP/2 alike. Concurrent requests on
// one connection that are challenged in connection mode share one
// attestation; a request is retried at most once, with its body replayed
// from GetBody. A Transport is safe for concurrent use. Create it with
// [NewTransport]; a zero Transport refuses every request
// ([ErrNotConfigured]).
type Transport struct {
	cfg  config
	base *http.Transport
	// responder answers challenges; nil: no attester, challenges are
	// returned to the application.
	responder *postauth.Responder
	hint      atomic.Pointer[string] // the encoded posture head
	unsub     func()

	mu      sync.Mutex // guards hosts, learned, closed
	hosts   map[string]*hostConns
	learned map[routeKey]string
	closed  bool
}

// routeKey names a route as the client sees it.
type routeKey struct{ host, method, path string }

// maxLearned bounds the remembered high-impact routes.
const maxLearned = 1024

// ClientHeaderTableSize is the HTTP/2 HPACK encoder table size of a
// Transport with an attester whose base did not choose one (Go's default
// is 4096 bytes): smaller than an Attestation header, so that the header,
// single use, goes out as a literal instead of evicting useful entries and
// staying in the server's table.
const ClientHeaderTableSize = 1024

// Interface guards.
var (
	_ http.RoundTripper = (*Transport)(nil)
	_ io.Closer         = (*Transport)(nil)
)

// NewTransport returns a Transport over base. If base is nil, a new
// http.Transport that speaks HTTP/1.1 and HTTP/2 over TLS 1.3 only is used.
// base provides dialing, TLS configuration and proxies; the Transport
// keeps its own connection pool on top of it (base is cloned). It fails on
// invalid configuration: an attester without an identity or without
// [WithAttestTo], server attestation without a relying party. With an
// attester, an unset HTTP2.MaxEncoderHeaderTableSize of base becomes
// [ClientHeaderTableSize] in the clone.
func NewTransport(base *http.Transport, opts ...Option) (*Transport, error) {
	cfg := newConfig(opts)
	if (cfg.id == nil) != (cfg.att == nil) {
		return nil, errors.New("transports: an attester needs an identity and vice versa")
	}
	if cfg.att != nil && cfg.attestFor == nil {
		return nil, errors.New("transports: WithAttester needs WithAttestTo or WithAttestFor: Evidence reveals the agent's machine and posture, so say which servers may receive it")
	}
	if cfg.server != nil && (cfg.server.require == nil || cfg.server.rp == nil) {
		return nil, errors.New("transports: server attestation needs a predicate and a relying party")
	}
	t := &Transport{cfg: cfg, hosts: make(map[string]*hostConns), learned: make(map[routeKey]string)}
	if cfg.att != nil {
		r, err := postauth.NewResponder(cfg.id, cfg.att, cfg.protocol...)
		if err != nil {
			return nil, fmt.Errorf("transports: %w", err)
		}
		t.responder = r
	}
	if base != nil {
		t.base = base.Clone()
	} else {
		t.base = &http.Transport{
			TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS13},
			ForceAttemptHTTP2: true,
			IdleConnTimeout:   90 * time.Second,
		}
	}
	if t.responder != nil && (t.base.HTTP2 == nil || t.base.HTTP2.MaxEncoderHeaderTableSize == 0) {
		// An Attestation header (about 1.1 KB for software EAT, more for
		// hardware Evidence) is single use: indexed, it would evict the
		// useful entries of the HPACK table on both sides and stay in the
		// server's decoder table. A table smaller than the header makes
		// Go send it as a literal.
		h2 := http.HTTP2Config{}
		if t.base.HTTP2 != nil {
			h2 = *t.base.HTTP2
		}
		h2.MaxEncoderHeaderTableSize = ClientHeaderTableSize
		t.base.HTTP2 = &h2
	}
	if t.base.Protocols == nil {
		p := new(http.Protocols)
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		t.base.Protocols = p
	}
	if cfg.posture != nil {
		t.setHint(cfg.posture.Head())
		t.unsub = cfg.posture.Subscribe(t.setHint)
	}
	return t, nil
}

func (t *Transport) setHint(head []byte) {
	if head == nil {
		t.hint.Store(nil)
		return
	}
	s := httpbind.EncodeBytes(head)
	t.hint.Store(&s)
}

func (t *Transport) currentHint() string {
	if p := t.hint.Load(); p != nil {
		return *p
	}
	return ""
}

// mayAttest reports whether req may carry Evidence and the posture hint.
func (t *Transport) mayAttest(req *http.Request) bool {
	return t.responder != nil && t.cfg.attestFor(req)
}

// Close closes all connections and stops following posture changes.
func (t *Transport) Close() error {
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
		clear(h.conns[len(kept):])
		h.conns = kept
	}
}

// Conns is the number of connections the Transport holds.
func (t *Transport) Conns() int {
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
// the base transport untouched, except that a request marked critical for
// server attestation is never sent in clear text. Like every RoundTripper
// it returns responses whatever their status: use [ResponseError] to decode
// a final refusal.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.base == nil {
		closeBody(req)
		return nil, ErrNotConfigured
	}
	critical := t.cfg.server != nil && req.URL != nil && t.cfg.server.require(req) // mutation: critical requests
	if req.URL == nil || req.URL.Scheme != "https" {
		if critical {
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
	if critical {
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
