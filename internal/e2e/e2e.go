// Package e2e is the end-to-end test harness of the module: a real TLS 1.3
// server on loopback with the reattest middleware in front of a few
// handlers, and clients with the attesting transport, software EAT
// Evidence, one shared fake clock. Every package's tests can use it
// (middleware, transports, adapters, examples); nothing in it is a mock.
package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/transports"
)

// Routes are the handlers the harness serves. Each answers
// "ok <path> body=<sha256 prefix> attested=<bool>[ format=<format>]".
var Routes = []string{"POST /pay", "PUT /config", "GET /search", "POST /echo"}

// Harness is a real TLS 1.3 server with the middleware and clients with the
// attesting transport, on loopback.
type Harness struct {
	T          testing.TB
	H2         bool
	PKI        *postauthtest.PKI
	ClientCert tls.Certificate
	ServerCert tls.Certificate
	Server     *httptest.Server
	Guard      *middleware.Guard
	Conns      *middleware.Conns // nil without connection hooks
	AttKey     *postauthtest.SoftwareKey
	Attester   *postauthtest.CountingAttester
	Verifier   postauth.Verifier
	Clock      *postauthtest.Clock
	// Activities receives what the clients' transports report.
	Activities chan transports.Activity

	calls sync.Map // path -> *atomic.Int64
}

// Option configures a Harness.
type Option interface{ apply(*config) }

type config struct {
	h2          bool
	guardOpts   []middleware.Option
	guardFunc   func(*Harness) middleware.Option
	verifier    postauth.Verifier
	noConnHooks bool
	attOpts     []softeat.AttesterOption
	wrap        func(http.Handler) http.Handler
	server      func(*Harness) http.Handler
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// HTTP2 makes the server and the clients speak HTTP/2 (default HTTP/1.1).
func HTTP2(on bool) Option { return optionFunc(func(c *config) { c.h2 = on }) }

// WithGuard adds options of the Guard.
func WithGuard(opts ...middleware.Option) Option {
	return optionFunc(func(c *config) { c.guardOpts = append(c.guardOpts, opts...) })
}

// WithGuardFunc adds a Guard option computed from the harness (its
// certificates, keys) before the Guard is built.
func WithGuardFunc(f func(*Harness) middleware.Option) Option {
	return optionFunc(func(c *config) { c.guardFunc = f })
}

// WithVerifier replaces the software EAT verifier of the Guard.
func WithVerifier(v postauth.Verifier) Option { return optionFunc(func(c *config) { c.verifier = v }) }

// WithoutConnHooks serves without middleware.ConfigureServer (the fallback
// cache keeps per-connection state).
func WithoutConnHooks() Option { return optionFunc(func(c *config) { c.noConnHooks = true }) }

// WithAttester adds options of the clients' software EAT attester.
func WithAttester(opts ...softeat.AttesterOption) Option {
	return optionFunc(func(c *config) { c.attOpts = append(c.attOpts, opts...) })
}

// WithHandler wraps the harness's routes (for example with a router of
// your own) before the Guard's middleware.
func WithHandler(wrap func(http.Handler) http.Handler) Option {
	return optionFunc(func(c *config) { c.wrap = wrap })
}

// WithServer replaces the server's whole handler (the harness's routes and
// the Guard's middleware) by the one f builds from the harness, for router
// adapters (gin) that place the Guard themselves.
func WithServer(f func(*Harness) http.Handler) Option {
	return optionFunc(func(c *config) { c.server = f })
}

// New starts a harness; it stops when the test ends.
func New(tb testing.TB, opts ...Option) *Harness {
	tb.Helper()
	var cfg config
	for _, o := range opts {
		o.apply(&cfg)
	}
	h := &Harness{T: tb, H2: cfg.h2, PKI: postauthtest.New(tb), Clock: postauthtest.NewClock(time.Time{}),
		Activities: make(chan transports.Activity, 1024)}
	h.ServerCert = h.PKI.Issue(tb, "localhost", postauthtest.ServerAuth())
	h.ClientCert = h.PKI.Issue(tb, "agent")
	h.AttKey = postauthtest.NewSoftwareKey(tb)
	h.Attester = &postauthtest.CountingAttester{Inner: h.AttKey.Attester(tb, append([]softeat.AttesterOption{softeat.WithClock(h.Clock.Now)}, cfg.attOpts...)...)}
	h.Verifier = cfg.verifier
	if h.Verifier == nil {
		h.Verifier = h.AttKey.Verifier(tb, softeat.WithClock(h.Clock.Now), softeat.WithMaxAge(time.Hour))
	}
	gopts := append([]middleware.Option{middleware.WithClock(h.Clock.Now)}, cfg.guardOpts...)
	if cfg.guardFunc != nil {
		if o := cfg.guardFunc(h); o != nil {
			gopts = append(gopts, o)
		}
	}
	var err error
	if h.Guard, err = middleware.New(h.Verifier, gopts...); err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range Routes {
		path := p[strings.IndexByte(p, ' ')+1:]
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			h.count(path)
			body, _ := io.ReadAll(r.Body)
			res, ok := postauth.FromContext(r.Context())
			fmt.Fprintf(w, "ok %s body=%s attested=%v", path, BodyDigest(string(body)), ok)
			if ok {
				fmt.Fprintf(w, " format=%s", res.Format())
			}
		})
	}
	var handler http.Handler = mux
	if cfg.wrap != nil {
		handler = cfg.wrap(handler)
	}
	handler = h.Guard.Middleware(handler)
	if cfg.server != nil {
		handler = cfg.server(h)
	}
	h.Server = httptest.NewUnstartedServer(handler)
	h.Server.EnableHTTP2 = cfg.h2
	h.Server.TLS = h.PKI.ServerConfig(h.ServerCert)
	if !cfg.noConnHooks {
		h.Conns = middleware.ConfigureServer(h.Server.Config)
	}
	h.Server.StartTLS()
	tb.Cleanup(h.Server.Close)
	return h
}

// BodyDigest is how the harness's handlers report the body they received.
func BodyDigest(body string) string {
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:8])
}

func (h *Harness) count(path string) {
	v, _ := h.calls.LoadOrStore(path, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Calls is how many times the handler of path ran.
func (h *Harness) Calls(path string) int64 {
	v, ok := h.calls.Load(path)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

// BaseTransport is an http.Transport for this server's PKI, with the
// client certificate (mutual TLS), speaking the harness's HTTP version.
func (h *Harness) BaseTransport() *http.Transport {
	p := new(http.Protocols)
	if h.H2 {
		p.SetHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Transport{TLSClientConfig: h.PKI.ClientConfig(&h.ClientCert), Protocols: p}
}

// Identity is the client's authenticator identity: its TLS certificate.
func (h *Harness) Identity() *postauth.Identity {
	id, err := postauth.IdentityFromTLS(&h.ClientCert)
	if err != nil {
		h.T.Fatal(err)
	}
	return id
}

// Client returns an http.Client with the attesting transport (the
// harness's attester, Evidence only to 127.0.0.1, the harness clock, its
// activities sent to Activities), with opts added.
func (h *Harness) Client(opts ...transports.Option) (*http.Client, *transports.Transport) {
	h.T.Helper()
	all := append([]transports.Option{
		transports.WithAttester(h.Identity(), h.Attester),
		transports.WithAttestTo("127.0.0.1"),
		transports.WithClock(h.Clock.Now),
		transports.WithObserver(func(a transports.Activity) {
			select {
			case h.Activities <- a:
			default:
			}
		}),
	}, opts...)
	tr, err := transports.NewTransport(h.BaseTransport(), all...)
	if err != nil {
		h.T.Fatal(err)
	}
	h.T.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr}, tr
}

// URL is the server's URL for path.
func (h *Harness) URL(path string) string { return h.Server.URL + path }

// FindActivity returns the first reported activity of kind (with reason,
// if not empty), draining what was reported so far, or nil.
func (h *Harness) FindActivity(kind transports.ActivityKind, reason postauth.Reason) *transports.Activity {
	for {
		select {
		case a := <-h.Activities:
			if a.Kind == kind && (reason == "" || a.Reason == reason) {
				return &a
			}
		default:
			return nil
		}
	}
}

// Do sends a request and returns the status, body and headers.
func Do(tb testing.TB, c *http.Client, method, url, body string) (int, string, http.Header) {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// RawConn is a low-level client on one connection: it sends exactly what
// a test (or an attacker) asks, and knows the connection's exporter.
type RawConn struct {
	T         testing.TB
	H         *Harness
	CC        *http.ClientConn
	Channel   *postauth.Channel
	Responder *postauth.Responder
}

// Raw opens a RawConn to the server.
func (h *Harness) Raw() *RawConn {
	h.T.Helper()
	var state *tls.ConnectionState
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
		if err == nil {
			state = &cs
		}
	}})
	cc, err := h.BaseTransport().NewClientConn(ctx, "https", h.Server.Listener.Addr().String())
	if err != nil {
		h.T.Fatal(err)
	}
	h.T.Cleanup(func() { cc.Close() })
	ch, err := postauth.NewChannel(state)
	if err != nil {
		h.T.Fatal(err)
	}
	r, err := postauth.NewResponder(h.Identity(), h.Attester)
	if err != nil {
		h.T.Fatal(err)
	}
	return &RawConn{T: h.T, H: h, CC: cc, Channel: ch, Responder: r}
}

// Send sends one request with the given extra headers and returns the
// response (body read and closed).
func (c *RawConn) Send(method, path, body string, hdr map[string]string) *http.Response {
	c.T.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.H.URL(path), rd)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.CC.RoundTrip(req)
	if err != nil {
		c.T.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp
}

// Answer attests to the Attestation-Request of resp on this connection and
// returns the Attestation header value.
func (c *RawConn) Answer(resp *http.Response) string {
	c.T.Helper()
	enc := resp.Header.Get(middleware.HeaderAttestationRequest)
	if enc == "" {
		c.T.Fatalf("no Attestation-Request (status %d)", resp.StatusCode)
	}
	raw, _, err := httpbind.DecodeBytes(enc, httpbind.MaxRequestHeader)
	if err != nil {
		c.T.Fatal(err)
	}
	req, err := postauth.ParseRequest(raw)
	if err != nil {
		c.T.Fatal(err)
	}
	out, err := c.Responder.Respond(context.Background(), c.Channel, postauth.RoleClient, req)
	if err != nil {
		c.T.Fatal(err)
	}
	return httpbind.EncodeBytes(out)
}

// StandardRoutes are the Guard routes most end-to-end tests use: POST /pay
// in operation mode, PUT /config in connection mode with a one-minute
// max-age, POST /echo in connection mode.
func StandardRoutes() []middleware.Option {
	return []middleware.Option{
		middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation}),
		middleware.WithRoute("PUT /config", middleware.Route{MaxAge: time.Minute}),
		middleware.WithRoute("POST /echo", middleware.Route{}),
	}
}

// EachProto runs f over HTTP/1.1 and HTTP/2, as subtests "http1" and
// "http2": every behaviour is tested with both.
func EachProto(t *testing.T, f func(t *testing.T, h2 bool)) {
	for _, p := range []struct {
		name string
		h2   bool
	}{{"http1", false}, {"http2", true}} {
		t.Run(p.name, func(t *testing.T) { f(t, p.h2) })
	}
}
