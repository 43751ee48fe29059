package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// scenario is one kind of request over loopback.
type scenario struct {
	key  string // sub-benchmark name
	name string // report label
	// setup returns the function that makes one request on a new client
	// (its own connection).
	setup func() func(context.Context) error
	// connPerWorker: in the throughput run every worker gets its own client
	// (connection) instead of sharing one; see scenario (c).
	connPerWorker bool
	// reattests: the scenario attests on every request (compared with the
	// RA-TLS reconnect baseline and the limit).
	reattests bool
	// h3: the scenario runs over HTTP/3 (its limit is (a3) + (s)).
	h3 bool
	// reference: not a request but the raw signature operations (s), a
	// component of the limit.
	reference bool
}

const (
	keyOpen    = "a-unprotected"
	keyHit     = "b-conn-cache-hit"
	keyStale   = "c-conn-reattest"
	keyOp      = "d-op-challenge"
	keyOpPre   = "e-op-prearmed"
	keyRATLS   = "f-ratls-reconnect"
	keyRATLSX  = "f2-ratls-x25519"
	keyH3Open  = "h3-a-unprotected"
	keyH3Hit   = "h3-b-conn-cache-hit"
	keyH3Op    = "h3-d-op-challenge"
	keyH3OpPre = "h3-e-op-prearmed"
	keyRaw     = "s-raw-signatures"
	warmupReqs = 20
)

func (e *env) scenarios() []scenario {
	via := func(newClient func() *http.Client, base, path string, before func()) func() func(context.Context) error {
		return func() func(context.Context) error {
			c := newClient()
			url := base + path
			return func(ctx context.Context) error {
				if before != nil {
					before()
				}
				return post(ctx, c.Do, url)
			}
		}
	}
	viaTransport := func(path string, before func()) func() func(context.Context) error {
		return via(e.newClient, e.srv.URL, path, before)
	}
	viaH3 := func(path string) func() func(context.Context) error {
		return via(e.newH3Client, e.h3.url, path, nil)
	}
	return []scenario{
		{key: keyOpen, name: "(a) unprotected route", setup: viaTransport(pathOpen, nil)},
		{key: keyHit, name: "(b) connection mode, cache hit", setup: viaTransport(pathConn, nil)},
		{key: keyStale, name: "(c) connection mode, re-attest every request", reattests: true, connPerWorker: true,
			setup: viaTransport(pathStale, func() { e.clock.advance(staleStep) })},
		{key: keyOp, name: "(d) operation mode, 401 then retry", reattests: true, setup: viaTransport(pathOp, nil)},
		{key: keyOpPre, name: "(e) operation mode, pre-armed", reattests: true, setup: viaTransport(pathOpPreArm, nil)},
		{key: keyRATLS, name: "(f) RA-TLS: new mTLS connection per attestation", reattests: true,
			setup: func() func(context.Context) error { return e.newRATLSClient(nil).do }},
		{key: keyRATLSX, name: "(f2) RA-TLS as (f), X25519-only key exchange", reattests: true,
			setup: func() func(context.Context) error { return e.newRATLSClient([]tls.CurveID{tls.X25519}).do }},
		{key: keyH3Open, name: "(a3) HTTP/3, unprotected route", h3: true, setup: viaH3(pathOpen)},
		{key: keyH3Hit, name: "(b3) HTTP/3, connection mode, cache hit", h3: true, setup: viaH3(pathConn)},
		{key: keyH3Op, name: "(d3) HTTP/3, operation mode, 401 then retry", h3: true, reattests: true, setup: viaH3(pathOp)},
		{key: keyH3OpPre, name: "(e3) HTTP/3, operation mode, pre-armed", h3: true, reattests: true, setup: viaH3(pathOpPreArm)},
		{key: keyRaw, name: "(s) raw signature operations: 2 ECDSA P-256 signatures + 2 verifications", reference: true,
			setup: func() func(context.Context) error { return e.raw.do }},
	}
}

// warm makes a few requests so that connections exist, routes are learned
// and pre-armed requests are held.
func warm(op func(context.Context) error) error {
	for range warmupReqs {
		if err := op(context.Background()); err != nil {
			return err
		}
	}
	return nil
}

// latencyResult is a sequential run (one request at a time, one client).
type latencyResult struct {
	n            int
	median, p99  time.Duration
	mean         time.Duration
	allocsPerReq float64 // process-wide (client + server) heap allocations
	bytesPerReq  float64
	per          perRequest
}

// perRequest says what one client request cost in protocol terms.
type perRequest struct{ httpRequests, handshakes, attestations float64 }

func perReq(c counters, n int) perRequest {
	f := float64(n)
	return perRequest{float64(c.requests) / f, float64(c.conns) / f, float64(c.attestations) / f}
}

// latencyRounds is how many slices the sequential runs are cut into: the
// scenarios take turns slice by slice, so that drift (heap growth, CPU
// frequency, background work) does not favour the one measured first.
const latencyRounds = 10

// measureLatency runs n sequential requests of each scenario, each on its
// own client, interleaved in latencyRounds rounds.
func (e *env) measureLatency(scs []scenario, n int) map[string]latencyResult {
	e.tb.Helper()
	type acc struct {
		op             func(context.Context) error
		lat            []time.Duration
		mallocs, bytes uint64
		c              counters
	}
	accs := make([]*acc, len(scs))
	for i, sc := range scs {
		a := &acc{op: sc.setup(), lat: make([]time.Duration, 0, n)}
		if err := warm(a.op); err != nil {
			e.tb.Fatalf("%s: warm-up: %v", sc.key, err)
		}
		accs[i] = a
	}
	ctx := context.Background()
	for round := range latencyRounds {
		chunk := n/latencyRounds + boolInt(round < n%latencyRounds)
		for i, sc := range scs {
			a := accs[i]
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			c0 := e.snapshot()
			for range chunk {
				t0 := time.Now()
				if err := a.op(ctx); err != nil {
					e.tb.Fatalf("%s: request %d: %v", sc.key, len(a.lat), err)
				}
				a.lat = append(a.lat, time.Since(t0))
			}
			a.c = a.c.add(e.snapshot().sub(c0))
			runtime.ReadMemStats(&m1)
			a.mallocs += m1.Mallocs - m0.Mallocs
			a.bytes += m1.TotalAlloc - m0.TotalAlloc
		}
	}
	out := make(map[string]latencyResult, len(scs))
	for i, sc := range scs {
		a := accs[i]
		var sum time.Duration
		for _, d := range a.lat {
			sum += d
		}
		slices.Sort(a.lat)
		out[sc.key] = latencyResult{
			n:            n,
			median:       a.lat[n/2],
			p99:          a.lat[max(0, (n*99+99)/100-1)],
			mean:         sum / time.Duration(n),
			allocsPerReq: float64(a.mallocs) / float64(n),
			bytesPerReq:  float64(a.bytes) / float64(n),
			per:          perReq(a.c, n),
		}
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// throughputResult is a run of workers concurrent clients for a duration.
type throughputResult struct {
	workers  int
	conns    int // client connections used (1 unless connPerWorker)
	done     int64
	errors   int64
	elapsed  time.Duration
	rps      float64
	per      perRequest
	firstErr error
	// cpu is the process's CPU time (user + system, rusage) during the
	// runs, client and server together; cpuPerReq divides it by the
	// completed requests.
	cpu       time.Duration
	cpuPerReq time.Duration
}

// throughputRounds: like the latency runs, the throughput runs take turns
// in rounds of dur/throughputRounds each.
const throughputRounds = 6

// measureThroughput runs workers concurrent clients of each scenario for
// dur in total, in interleaved rounds, and counts completed requests.
func (e *env) measureThroughput(scs []scenario, workers int, dur time.Duration) map[string]throughputResult {
	e.tb.Helper()
	opsOf := make([][]func(context.Context) error, len(scs))
	out := make(map[string]throughputResult, len(scs))
	for i, sc := range scs {
		ops := make([]func(context.Context) error, workers)
		conns := 1
		if sc.connPerWorker {
			conns = workers
			for j := range ops {
				ops[j] = sc.setup()
			}
		} else {
			op := sc.setup()
			for j := range ops {
				ops[j] = op
			}
		}
		for j := range conns {
			if err := warm(ops[j]); err != nil {
				e.tb.Fatalf("%s: warm-up: %v", sc.key, err)
			}
		}
		opsOf[i] = ops
		out[sc.key] = throughputResult{workers: workers, conns: conns}
	}
	c := make([]counters, len(scs))
	for range throughputRounds {
		for i, sc := range scs {
			t := out[sc.key]
			c0, cpu0 := e.snapshot(), cpuTime()
			done, errs, elapsed, firstErr := runConcurrently(opsOf[i], dur/throughputRounds)
			t.cpu += cpuTime() - cpu0
			c[i] = c[i].add(e.snapshot().sub(c0))
			t.done += done
			t.errors += errs
			t.elapsed += elapsed
			if t.firstErr == nil {
				t.firstErr = firstErr
			}
			out[sc.key] = t
		}
	}
	for i, sc := range scs {
		t := out[sc.key]
		t.rps = float64(t.done) / t.elapsed.Seconds()
		t.cpuPerReq = t.cpu / time.Duration(max(t.done, 1))
		t.per = perReq(c[i], int(max(t.done+t.errors, 1)))
		out[sc.key] = t
	}
	return out
}

// runConcurrently runs each op in its own goroutine, repeatedly, until
// dur has passed, and reports the completed and failed calls and the time
// until the last goroutine stopped.
func runConcurrently(ops []func(context.Context) error, dur time.Duration) (done, errs int64, elapsed time.Duration, firstErr error) {
	var nDone, nErrs atomic.Int64
	var errOnce sync.Once
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for _, op := range ops {
		wg.Go(func() {
			ctx := context.Background()
			for time.Now().Before(deadline) {
				if err := op(ctx); err != nil {
					nErrs.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				nDone.Add(1)
			}
		})
	}
	wg.Wait()
	return nDone.Load(), nErrs.Load(), time.Since(start), firstErr
}
