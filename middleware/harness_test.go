package middleware_test

import (
	"context"
	"crypto"
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

	"github.com/reattest/reattest/internal/wire"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/transports"
)

// protos lists the HTTP versions every behaviour is tested with.
var protos = []struct {
	name string
	h2   bool
}{{"http1", false}, {"http2", true}}

// clock is a settable clock shared by server and client.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a real TLS 1.3 server with the middleware and a client with
// the attesting transport, on loopback.
type harness struct {
	t          *testing.T
	h2         bool
	pki        *postauthtest.PKI
	clientCert tls.Certificate
	serverCert tls.Certificate
	srv        *httptest.Server
	guard      *middleware.Guard
	conns      *middleware.Conns
	attKey     crypto.Signer
	attester   *postauthtest.CountingAttester
	verifier   postauth.Verifier
	clock      *clock
	calls      sync.Map // path -> *atomic.Int64
	events     chan transports.Event
}

type harnessOpts struct {
	h2           bool
	guardOpts    []middleware.Option
	verifier     postauth.Verifier // overrides the software EAT verifier
	noConnHooks  bool              // do not install ConfigureServer
	attesterOpts *softeat.AttesterOptions
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	return newHarnessWith(t, o, nil)
}

// newHarnessWith is newHarness with an extra Guard option computed from the
// harness (its certificates) before the Guard is built.
func newHarnessWith(t *testing.T, o harnessOpts, extra func(*harness) middleware.Option) *harness {
	t.Helper()
	h := &harness{t: t, h2: o.h2, pki: postauthtest.New(t), clock: &clock{t: time.Now()}, events: make(chan transports.Event, 1024)}
	h.serverCert = h.pki.Issue(t, "localhost", true, nil)
	h.clientCert = h.pki.Issue(t, "agent", false, nil)
	h.attKey = postauthtest.NewKey(t)
	ao := o.attesterOpts
	if ao == nil {
		ao = &softeat.AttesterOptions{}
	}
	ao.Time = h.clock.now
	att, err := softeat.NewAttester(h.attKey, ao)
	if err != nil {
		t.Fatal(err)
	}
	h.attester = &postauthtest.CountingAttester{Inner: att}
	h.verifier = o.verifier
	if h.verifier == nil {
		v, err := softeat.NewVerifier([]crypto.PublicKey{h.attKey.Public()}, &softeat.VerifierOptions{Time: h.clock.now, MaxAge: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		h.verifier = v
	}
	opts := append([]middleware.Option{middleware.WithClock(h.clock.now)}, o.guardOpts...)
	if extra != nil {
		if opt := extra(h); opt != nil {
			opts = append(opts, opt)
		}
	}
	h.guard, err = middleware.New(h.verifier, opts...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range []string{"POST /pay", "PUT /config", "GET /search", "POST /echo"} {
		path := p[strings.IndexByte(p, ' ')+1:]
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			h.count(path)
			body, _ := io.ReadAll(r.Body)
			sum := sha256.Sum256(body)
			res, ok := postauth.FromContext(r.Context())
			fmt.Fprintf(w, "ok %s body=%s attested=%v", path, hex.EncodeToString(sum[:8]), ok)
			if ok {
				fmt.Fprintf(w, " format=%s", res.Format())
			}
		})
	}
	h.srv = httptest.NewUnstartedServer(h.guard.Middleware(mux))
	h.srv.EnableHTTP2 = o.h2
	h.srv.TLS = h.pki.ServerConfig(h.serverCert)
	if !o.noConnHooks {
		h.conns = middleware.ConfigureServer(h.srv.Config)
	}
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) count(path string) {
	v, _ := h.calls.LoadOrStore(path, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (h *harness) calledTimes(path string) int64 {
	v, ok := h.calls.Load(path)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

// baseTransport is an http.Transport for this server's PKI, with the
// client certificate (mutual TLS), speaking the harness's HTTP version.
func (h *harness) baseTransport() *http.Transport {
	p := new(http.Protocols)
	if h.h2 {
		p.SetHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Transport{TLSClientConfig: h.pki.ClientConfig(&h.clientCert), Protocols: p}
}

// client returns an http.Client with the attesting transport.
func (h *harness) client(opts ...transports.Option) (*http.Client, *transports.Transport) {
	h.t.Helper()
	id, err := postauth.IdentityFromTLS(&h.clientCert)
	if err != nil {
		h.t.Fatal(err)
	}
	all := append([]transports.Option{
		transports.WithAttester(id, h.attester, nil),
		transports.WithAttestTo("127.0.0.1"),
		transports.WithClock(h.clock.now),
		transports.WithObserver(func(e transports.Event) {
			select {
			case h.events <- e:
			default:
			}
		}),
	}, opts...)
	tr, err := transports.New(h.baseTransport(), all...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr}, tr
}

func (h *harness) url(path string) string { return h.srv.URL + path }

// do sends a request and returns the status and body.
func do(t *testing.T, c *http.Client, method, url, body string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// rawConn is a low-level client on one connection: it sends exactly what
// a test (or an attacker) asks, and knows the connection's exporter.
type rawConn struct {
	t  *testing.T
	h  *harness
	cc *http.ClientConn
	ch *postauth.Channel
	id *postauth.Identity
}

func (h *harness) rawConn() *rawConn {
	h.t.Helper()
	var state *tls.ConnectionState
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
		if err == nil {
			state = &cs
		}
	}})
	cc, err := h.baseTransport().NewClientConn(ctx, "https", h.srv.Listener.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { cc.Close() })
	ch, err := postauth.NewChannel(state)
	if err != nil {
		h.t.Fatal(err)
	}
	id, _ := postauth.IdentityFromTLS(&h.clientCert)
	return &rawConn{t: h.t, h: h, cc: cc, ch: ch, id: id}
}

func (c *rawConn) send(method, path, body string, hdr map[string]string) *http.Response {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.h.url(path), rd)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.cc.RoundTrip(req)
	if err != nil {
		c.t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp
}

// answer attests to the Attestation-Request of resp on this connection.
func (c *rawConn) answer(resp *http.Response) string {
	c.t.Helper()
	enc := resp.Header.Get(middleware.HeaderAttestationRequest)
	if enc == "" {
		c.t.Fatalf("no Attestation-Request (status %d)", resp.StatusCode)
	}
	raw, _, err := wire.DecodeBytes(enc, wire.MaxRequestHeader)
	if err != nil {
		c.t.Fatal(err)
	}
	req, err := postauth.ParseRequest(raw)
	if err != nil {
		c.t.Fatal(err)
	}
	out, err := postauth.Respond(context.Background(), c.ch, postauth.RoleClient, req, c.id, c.h.attester, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return wire.EncodeBytes(out)
}
