// Command bench measures reattest against its baselines over loopback
// HTTP/2 with real TLS 1.3 and software EAT Evidence, all in one process,
// and writes bench/REPORT.md. Every figure is reported as a ratio against a
// baseline measured in the same run.
//
// Run it from the repository root:
//
//	go run ./bench            # full run, writes bench/REPORT.md
//	go run ./bench -quick     # a short run (no 100k memory point)
//
// The same scenarios are Go benchmarks in this package:
//
//	go test ./bench -run '^$' -bench . -benchmem
package main

import (
	"bytes"
	"flag"
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
}

func parseFlags() options {
	var o options
	var mem string
	flag.StringVar(&o.out, "out", "bench/REPORT.md", "report file (relative to the working directory)")
	flag.IntVar(&o.n, "n", 2000, "sequential requests measured per loopback scenario (latency, allocations)")
	flag.IntVar(&o.workers, "c", 8, "concurrent clients in the throughput runs")
	flag.DurationVar(&o.dur, "dur", 3*time.Second, "duration of each throughput run")
	flag.StringVar(&mem, "mem", "1000,10000,100000", "simulated connection counts for the memory measurement (the 100k point takes about 15 s on 2 vCPU)")
	flag.IntVar(&o.serveCount, "count", 5, "runs of each in-process ServeHTTP benchmark (the median is reported)")
	flag.BoolVar(&o.quick, "quick", false, "short run: -n 200 -dur 500ms -mem 1000,10000 -count 1 -amp 300 unless set explicitly")
	flag.IntVar(&o.ampN, "amp", 2000, "attempts per CPU amplification scenario")
	flag.BoolVar(&o.attacker, "attacker", false, "internal: run as the amplification attacker (a child process)")
	flag.StringVar(&o.only, "only", "", "run only this part and print it: amplification")
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
	}
	for _, s := range strings.Split(mem, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			log.Fatalf("bad -mem value %q", s)
		}
		o.memSizes = append(o.memSizes, v)
	}
	if o.n < 10 || o.workers < 1 || o.serveCount < 1 {
		log.Fatal("need -n >= 10, -c >= 1, -count >= 1")
	}
	return o
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
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	o := parseFlags()
	if o.attacker {
		runAttacker()
		return
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

	r := &results{opts: o, started: time.Now()}
	r.command = strings.Join(append([]string{"go run ./bench"}, os.Args[1:]...), " ")
	e := newEnv(tb)
	r.scenarios = e.scenarios()

	log.Printf("latency    %d scenarios, n=%d each, interleaved in %d rounds", len(r.scenarios), o.n, latencyRounds)
	r.latency = e.measureLatency(r.scenarios, o.n)
	log.Printf("throughput %d scenarios, c=%d for %v each, interleaved in %d rounds", len(r.scenarios), o.workers, o.dur, throughputRounds)
	r.tput = e.measureThroughput(r.scenarios, o.workers, o.dur)
	if c, ok := e.curve.Load().(interface{ String() string }); ok {
		r.curve = c.String()
	}

	cases := e.serveHTTPCases()
	runs := make([][]testing.BenchmarkResult, len(cases))
	for i := range o.serveCount {
		for j, c := range cases {
			log.Printf("ServeHTTP  %-20s run %d/%d", c.name, i+1, o.serveCount)
			runs[j] = append(runs[j], testing.Benchmark(func(b *testing.B) { runServeHTTP(b, c) }))
		}
	}
	for j, c := range cases {
		r.serve = append(r.serve, medianServe(c.name, runs[j]))
	}

	log.Printf("amplification %d scenarios, %d attempts each (attacker in a child process)", len(ampScenarios), o.ampN)
	amp, err := measureAmplification(o.ampN)
	if err != nil {
		log.Fatal(err)
	}
	r.amp = amp

	// The memory phase measures heap growth: first close the loopback
	// servers and clients and let their goroutines finish, so that no
	// unrelated memory is freed (or allocated) while it measures.
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
	r.wall = time.Since(r.started)

	var buf bytes.Buffer
	writeReport(&buf, r)
	if err := os.WriteFile(o.out, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s in %v", o.out, r.wall.Round(time.Second))
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
