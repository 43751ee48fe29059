package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// inproc drives the Guard's handler in-process: requests carry the
// server-side tls.ConnectionState of one of a small pool of real loopback
// TLS 1.3 connections (mutual TLS), and attestations are made with
// postauth.Respond on the matching client side.
type inproc struct {
	e       *env
	guard   *middleware.Guard
	handler http.Handler // Guard.Middleware(okHandler-like trivial handler)
	pool    []poolConn
}

type poolConn struct {
	server *tls.ConnectionState
	client *postauth.Channel
}

const protectedPath = "/pay"

// memPoolSize is the number of real TLS connections the memory
// measurement's simulated connections are spread over.
const memPoolSize = 8

// trivialHandler is the application in the in-process benchmarks.
var trivialHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Write(okBody)
})

var okBody = []byte("ok")

// newInproc returns an inproc whose Guard has the connection-mode route
// POST /pay and opts, on poolSize real TLS connections.
func (e *env) newInproc(poolSize int, opts ...middleware.Option) *inproc {
	e.tb.Helper()
	g, err := middleware.New(e.verifier, append([]middleware.Option{middleware.WithRoute("POST "+protectedPath, middleware.Route{})}, opts...)...)
	if err != nil {
		e.tb.Fatal(err)
	}
	p := &inproc{e: e, guard: g, handler: g.Middleware(trivialHandler)}
	for range poolSize {
		c, s := postauthtest.Pair(e.tb, e.pki.ClientConfig(&e.clientCert), e.pki.ServerConfig(e.serverCert))
		ss, cs := s.ConnectionState(), c.ConnectionState()
		ch, err := postauth.NewChannel(&cs)
		if err != nil {
			e.tb.Fatal(err)
		}
		p.pool = append(p.pool, poolConn{server: &ss, client: ch})
	}
	return p
}

// request returns a POST request for path on connection pc with ctx.
func request(ctx context.Context, pc poolConn, path string) *http.Request {
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "https://localhost"+path, nil)
	r.TLS = pc.server
	return r
}

// attest runs the connection-mode exchange for one simulated connection
// whose context is ctx: a request without attestation gets 401 and a
// challenge, the client answers it on pc's client Channel, and the retry is
// verified, which caches the verdict in the state that ctx carries.
func (p *inproc) attest(ctx context.Context, pc poolConn) error {
	w := httptest.NewRecorder()
	p.handler.ServeHTTP(w, request(ctx, pc, protectedPath))
	if w.Code != http.StatusUnauthorized {
		return fmt.Errorf("first request: status %d, want 401", w.Code)
	}
	raw, _, err := httpbind.DecodeBytes(w.Header().Get(middleware.HeaderAttestationRequest), httpbind.MaxRequestHeader)
	if err != nil {
		return err
	}
	req, err := postauth.ParseRequest(raw)
	if err != nil {
		return err
	}
	out, err := p.e.responder.Respond(ctx, pc.client, postauth.RoleClient, req)
	if err != nil {
		return err
	}
	r := request(ctx, pc, protectedPath)
	r.Header.Set(middleware.HeaderAttestation, httpbind.EncodeBytes(out))
	w = httptest.NewRecorder()
	p.handler.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return fmt.Errorf("attested request: status %d, want 200", w.Code)
	}
	return nil
}

// discardWriter is a reusable ResponseWriter that keeps nothing, so that
// the in-process benchmarks measure the handlers, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// serveHTTPCase is one BenchmarkServeHTTP sub-benchmark: a handler and the
// request it is given on every iteration.
type serveHTTPCase struct {
	name    string
	handler http.Handler
	req     *http.Request
}

// serveHTTPCases returns the bare handler, the Guard on an unprotected
// route, and the Guard on a protected route with a cached verdict, all
// with the same kind of request on one real TLS connection's state.
func (e *env) serveHTTPCases() []serveHTTPCase {
	e.tb.Helper()
	p := e.newInproc(1)
	ctx := middleware.ContextWithConnState(context.Background())
	if err := p.attest(ctx, p.pool[0]); err != nil {
		e.tb.Fatal(err)
	}
	hit := request(ctx, p.pool[0], protectedPath)
	w := httptest.NewRecorder()
	p.handler.ServeHTTP(w, hit)
	if w.Code != http.StatusOK || w.Header().Get(middleware.HeaderAttestationRequest) != "" {
		e.tb.Fatalf("cache-hit request: status %d, want 200 without a challenge", w.Code)
	}
	return []serveHTTPCase{
		{"bare", trivialHandler, hit},
		{"unprotected", p.handler, request(ctx, p.pool[0], "/open")},
		{"cache-hit", p.handler, hit},
	}
}

// runServeHTTP is the body of a BenchmarkServeHTTP sub-benchmark.
func runServeHTTP(b interface {
	ReportAllocs()
	Loop() bool
}, c serveHTTPCase) {
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		c.handler.ServeHTTP(w, c.req)
	}
}

// memResult is the heap cost of n simulated connections: the live heap
// that releasing their n contexts frees, per connection.
type memResult struct {
	n int
	// bareBytes: n bare per-connection contexts (context.WithValue, the
	// shape ContextWithConnState has).
	bareBytes float64
	// freshBytes: n ContextWithConnState contexts that served no request,
	// minus bareBytes.
	freshBytes float64
	// attestedBytes: n ContextWithConnState contexts each holding a
	// verified, cached connection-mode verdict, minus bareBytes.
	attestedBytes float64
	build         time.Duration // time to attest the n connections
}

type bareKey struct{}

// settle waits (at most 10 s, at least 1 s) until the live heap has stopped shrinking:
// after connections close, their memory is released over several GC
// cycles (finalizers, timers), for about a second here.
func settle() {
	prev, stable := heapAlloc(), 0
	for i := 0; i < 50 && stable < 5; i++ {
		time.Sleep(200 * time.Millisecond)
		h := heapAlloc()
		if d := int64(h) - int64(prev); d > -1024 && d < 1024 {
			stable++
		} else {
			stable = 0
		}
		prev = h
	}
}

// heapAlloc returns the live heap after garbage collection. It collects
// until the figure stops moving: objects with finalizers or cleanups (closed
// network connections, for one) are freed only in a later cycle, after
// their finalizer has run.
func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	prev := m.HeapAlloc
	for range 20 {
		time.Sleep(5 * time.Millisecond) // let finalizers run
		runtime.GC()
		runtime.ReadMemStats(&m)
		if d := int64(m.HeapAlloc) - int64(prev); d > -1024 && d < 1024 {
			break
		}
		prev = m.HeapAlloc
	}
	return m.HeapAlloc
}

// measureMemory measures the server-side attestation state of n cached
// connections (see the report for what is counted). workers attest in
// parallel.
func (p *inproc) measureMemory(n, workers int) memResult {
	tb := p.e.tb
	tb.Helper()
	res := memResult{n: n}
	// growth fills n contexts and returns the heap their release frees,
	// per context: exactly what is reachable only from them.
	growth := func(fill func(ctxs []context.Context)) float64 {
		ctxs := make([]context.Context, n)
		fill(ctxs)
		h1 := heapAlloc()
		clear(ctxs)
		h2 := heapAlloc()
		runtime.KeepAlive(ctxs)
		return float64(int64(h1)-int64(h2)) / float64(n)
	}
	res.bareBytes = growth(func(ctxs []context.Context) {
		for i := range ctxs {
			ctxs[i] = context.WithValue(context.Background(), bareKey{}, (*int)(nil))
		}
	})
	res.freshBytes = growth(func(ctxs []context.Context) {
		for i := range ctxs {
			ctxs[i] = middleware.ContextWithConnState(context.Background())
		}
	}) - res.bareBytes
	var failed atomic.Pointer[error]
	res.attestedBytes = growth(func(ctxs []context.Context) {
		start := time.Now()
		defer func() { res.build = time.Since(start) }()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= len(ctxs) {
						return
					}
					ctx := middleware.ContextWithConnState(context.Background())
					if err := p.attest(ctx, p.pool[i%len(p.pool)]); err != nil {
						failed.CompareAndSwap(nil, &err)
						return
					}
					ctxs[i] = ctx
				}
			})
		}
		wg.Wait()
	}) - res.bareBytes
	if err := failed.Load(); err != nil {
		tb.Fatalf("memory run (n=%d): %v", n, *err)
	}
	return res
}
