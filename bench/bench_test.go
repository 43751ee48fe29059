package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"math/big"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
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

// BenchmarkCore is the protocol core without HTTP, as in postauth:
// BenchmarkExchange and its floor BenchmarkRawSignatures.
func BenchmarkCore(b *testing.B) {
	c := newCoreBench(b)
	b.Run("Exchange", c.exchange)
	b.Run("RawSignatures", c.raw)
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
		keyOpen:    {1, 0, 0},
		keyHit:     {1, 0, 0},
		keyStale:   {2, 0, 1},
		keyOp:      {2, 0, 1},
		keyOpPre:   {1, 0, 1},
		keyRATLS:   {1, 1, 1},
		keyRATLSX:  {1, 1, 1},
		keyH3Open:  {1, 0, 0},
		keyH3Hit:   {1, 0, 0},
		keyH3Op:    {2, 0, 1},
		keyH3OpPre: {1, 0, 1},
		keyRaw:     {0, 0, 0},
	}
	r := &results{opts: options{n: 10, workers: 2, dur: 60 * time.Millisecond, serveCount: 1}, command: "test", started: time.Now(), cores: runtime.GOMAXPROCS(0)}
	r.raw.cv, r.raw.eat = len(e.raw.cvInput), len(e.raw.eatInput)
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
	core := newCoreBench(t)
	// A few iterations only: testing.Benchmark follows -test.benchtime.
	bt := flag.Lookup("test.benchtime")
	old := bt.Value.String()
	bt.Value.Set("3x")
	for name, f := range map[string]func(*testing.B){caseExchange: core.exchange, caseRawSignatures: core.raw} {
		br := testing.Benchmark(f)
		if br.N == 0 {
			t.Errorf("%s did not run", name)
		}
		r.core = append(r.core, medianServe(name, []testing.BenchmarkResult{br}))
	}
	bt.Value.Set(old)
	r.headers = headerSizes(e)
	for _, h := range r.headers {
		if h.err == nil && (h.value == 0 || h.authenticator == 0 || h.evidence == 0 || h.certs != 1) {
			t.Errorf("%s: header size %+v", h.format, h)
		}
	}
	if h := r.headers[0]; h.err != nil {
		t.Errorf("software EAT header not measured: %v", h.err)
	}
	p := e.newInproc(2)
	r.mem = append(r.mem, p.measureMemory(20, 2))
	var out strings.Builder
	writeReport(&out, r)
	for _, want := range []string{"## 1. The limit", "(e3) HTTP/3", "## 6. End-to-end memory", "software EAT (postauth/softeat) | 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestMain lets the test binary act as the child process of the
// end-to-end memory measurement (TestConnMemory), as the bench program
// does.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "connclient" {
		runConnClient()
		return
	}
	os.Exit(m.Run())
}

// TestConnMemory holds a few connections of each kind in a child process
// and checks what the server saw: the kinds differ as the report says.
func TestConnMemory(t *testing.T) {
	e := newEnv(t)
	m := e.newConnMem("")
	m.settle = func() {}
	const n = 8
	res, err := m.measureAll([]int{n}, 0)
	if err != nil {
		t.Fatal(err)
	}
	att, hdr, plain := findConnMem(res, n, connAttested), findConnMem(res, n, connHeader), findConnMem(res, n, connPlain)
	if att.requests != 2 || hdr.requests != 1 || plain.requests != 1 {
		t.Errorf("requests per connection: attested %v, header %v, plain %v; want 2, 1, 1", att.requests, hdr.requests, plain.requests)
	}
	if att.headerLen < 500 || hdr.headerLen != att.headerLen || plain.headerLen != 0 {
		t.Errorf("header sizes: attested %d, same-size %d, plain %d", att.headerLen, hdr.headerLen, plain.headerLen)
	}
	if att.goroutines < 1 {
		t.Errorf("attested: %v server goroutines per held connection, want at least 1", att.goroutines)
	}
}

// TestEATSigStructureLen rebuilds the Sig_structure of real software EAT
// Evidence and checks its signature over it: (s) signs messages of the
// right size.
func TestEATSigStructureLen(t *testing.T) {
	key := postauthtest.NewSoftwareKey(t)
	att := key.Attester(t)
	n, err := eatSigStructureLen(att)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 32)
	ev, err := att.Attest(context.Background(), postauth.Challenge{Binder: b, KeyHash: b, Hash: crypto.SHA256, Role: postauth.RoleClient})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		_           struct{} `cbor:",toarray"`
		Protected   []byte
		Unprotected cbor.RawMessage
		Payload     []byte
		Signature   []byte
	}
	if err := cbor.Unmarshal(ev.Value, &tok); err != nil {
		t.Fatal(err)
	}
	sig, err := cbor.Marshal([]any{"Signature1", tok.Protected, []byte{}, tok.Payload})
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != n {
		t.Errorf("eatSigStructureLen = %d, the Sig_structure has %d bytes", n, len(sig))
	}
	d := sha256.Sum256(sig)
	r, s := new(big.Int).SetBytes(tok.Signature[:32]), new(big.Int).SetBytes(tok.Signature[32:])
	if !ecdsa.Verify(&key.Key.PublicKey, d[:], r, s) {
		t.Error("the rebuilt Sig_structure is not what the Evidence signs")
	}
	if cvInputLen != 119 {
		t.Errorf("cvInputLen = %d, want 119 (64 + 22 + 1 + 32)", cvInputLen)
	}
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
