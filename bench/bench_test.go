package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"runtime"
	"testing"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
)

// reportPer adds what one operation cost in protocol terms.
func reportPer(b *testing.B, c counters) {
	n := float64(b.N)
	b.ReportMetric(float64(c.requests)/n, "http-req/op")
	b.ReportMetric(float64(c.conns)/n, "handshakes/op")
	b.ReportMetric(float64(c.attestations)/n, "attest/op")
}

// BenchmarkLoopback is one request at a time over loopback HTTP/2 with
// real TLS 1.3, for each scenario of the report: (a) is the baseline, (f)
// the RA-TLS reconnect baseline. Allocations are process-wide per request
// (client and server).
func BenchmarkLoopback(b *testing.B) {
	e := newEnv(b)
	for _, sc := range e.scenarios() {
		b.Run(sc.key, func(b *testing.B) {
			op := sc.setup()
			if err := warm(op); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			c0 := e.snapshot()
			b.ReportAllocs()
			for b.Loop() {
				if err := op(ctx); err != nil {
					b.Fatal(err)
				}
			}
			reportPer(b, e.snapshot().sub(c0))
		})
	}
}

// BenchmarkLoopbackParallel is the throughput run: 4×GOMAXPROCS
// concurrent clients, sharing one connection except in (c) (one connection
// each; see the report) and (f) (a new connection per request).
func BenchmarkLoopbackParallel(b *testing.B) {
	e := newEnv(b)
	const parallelism = 4
	workers := parallelism * runtime.GOMAXPROCS(0)
	for _, sc := range e.scenarios() {
		// The clients are made once: b.Run calls the function once per
		// round of b.N.
		ops := make(chan func(context.Context) error, workers)
		var shared func(context.Context) error
		for range workers {
			op := shared
			if op == nil {
				op = sc.setup()
				if err := warm(op); err != nil {
					b.Fatal(err)
				}
				if !sc.connPerWorker {
					shared = op
				}
			}
			ops <- op
		}
		b.Run(sc.key, func(b *testing.B) {
			c0 := e.snapshot()
			b.SetParallelism(parallelism)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				op := <-ops
				defer func() { ops <- op }()
				ctx := context.Background()
				for pb.Next() {
					if err := op(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			reportPer(b, e.snapshot().sub(c0))
		})
	}
}

// BenchmarkServeHTTP compares the bare handler with Guard.Middleware on an
// unprotected path and on a protected route with a cached verdict
// (cache-hit), all given the same request.
func BenchmarkServeHTTP(b *testing.B) {
	e := newEnv(b)
	for _, c := range e.serveHTTPCases() {
		b.Run(c.name, func(b *testing.B) { runServeHTTP(b, c) })
	}
}

// retained keeps the attested states of BenchmarkAttestedConnState alive,
// so that -memprofile's inuse_space shows where per-connection bytes are
// allocated.
var retained []context.Context

// BenchmarkAttestedConnState attests b.N simulated connections in-process
// (challenge, Respond, verified request) and keeps their states. It reports
// the heap they retain per connection (retained-B/conn, including the
// 48-byte context node). Profile it with
//
//	go test ./bench -run '^$' -bench AttestedConnState -benchtime 20000x -memprofile mem.out
//	go tool pprof -sample_index=inuse_space -top mem.out
func BenchmarkAttestedConnState(b *testing.B) {
	e := newEnv(b)
	p := e.newInproc(memPoolSize)
	retained = make([]context.Context, b.N)
	h0 := heapAlloc()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ctx := middleware.ContextWithConnState(context.Background())
		if err := p.attest(ctx, p.pool[i%len(p.pool)]); err != nil {
			b.Fatal(err)
		}
		retained[i] = ctx
	}
	b.StopTimer()
	h1 := heapAlloc()
	b.ReportMetric(float64(int64(h1)-int64(h0))/float64(b.N), "retained-B/conn")
}

// TestScenarios runs every scenario briefly and checks that it does what
// the report says (round trips, handshakes and attestations per request),
// then renders a report from tiny runs. It keeps `go test ./...` quick.
func TestScenarios(t *testing.T) {
	e := newEnv(t)
	want := map[string]perRequest{
		keyOpen:   {1, 0, 0},
		keyHit:    {1, 0, 0},
		keyStale:  {2, 0, 1},
		keyOp:     {2, 0, 1},
		keyOpPre:  {1, 0, 1},
		keyRATLS:  {1, 1, 1},
		keyRATLSX: {1, 1, 1},
	}
	r := &results{opts: options{n: 10, workers: 2, dur: 60 * time.Millisecond, serveCount: 1}, command: "test", started: time.Now()}
	r.scenarios = e.scenarios()
	r.latency = e.measureLatency(r.scenarios, r.opts.n)
	r.tput = e.measureThroughput(r.scenarios, r.opts.workers, r.opts.dur)
	for _, sc := range r.scenarios {
		if l := r.latency[sc.key]; l.per != want[sc.key] || len(r.latency) != len(want) {
			t.Errorf("%s: per request %+v, want %+v", sc.key, l.per, want[sc.key])
		}
		if tp := r.tput[sc.key]; tp.errors != 0 || tp.done == 0 {
			t.Errorf("%s: %d done, %d errors in the concurrent run, first: %v", sc.key, tp.done, tp.errors, tp.firstErr)
		}
	}
	for _, c := range e.serveHTTPCases() {
		w := &discardWriter{h: make(map[string][]string)}
		c.handler.ServeHTTP(w, c.req)
		if len(w.h) != 0 {
			t.Errorf("%s: response headers %v, want none", c.name, w.h)
		}
		r.serve = append(r.serve, serveResult{name: c.name, ns: 1, allocs: 1, nsRuns: []float64{1}, runs: 1})
	}
	p := e.newInproc(2)
	r.mem = append(r.mem, p.measureMemory(20, 2))
	writeReport(io.Discard, r)
}

// TestRATLSRefusesUnboundEvidence checks that the RA-TLS baseline is
// sound: Evidence made for another key, or none, is refused.
func TestRATLSRefusesUnboundEvidence(t *testing.T) {
	e := newEnv(t)
	good, err := ratlsCertificate(context.Background(), e.attester, e.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	goodLeaf, err := x509.ParseCertificate(good.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	check := func(cert *x509.Certificate) error {
		return e.ratls.verifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}})
	}
	if err := check(goodLeaf); err != nil {
		t.Fatalf("good certificate refused: %v", err)
	}
	// Another key with the good certificate's Evidence extension.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var exts []pkix.Extension
	for _, ext := range goodLeaf.Extensions {
		if ext.Id.Equal(oidEvidence) {
			exts = append(exts, ext)
		}
	}
	for name, extra := range map[string][]pkix.Extension{"copied evidence": exts, "no evidence": nil} {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mallory"},
			NotBefore: goodLeaf.NotBefore, NotAfter: goodLeaf.NotAfter, ExtraExtensions: extra}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		err = check(leaf)
		switch {
		case err == nil:
			t.Errorf("%s: accepted", name)
		case name == "copied evidence" && !errors.Is(err, postauth.ErrKeyHashMismatch) && !errors.Is(err, postauth.ErrBinderMismatch):
			t.Errorf("%s: %v, want a binder or key hash mismatch", name, err)
		}
	}
}
