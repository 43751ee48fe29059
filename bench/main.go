// Command bench measures reattest against its baselines over loopback
// HTTP/2 and HTTP/3 with real TLS 1.3 and software EAT Evidence, and
// writes bench/REPORT.md. Every figure is reported as a ratio against a
// baseline measured in the same run: the limit (a plain request plus the
// signature operations a re-attestation contains), the RA-TLS reconnect,
// the bare handler, a plain connection.
//
// Run it from the repository root:
//
//	go run ./bench            # full run, writes bench/REPORT.md (about 4 minutes on 2 idle cores)
//	go run ./bench -quick     # a short run (about 1 minute)
//	go run ./bench -only amplification
//	go run ./bench -only redis   # the Scale-out (Redis) section (REATTEST_REDIS, or a redis-server it starts)
//	go run ./bench -only connmem -conns 10000 -memprofile /tmp/prof
//
// The same scenarios are Go benchmarks in this package:
//
//	go test ./bench -run '^$' -bench . -benchmem
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

type options struct {
	out        string
	n          int
	workers    int
	dur        time.Duration
	memSizes   []int
	serveCount int
	quick      bool
	ampN       int
	attacker   bool
	only       string
	conns      []int
	memProfile string
	// experiments on the end-to-end memory runs
	clientEncTable, serverEncTable int
}

func parseFlags() options {
	var o options
	var mem, conns string
	flag.StringVar(&o.out, "out", "bench/REPORT.md", "report file (relative to the working directory)")
	flag.IntVar(&o.n, "n", 2000, "sequential requests measured per loopback scenario (latency, allocations), and revocations timed in the Redis section")
	flag.IntVar(&o.workers, "c", 8, "concurrent clients in the throughput runs")
	flag.DurationVar(&o.dur, "dur", 3*time.Second, "duration of each throughput run, and of the Redis section's paired cache-hit rounds (its re-attestation rounds: 3×dur)")
	flag.StringVar(&mem, "mem", "1000,10000,100000", "simulated connection counts for the memory measurement (the 100k point takes about 15 s on 2 vCPU)")
	flag.IntVar(&o.serveCount, "count", 5, "runs of each in-process ServeHTTP benchmark (the median is reported)")
	flag.StringVar(&conns, "conns", "1000,10000", "held TLS + HTTP/2 connections for the end-to-end memory measurement (each count is run for every kind of connection)")
	flag.StringVar(&o.memProfile, "memprofile", "", "write the server's heap profiles of the end-to-end memory runs to this directory (sets runtime.MemProfileRate = 1: slow)")
	flag.IntVar(&o.clientEncTable, "h2-client-table", 0, "experiment: the memory runs' clients limit their HPACK encoder table to this many bytes (0: the default: Go's 4096, transports.ClientHeaderTableSize for attesting clients)")
	flag.IntVar(&o.serverEncTable, "h2-server-table", 0, "experiment: the memory runs' server limits its HPACK encoder table to this many bytes (0: middleware.ConfigureServer's default, middleware.ServerHeaderTableSize)")
	flag.BoolVar(&o.quick, "quick", false, "short run: -n 200 -dur 500ms -mem 1000,10000 -conns 500 -count 1 -amp 300 unless set explicitly")
	flag.IntVar(&o.ampN, "amp", 2000, "attempts per CPU amplification scenario")
	flag.BoolVar(&o.attacker, "attacker", false, "internal: run as the amplification attacker (a child process)")
	flag.StringVar(&o.only, "only", "", "run only this part and print it: amplification, connmem, redis")
	flag.Parse()
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["n"] {
			o.n = 200
		}
		if !set["dur"] {
			o.dur = 500 * time.Millisecond
		}
		if !set["mem"] {
			mem = "1000,10000"
		}
		if !set["count"] {
			o.serveCount = 1
		}
		if !set["amp"] {
			o.ampN = 300
		}
		if !set["conns"] {
			conns = "500"
		}
	}
	o.memSizes = counts("mem", mem)
	o.conns = counts("conns", conns)
	if o.only != "" && o.only != "amplification" && o.only != "connmem" && o.only != "redis" {
		log.Fatalf("bad -only value %q", o.only)
	}
	if o.n < 10 || o.workers < 1 || o.serveCount < 1 {
		log.Fatal("need -n >= 10, -c >= 1, -count >= 1")
	}
	return o
}

// counts parses a comma-separated list of positive counts.
func counts(name, list string) []int {
	var out []int
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			log.Fatalf("bad -%s value %q", name, s)
		}
		out = append(out, v)
	}
	return out
}

// serveResult is the median of the runs of one ServeHTTP case.
type serveResult struct {
	name              string
	ns, bytes, allocs float64
	runs              int
	nsRuns            []float64
}

type results struct {
	opts      options
	command   string
	started   time.Time
	wall      time.Duration
	scenarios []scenario
	latency   map[string]latencyResult
	tput      map[string]throughputResult
	serve     []serveResult
	mem       []memResult
	curve     string
	amp       []ampResult
	cores     int    // GOMAXPROCS
	load      string // /proc/loadavg at the start
	core      []serveResult
	raw       struct{ cv, eat int } // message sizes of (s)
	headers   []headerSize
	connmem   []connMemResult
	redis     redisResult
	phases    []string // "name duration" of each phase, in order
}

// Names of the protocol-core benchmarks in the report.
const (
	caseExchange      = "BenchmarkExchange"
	caseRawSignatures = "BenchmarkRawSignatures"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	if os.Getenv(childEnv) == "connclient" {
		runConnClient()
		return
	}
	o := parseFlags()
	if o.attacker {
		runAttacker()
		return
	}
	if o.memProfile != "" {
		runtime.MemProfileRate = 1
	}
	if o.only == "amplification" {
		amp, err := measureAmplification(o.ampN)
		if err != nil {
			log.Fatal(err)
		}
		writeAmplification(mdWriter{os.Stdout}, amp)
		return
	}
	tb := &mainTB{}
	defer tb.runCleanups()

	r := &results{opts: o, started: time.Now(), cores: runtime.GOMAXPROCS(0), load: loadAverage()}
	r.command = strings.Join(append([]string{"go run ./bench"}, os.Args[1:]...), " ")
	if o.only == "redis" {
		r.redis = runRedis(o)
		writeRedis(mdWriter{os.Stdout}, r, true)
		return
	}
	e := newEnv(tb)
	r.raw.cv, r.raw.eat = len(e.raw.cvInput), len(e.raw.eatInput)
	if o.only == "connmem" {
		r.headers = headerSizes(e)
		tb.runCleanups()
		r.connmem = measureConnMemory(e, o)
		writeConnMemory(mdWriter{os.Stdout}, r)
		return
	}
	r.scenarios = e.scenarios()

	phase := r.phaseTimer()
	log.Printf("latency    %d scenarios, n=%d each, interleaved in %d rounds", len(r.scenarios), o.n, latencyRounds)
	r.latency = e.measureLatency(r.scenarios, o.n)
	phase("latency")
	log.Printf("throughput %d scenarios, c=%d for %v each, interleaved in %d rounds", len(r.scenarios), o.workers, o.dur, throughputRounds)
	r.tput = e.measureThroughput(r.scenarios, o.workers, o.dur)
	phase("throughput")
	if c, ok := e.curve.Load().(interface{ String() string }); ok {
		r.curve = c.String()
	}

	// In-process benchmarks: the ServeHTTP cases and the protocol core take
	// turns, run by run.
	cases := e.serveHTTPCases()
	core := newCoreBench(tb)
	benches := []struct {
		name string
		f    func(*testing.B)
	}{{caseExchange, core.exchange}, {caseRawSignatures, core.raw}}
	runs := make([][]testing.BenchmarkResult, len(cases)+len(benches))
	for i := range o.serveCount {
		for j, c := range cases {
			log.Printf("ServeHTTP  %-20s run %d/%d", c.name, i+1, o.serveCount)
			runs[j] = append(runs[j], testing.Benchmark(func(b *testing.B) { runServeHTTP(b, c) }))
		}
		for j, c := range benches {
			log.Printf("core       %-20s run %d/%d", c.name, i+1, o.serveCount)
			runs[len(cases)+j] = append(runs[len(cases)+j], testing.Benchmark(c.f))
		}
	}
	for j, c := range cases {
		r.serve = append(r.serve, medianServe(c.name, runs[j]))
	}
	for j, c := range benches {
		r.core = append(r.core, medianServe(c.name, runs[len(cases)+j]))
	}
	phase("in-process")

	log.Printf("amplification %d scenarios, %d attempts each (attacker in a child process)", len(ampScenarios), o.ampN)
	amp, err := measureAmplification(o.ampN)
	if err != nil {
		log.Fatal(err)
	}
	r.amp = amp
	phase("amplification")
	r.redis = runRedis(o)
	phase("redis")
	r.headers = headerSizes(e)

	// The memory phases measure heap growth: first close the loopback
	// servers and clients and let their goroutines finish, so that no
	// unrelated memory is freed (or allocated) while they measure.
	tb.runCleanups()
	settle()
	p := e.newInproc(memPoolSize)
	// Warm the Guard, the pool's channels and the library caches so that
	// one-time allocations are not charged to the first measurement.
	p.measureMemory(200, runtime.GOMAXPROCS(0))
	for _, n := range o.memSizes {
		log.Printf("memory     n=%d", n)
		m := p.measureMemory(n, runtime.GOMAXPROCS(0))
		log.Printf("memory     n=%d: %.0f B/conn attested (built in %v)", n, m.attestedBytes, m.build.Round(time.Millisecond))
		r.mem = append(r.mem, m)
	}
	phase("memory")
	tb.runCleanups()
	r.connmem = measureConnMemory(e, o)
	phase("end-to-end memory")
	r.wall = time.Since(r.started)

	var buf bytes.Buffer
	writeReport(&buf, r)
	if err := os.WriteFile(o.out, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s in %v", o.out, r.wall.Round(time.Second))
}

// runRedis measures the Scale-out (Redis) section, logging what it does.
func runRedis(o options) redisResult {
	log.Printf("redis      cache hits for %v, re-attestations for %v, %d revocations (paired rounds on a real redis-server)", o.dur, 3*o.dur, o.n)
	res := measureRedis(o.n, o.dur)
	if res.skipped != "" {
		log.Printf("redis      not measured: %s", res.skipped)
	}
	return res
}

// phaseTimer returns a function that records the time since its previous
// call (or since now) under a name, for the report and the log.
func (r *results) phaseTimer() func(name string) {
	last := time.Now()
	return func(name string) {
		d := time.Since(last).Round(time.Second)
		last = time.Now()
		r.phases = append(r.phases, fmt.Sprintf("%s %v", name, d))
		log.Printf("%-10s done in %v", name, d)
	}
}

// headerSizes sizes the Attestation header of every Evidence format this
// program can make.
func headerSizes(e *env) []headerSize {
	formats, done := e.evidenceFormats()
	defer done()
	return attestationHeaderSizes(e.tb, e.pki, e.clientCert, e.serverCert, formats)
}

// measureConnMemory runs the end-to-end memory measurement (the loopback
// servers must be closed).
func measureConnMemory(e *env, o options) []connMemResult {
	if len(o.conns) == 0 {
		return nil
	}
	if o.memProfile != "" {
		if err := os.MkdirAll(o.memProfile, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("connmem    %v held connections of each kind (clients in a child process)", o.conns)
	m := e.newConnMem(o.memProfile)
	m.clientEncTable, m.serverEncTable = o.clientEncTable, o.serverEncTable
	res, err := m.measureAll(o.conns, connWarmup)
	if err != nil {
		log.Fatal(err)
	}
	return res
}

// connWarmup is the unrecorded first run of each kind of connection.
const connWarmup = 50

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func medianServe(name string, runs []testing.BenchmarkResult) serveResult {
	sr := serveResult{name: name, runs: len(runs)}
	var ns, bytes, allocs []float64
	for _, br := range runs {
		ns = append(ns, float64(br.T.Nanoseconds())/float64(br.N))
		bytes = append(bytes, float64(br.AllocedBytesPerOp()))
		allocs = append(allocs, float64(br.AllocsPerOp()))
	}
	sr.nsRuns = slices.Clone(ns)
	sr.ns, sr.bytes, sr.allocs = median(ns), median(bytes), median(allocs)
	return sr
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
