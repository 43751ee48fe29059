package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/transports"
)

// mainTB lets the command use the helpers written for tests
// (postauth/postauthtest, and this package's setup code, which takes a
// testing.TB so that the Benchmark functions can share it). Only Helper,
// Fatal, Fatalf, Logf and Cleanup are implemented; the embedded nil TB
// makes any other method panic, which would be a bug in this package.
type mainTB struct {
	testing.TB
	mu       sync.Mutex // guards cleanups
	cleanups []func()
}

func (*mainTB) Helper()                           {}
func (*mainTB) Fatal(args ...any)                 { log.Fatal(args...) }
func (*mainTB) Fatalf(format string, args ...any) { log.Fatalf(format, args...) }
func (*mainTB) Logf(format string, args ...any)   { log.Printf(format, args...) }

func (t *mainTB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

// runCleanups runs the registered cleanups, last first.
func (t *mainTB) runCleanups() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// clock is real time plus an offset that scenario (c) advances, shared by
// the Guard, the client transports, the software EAT attester and verifier
// (middleware.WithClock, transports.WithClock, softeat options). TLS itself
// uses real time.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// Routes of the reattest server. All are POST with the same small body and
// the same trivial handler; only the attestation policy differs.
const (
	pathOpen     = "/open"       // (a) not marked high-impact
	pathConn     = "/conn"       // (b) connection mode, default MaxAge
	pathStale    = "/conn-stale" // (c) connection mode, MaxAge 1ns
	pathOp       = "/op"         // (d) operation mode
	pathOpPreArm = "/op-prearm"  // (e) operation mode, pre-armed
)

// staleStep is how far scenario (c) advances the shared clock before each
// request. With the route's MaxAge of 1ns and the EAT's whole-second iat,
// every request finds the cached verdict stale.
const staleStep = time.Second

// requestBody is the body of every request (an operation-mode digest
// covers it).
var requestBody = []byte(`{"amount":100,"currency":"EUR","to":"acct-0042"}`)

// env is one process-wide setup: a PKI, the client's TLS identity and
// software EAT attester, the verifier, a reattest server (Guard with
// ConfigureServer, HTTP/2 over TLS 1.3 on loopback) and an RA-TLS server.
type env struct {
	tb         testing.TB
	clock      *clock
	pki        *postauthtest.PKI
	serverCert tls.Certificate
	clientCert tls.Certificate
	id         *postauth.Identity
	attKey     *ecdsa.PrivateKey // the software EAT attestation key
	attester   *postauthtest.CountingAttester
	responder  *postauth.Responder
	verifier   *softeat.Verifier
	guard      *middleware.Guard
	srv        *httptest.Server
	ratls      *ratlsServer
	h3         *h3Server
	raw        *rawSignatures

	requests atomic.Int64 // HTTP requests that reached a server (before the Guard)
	conns    atomic.Int64 // TLS connections accepted by either server
	curve    atomic.Value // tls.CurveID of the reattest server's connections
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	e := newBaseEnv(tb)
	var err error
	e.guard, err = middleware.New(e.verifier,
		middleware.WithClock(e.clock.now),
		middleware.WithRoute("POST "+pathConn, middleware.Route{}),
		middleware.WithRoute("POST "+pathStale, middleware.Route{MaxAge: time.Nanosecond}),
		middleware.WithRoute("POST "+pathOp, middleware.Route{Mode: middleware.ModeOperation}),
		middleware.WithRoute("POST "+pathOpPreArm, middleware.Route{Mode: middleware.ModeOperation, PreArm: true}),
	)
	if err != nil {
		tb.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(e.recordCurve(e.countRequests(e.guard.Middleware(e.mux()))))
	e.srv.EnableHTTP2 = true
	e.srv.TLS = e.pki.ServerConfig(e.serverCert)
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.srv.Config.ConnState = e.countConns
	middleware.ConfigureServer(e.srv.Config) // keeps countConns
	e.srv.StartTLS()
	tb.Cleanup(e.srv.Close)
	e.ratls = newRATLSServer(e)
	e.h3 = newH3Server(e)
	e.raw = e.newRawSignatures()
	return e
}

// newBaseEnv returns the parts of an env that start nothing: the PKI, the
// client's TLS identity, the software EAT attester and its responder, the
// verifier (the in-process measurements need no more).
func newBaseEnv(tb testing.TB) *env {
	tb.Helper()
	e := &env{tb: tb, clock: &clock{}, pki: postauthtest.New(tb)}
	e.serverCert = e.pki.Issue(tb, "localhost", postauthtest.ServerAuth())
	e.clientCert = e.pki.Issue(tb, "agent")
	var err error
	if e.id, err = postauth.IdentityFromTLS(&e.clientCert); err != nil {
		tb.Fatal(err)
	}
	e.attKey = postauthtest.NewKey(tb)
	att, err := softeat.NewAttester(e.attKey, softeat.WithClock(e.clock.now))
	if err != nil {
		tb.Fatal(err)
	}
	e.attester = &postauthtest.CountingAttester{Inner: att}
	if e.responder, err = postauth.NewResponder(e.id, e.attester); err != nil {
		tb.Fatal(err)
	}
	e.verifier, err = softeat.NewVerifier([]crypto.PublicKey{e.attKey.Public()}, softeat.WithClock(e.clock.now), softeat.WithMaxAge(time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// mux is the application: every route of the report, all with okHandler.
func (e *env) mux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, p := range []string{pathOpen, pathConn, pathStale, pathOp, pathOpPreArm} {
		mux.HandleFunc("POST "+p, okHandler)
	}
	return mux
}

// okHandler is the application: it reads the body and answers "ok".
func okHandler(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Write([]byte("ok"))
}

func (e *env) countRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		h.ServeHTTP(w, r)
	})
}

// recordCurve remembers the key exchange of the reattest server's
// connections, for the report.
func (e *env) recordCurve(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			e.curve.Store(r.TLS.CurveID)
		}
		h.ServeHTTP(w, r)
	})
}

func (e *env) countConns(_ net.Conn, s http.ConnState) {
	if s == http.StateNew {
		e.conns.Add(1)
	}
}

// counters is a snapshot of what the servers and the attester saw.
type counters struct{ requests, conns, attestations int64 }

func (e *env) snapshot() counters {
	return counters{e.requests.Load(), e.conns.Load(), e.attester.Count()}
}

func (c counters) add(o counters) counters {
	return counters{c.requests + o.requests, c.conns + o.conns, c.attestations + o.attestations}
}

func (c counters) sub(o counters) counters {
	return counters{c.requests - o.requests, c.conns - o.conns, c.attestations - o.attestations}
}

// h2Only is an http.Protocols with HTTP/2 only.
func h2Only() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP2(true)
	return p
}

// newClient returns a client with the attesting transport, pinned to one
// HTTP/2 connection (WithMaxConnsPerHost(1)), mutual TLS with the client
// certificate, answering challenges with the software EAT attester.
func (e *env) newClient() *http.Client {
	base := &http.Transport{TLSClientConfig: e.pki.ClientConfig(&e.clientCert), Protocols: h2Only()}
	tr, err := transports.NewTransport(base, e.clientOptions()...)
	if err != nil {
		e.tb.Fatal(err)
	}
	e.tb.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr}
}

// clientOptions are the attesting clients' options, HTTP/2 and HTTP/3
// alike: the software EAT attester, loopback only, the run's clock, one
// connection.
func (e *env) clientOptions() []transports.Option {
	return []transports.Option{
		transports.WithAttester(e.id, e.attester),
		transports.WithAttestTo("127.0.0.1"),
		transports.WithClock(e.clock.now),
		transports.WithMaxConnsPerHost(1),
	}
}

// post sends one request with requestBody and checks for 200 "ok".
func post(ctx context.Context, do func(*http.Request) (*http.Response, error), url string) error {
	return postWith(ctx, do, url, nil)
}

// postWith is post with extra request headers.
func postWith(ctx context.Context, do func(*http.Request) (*http.Response, error), url string, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(requestBody))
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %d", url, resp.StatusCode)
	}
	return err
}
