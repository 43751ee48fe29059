package redisstate_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/redisstate"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// Benchmarks of the Redis adapter, each with its baseline in the same run:
//
//	REATTEST_REDIS=127.0.0.1:PORT go test ./middleware/redisstate -run '^$' -bench . -benchmem
//
// Without REATTEST_REDIS the cache-hit and re-attestation benchmarks use
// an in-process miniredis (their hot paths do not touch Redis, or only
// through the audit writer's goroutine) and the propagation benchmark is
// skipped: it measures a real redis-server over loopback.

// benchRedis returns the benchmark's Redis address: REATTEST_REDIS, or a
// miniredis (reported in the log).
func benchRedis(b *testing.B) string {
	if addr := os.Getenv("REATTEST_REDIS"); addr != "" {
		return addr
	}
	b.Log("REATTEST_REDIS not set: using an in-process miniredis")
	return miniredis.RunT(b).Addr()
}

// inproc drives a Guard's handler in-process on the state of one real
// loopback TLS 1.3 connection (as bench/ does).
type inproc struct {
	handler   http.Handler
	server    *tls.ConnectionState
	client    *postauth.Channel
	responder *postauth.Responder
}

func newInproc(b *testing.B, opts ...middleware.Option) *inproc {
	b.Helper()
	pki := postauthtest.New(b)
	serverCert, clientCert := pki.Issue(b, "localhost", postauthtest.ServerAuth()), pki.Issue(b, "agent")
	att, v := postauthtest.Software(b)
	g, err := middleware.New(v, append([]middleware.Option{middleware.WithRoute("POST /pay", middleware.Route{MaxAge: time.Hour})}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	waitFor(b, "Guard in sync", g.Synced)
	c, s := postauthtest.Pair(b, pki.ClientConfig(&clientCert), pki.ServerConfig(serverCert))
	ss, cs := s.ConnectionState(), c.ConnectionState()
	ch, err := postauth.NewChannel(&cs)
	if err != nil {
		b.Fatal(err)
	}
	id, err := postauth.IdentityFromTLS(&clientCert)
	if err != nil {
		b.Fatal(err)
	}
	r, err := postauth.NewResponder(id, att)
	if err != nil {
		b.Fatal(err)
	}
	return &inproc{handler: g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })),
		server: &ss, client: ch, responder: r}
}

func (p *inproc) request(ctx context.Context) *http.Request {
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "https://localhost/pay", nil)
	r.TLS = p.server
	return r
}

// attest runs one connection-mode attestation on the connection state ctx
// carries: 401 with a challenge, the answer, the verified request.
func (p *inproc) attest(ctx context.Context) error {
	w := httptest.NewRecorder()
	p.handler.ServeHTTP(w, p.request(ctx))
	if w.Code != http.StatusUnauthorized {
		return fmt.Errorf("first request: %d", w.Code)
	}
	raw, _, err := httpbind.DecodeBytes(w.Header().Get(middleware.HeaderAttestationRequest), httpbind.MaxRequestHeader)
	if err != nil {
		return err
	}
	req, err := postauth.ParseRequest(raw)
	if err != nil {
		return err
	}
	out, err := p.responder.Respond(ctx, p.client, postauth.RoleClient, req)
	if err != nil {
		return err
	}
	r := p.request(ctx)
	r.Header.Set(middleware.HeaderAttestation, httpbind.EncodeBytes(out))
	w = httptest.NewRecorder()
	p.handler.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return fmt.Errorf("attested request: %d", w.Code)
	}
	return nil
}

type discard struct{ h http.Header }

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) Write(b []byte) (int, error) { return len(b), nil }
func (w *discard) WriteHeader(int)             {}

// BenchmarkCacheHit: a request served on a cached connection-mode verdict,
// without a coordinator (the baseline) and with a redisstate.Store (audit
// on, the default; and auditing every cache hit). The hot path reads only
// local state: target at most 1.05x the baseline.
func BenchmarkCacheHit(b *testing.B) {
	addr := benchRedis(b)
	for _, c := range []struct {
		name string
		opts func() []middleware.Option
	}{
		{"without", func() []middleware.Option { return nil }},
		{"redisstate", func() []middleware.Option {
			return []middleware.Option{middleware.WithCoordinator(newStore(b, addr, namespace(b)))}
		}},
		{"redisstate-audit-cache-hits", func() []middleware.Option {
			return []middleware.Option{middleware.WithCoordinator(newStore(b, addr, namespace(b), redisstate.WithAuditCacheHits(true)))}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := newInproc(b, c.opts()...)
			ctx := middleware.ContextWithConnState(context.Background())
			if err := p.attest(ctx); err != nil {
				b.Fatal(err)
			}
			req, w := p.request(ctx), &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				p.handler.ServeHTTP(w, req)
			}
		})
	}
}

// BenchmarkReattest: connection-mode attestations (challenge, answer,
// verification) on fresh connection states, with the audit stream on and
// off (target: on >= 90% of the throughput of off), and without a
// coordinator for reference.
func BenchmarkReattest(b *testing.B) {
	addr := benchRedis(b)
	for _, c := range []struct {
		name string
		opts func() []middleware.Option
	}{
		{"no-coordinator", func() []middleware.Option { return nil }},
		{"audit-off", func() []middleware.Option {
			return []middleware.Option{middleware.WithCoordinator(newStore(b, addr, namespace(b), redisstate.WithAudit(false)))}
		}},
		{"audit-on", func() []middleware.Option {
			return []middleware.Option{middleware.WithCoordinator(newStore(b, addr, namespace(b)))}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := newInproc(b, c.opts()...)
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if err := p.attest(middleware.ContextWithConnState(context.Background())); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "attestations/s")
		})
	}
}

// BenchmarkRevocationPropagation: Guard.Revoke on replica A until replica
// B's Store has delivered the revocation to its Guard, over a real
// redis-server on loopback (each replica with its own client, as separate
// processes would). Reports p50 and p99 (target p99 <= 10 ms).
func BenchmarkRevocationPropagation(b *testing.B) {
	addr := os.Getenv("REATTEST_REDIS")
	if addr == "" {
		b.Skip("REATTEST_REDIS not set: propagation is measured on a real redis-server")
	}
	ns := namespace(b)
	stA, stB := newStore(b, addr, ns, redisstate.WithAudit(false)), newStore(b, addr, ns, redisstate.WithAudit(false))
	_, v := postauthtest.Software(b)
	route := middleware.WithRoute("POST /pay", middleware.Route{})
	gA, err := middleware.New(v, route, middleware.WithCoordinator(stA))
	if err != nil {
		b.Fatal(err)
	}
	gB, err := middleware.New(v, route, middleware.WithCoordinator(stB))
	if err != nil {
		b.Fatal(err)
	}
	defer gA.Close()
	defer gB.Close()
	waitFor(b, "replicas in sync", func() bool { return gA.Synced() && gB.Synced() })
	arrived := make(chan middleware.Identity, 1024)
	stB.Watch(&signal{c: arrived})
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1024)
	i := 0
	for b.Loop() {
		i++
		id := middleware.Identity{Kind: middleware.IdentityMachine, Value: fmt.Sprintf("%016x", i)}
		t0 := time.Now()
		if err := gA.Revoke(ctx, id, time.Now().Add(time.Minute), "bench"); err != nil {
			b.Fatal(err)
		}
		for got := range arrived {
			if got == id {
				break
			}
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// signal is a Watcher that reports revocations.
type signal struct{ c chan middleware.Identity }

func (s *signal) Apply(e middleware.Event) {
	if e.Kind == middleware.EventRevoke && strings.HasPrefix(e.Reason, "bench") {
		select {
		case s.c <- e.Identity:
		default:
		}
	}
}
func (s *signal) Synced(bool) {}

// paired runs a and c alternately (each b.Loop iteration is one round of
// n operations of each, in alternating order), and returns the median of
// the per-round time ratios c/a and the median ns/op of each. Short
// alternating rounds keep a busy machine's drift out of the comparison.
func paired(b *testing.B, n int, a, c func()) (ratio, nsA, nsC float64) {
	var ratios, as, bs []float64
	timed := func(f func()) float64 {
		t0 := time.Now()
		for range n {
			f()
		}
		return float64(time.Since(t0)) / float64(n)
	}
	odd := false
	for b.Loop() {
		var da, db float64
		if odd { // alternate which goes first
			db, da = timed(c), timed(a)
		} else {
			da, db = timed(a), timed(c)
		}
		odd = !odd
		ratios, as, bs = append(ratios, db/da), append(as, da), append(bs, db)
	}
	med := func(x []float64) float64 { slices.Sort(x); return x[len(x)/2] }
	return med(ratios), med(as), med(bs)
}

// BenchmarkCacheHitPaired alternates rounds of cache hits without a
// coordinator and with a redisstate.Store, and reports the median ratio
// (with/without; target <= 1.05).
func BenchmarkCacheHitPaired(b *testing.B) {
	addr := benchRedis(b)
	run := func(p *inproc) func() {
		ctx := middleware.ContextWithConnState(context.Background())
		if err := p.attest(ctx); err != nil {
			b.Fatal(err)
		}
		req, w := p.request(ctx), &discard{h: http.Header{}}
		return func() { p.handler.ServeHTTP(w, req) }
	}
	without := run(newInproc(b))
	with := run(newInproc(b, middleware.WithCoordinator(newStore(b, addr, namespace(b)))))
	ratio, a, c := paired(b, 200, without, with)
	b.ReportMetric(ratio, "with/without")
	b.ReportMetric(a, "without-ns/op")
	b.ReportMetric(c, "with-ns/op")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkReattestPaired alternates rounds of re-attestations with the
// audit stream off and on, and reports the median throughput ratio
// (on/off; target >= 0.90).
func BenchmarkReattestPaired(b *testing.B) {
	addr := benchRedis(b)
	run := func(p *inproc) func() {
		return func() {
			if err := p.attest(middleware.ContextWithConnState(context.Background())); err != nil {
				b.Fatal(err)
			}
		}
	}
	off := run(newInproc(b, middleware.WithCoordinator(newStore(b, addr, namespace(b), redisstate.WithAudit(false)))))
	on := run(newInproc(b, middleware.WithCoordinator(newStore(b, addr, namespace(b)))))
	ratio, a, c := paired(b, 20, off, on)
	b.ReportMetric(1/ratio, "on/off-throughput")
	b.ReportMetric(a/1000, "off-us/op")
	b.ReportMetric(c/1000, "on-us/op")
	b.ReportMetric(0, "ns/op")
}
