package main

// Section 8: scale-out on Redis (issue 13). The Go benchmarks of
// middleware/redisstate (BenchmarkCacheHitPaired, BenchmarkReattestPaired,
// BenchmarkRevocationPropagation) measure the same things; this file runs
// them in the bench program so that the report has them from the same run,
// on a real redis-server only.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/redisstate"
)

// Targets of issue 13 (performance).
const (
	targetRedisHit     = 1.05                  // cache hit with a redisstate.Store / without a coordinator
	targetRedisPropP99 = 10 * time.Millisecond // revocation from one replica to another, p99
	targetRedisAudit   = 0.90                  // re-attestation throughput, audit stream on / off
)

// Sizes of the paired rounds (as in middleware/redisstate's benchmarks).
const (
	redisHitsPerRound    = 200
	redisAttestsPerRound = 20
	redisMinRounds       = 5
	redisPropReason      = "bench propagation"
)

// redisResult is the Scale-out (Redis) section.
type redisResult struct {
	skipped string // why the section was not measured; "" if it was
	addr    string
	origin  string // where the Redis came from
	version string
	ns      string // prefix of the run's namespaces
	elapsed time.Duration

	hit struct {
		rounds                    int
		ratio                     float64 // median of the rounds' with/without time ratios
		nsWithout, nsWith         float64 // median of the rounds' ns/op
		allocsWithout, allocsWith float64
		commands                  int64    // Redis commands the replica's client sent during the hits
		commandNames              []string // "NAME ×count"
		other                     int64    // responses other than 200 (none expected)
	}
	att struct {
		rounds             int
		ratio              float64 // throughput on/off: 1 / median of the rounds' on/off time ratios
		cpuRatio           float64 // CPU per attestation off/on: 1 / median of the rounds' CPU ratios
		usOff, usOn        float64 // median of the rounds' µs per attestation
		cpuOff, cpuOn      float64 // median of the rounds' CPU µs per attestation
		onAttestations     int     // with the audit on, the unrecorded round included (as in the counts below)
		written, dropped   uint64  // audit records
		queued             uint64
		streamLen          int64
		drainP50, drainMax time.Duration // wait for the audit writes at the end of an "on" round
		roundTrips         int64         // Redis round trips of the "on" Store (commands and pipelines) during the rounds
		serverCPU          time.Duration // redis-server's CPU time during the rounds (INFO cpu; 0: unknown)
	}
	prop struct {
		n, lost              int
		p50, p99, max        time.Duration // Revoke on A until B's Guard applied it
		revokeP50, revokeP99 time.Duration // Revoke's own return time (record + announce)
	}
	resyncs uint64 // links lost and re-established during the section (beyond the first sync of each Store)
}

// measureRedis measures the section on a real redis-server (see
// provideRedis): the cache-hit pairs run for dur, the re-attestation pairs
// for 3×dur, and n revocations are timed (for at most 3×dur). Every key
// the run made is deleted at the end.
func measureRedis(n int, dur time.Duration) (res redisResult) {
	start := time.Now()
	defer func() { res.elapsed = time.Since(start) }()
	addr, origin, stop, skip := provideRedis()
	if skip != "" {
		res.skipped = skip
		return res
	}
	defer stop()
	res.addr, res.origin = addr, origin
	tb := &mainTB{}
	m := &redisBench{tb: tb, addr: addr, ns: "bench-" + randomHex(6), admin: redis.NewClient(&redis.Options{Addr: addr})}
	res.ns = m.ns
	defer m.admin.Close()
	defer m.clean()        // second: nothing writes any more
	defer tb.runCleanups() // first: the Guards, Stores and their clients close
	if err := m.ping(); err != nil {
		res.skipped = fmt.Sprintf("Redis at %s (%s) did not answer: %v", addr, origin, err)
		return res
	}
	res.version = m.version()
	e := newBaseEnv(tb)
	var err error
	if err = m.cacheHit(e, dur, &res); err == nil {
		if err = m.reattest(e, 3*dur, &res); err == nil {
			err = m.propagation(e, n, 3*dur, &res)
		}
	}
	for _, s := range m.stores {
		if st := s.Stats(); st.Syncs > 1 {
			res.resyncs += st.Syncs - 1
		}
	}
	if err != nil {
		res.skipped = "failed: " + err.Error()
	}
	return res
}

// redisBench holds the section's Redis clients and Stores.
type redisBench struct {
	tb     *mainTB
	addr   string
	admin  *redis.Client // the bench's own queries
	ns     string        // every namespace of the run starts with it
	stores []*redisstate.Store
	nss    []string // the namespaces used
}

// client returns a new go-redis client (each replica has its own, as
// separate processes would).
func (m *redisBench) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: m.addr})
	m.tb.Cleanup(func() { c.Close() })
	return c
}

// store returns a Store of the namespace m.ns-suffix on client c, with
// the default options (audit on, 1 s heartbeat) and opts.
func (m *redisBench) store(c redis.UniversalClient, suffix string, opts ...redisstate.Option) (*redisstate.Store, error) {
	ns := m.ns + "-" + suffix
	s, err := redisstate.New(c, append([]redisstate.Option{redisstate.WithNamespace(ns)}, opts...)...)
	if err != nil {
		return nil, err
	}
	m.tb.Cleanup(func() { s.Close() })
	m.stores = append(m.stores, s)
	if !slices.Contains(m.nss, ns) {
		m.nss = append(m.nss, ns)
	}
	return s, nil
}

// guard returns the inproc of a replica whose Guard has coordinator c (nil:
// none), once it is in sync.
func (m *redisBench) guard(e *env, c middleware.Coordinator) (*inproc, error) {
	var opts []middleware.Option
	if c != nil {
		opts = append(opts, middleware.WithCoordinator(c))
	}
	p := e.newInproc(1, opts...)
	m.tb.Cleanup(func() { p.guard.Close() })
	return p, waitUntil("Guard in sync with Redis", 10*time.Second, time.Millisecond, p.guard.Synced)
}

func (m *redisBench) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.admin.Ping(ctx).Err()
}

// version returns the server's redis_version.
func (m *redisBench) version() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := m.admin.Info(ctx, "server").Result()
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
			return v
		}
	}
	return "unknown"
}

// serverCPU returns redis-server's CPU time so far (INFO cpu: user + system).
func (m *redisBench) serverCPU() (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := m.admin.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	found := 0
	for _, l := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, err
			}
			total += f
			found++
		}
	}
	if found != 2 {
		return 0, errors.New("INFO cpu lacks used_cpu_sys or used_cpu_user")
	}
	return time.Duration(total * float64(time.Second)), nil
}

// clean deletes every key of the run's namespaces, so that a shared Redis
// keeps nothing of the run. The Stores must be closed.
func (m *redisBench) clean() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := m.admin
	for _, ns := range m.nss {
		it := c.Scan(ctx, 0, "reattest:{"+ns+"}:*", 1000).Iterator()
		var keys []string
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	}
}

// cacheHit (target a): cache hits without a coordinator and with a
// redisstate.Store (audit on, the default), in alternating rounds.
func (m *redisBench) cacheHit(e *env, dur time.Duration, res *redisResult) error {
	cmds := &commandCounter{}
	c := m.client()
	c.AddHook(cmds)
	st, err := m.store(c, "hit", redisstate.WithReplica("hit"))
	if err != nil {
		return err
	}
	without, err := m.guard(e, nil)
	if err != nil {
		return err
	}
	// The Guard never calls the Auditor on a cache hit (AuditCacheHits is
	// false): the wrapper only lets the setup wait for the audit records of
	// the attestation below, which would otherwise be written during the hits.
	counted := &auditCounter{Store: st, audit: true}
	with, err := m.guard(e, counted)
	if err != nil {
		return err
	}
	w := &statusWriter{h: make(http.Header)}
	hitOf := func(p *inproc) (func(), error) {
		ctx := middleware.ContextWithConnState(context.Background())
		if err := p.attest(ctx, p.pool[0]); err != nil {
			return nil, err
		}
		req := request(ctx, p.pool[0], protectedPath)
		return func() { p.handler.ServeHTTP(w, req) }, nil
	}
	a, err := hitOf(without)
	if err != nil {
		return err
	}
	b, err := hitOf(with)
	if err != nil {
		return err
	}
	if err := counted.drain(); err != nil {
		return err
	}
	res.hit.allocsWithout, res.hit.allocsWith = testing.AllocsPerRun(1000, a), testing.AllocsPerRun(1000, b)
	loop := func(f func()) func(int) (time.Duration, error) {
		return func(n int) (time.Duration, error) {
			for range n {
				f()
			}
			return 0, nil
		}
	}
	w.other.Store(0)
	c0 := cmds.snapshot()
	samples, err := paired(dur, redisHitsPerRound, loop(a), loop(b))
	if err != nil {
		return err
	}
	for name, k := range cmds.snapshot() {
		if k -= c0[name]; k > 0 {
			res.hit.commands += int64(k)
			res.hit.commandNames = append(res.hit.commandNames, fmt.Sprintf("%s ×%d", name, k))
		}
	}
	slices.Sort(res.hit.commandNames)
	res.hit.other = w.other.Load()
	res.hit.rounds = len(samples)
	res.hit.ratio = median(mapf(samples, func(s pairSample) float64 { return s.wallC / s.wallA }))
	res.hit.nsWithout = median(mapf(samples, func(s pairSample) float64 { return s.wallA }))
	res.hit.nsWith = median(mapf(samples, func(s pairSample) float64 { return s.wallC }))
	return nil
}

// reattest (target c): connection-mode attestations on fresh connection
// states with the audit stream off and on, in alternating rounds. An "on"
// round ends when the Store has written (or dropped) every audit record of
// the round, so that its background writes happen in it and not in the
// next round of the other variant; that wait counts in the round's CPU
// time (the writer's work) but not in its wall-clock time (mostly Redis's
// round trip, which holds no request).
func (m *redisBench) reattest(e *env, dur time.Duration, res *redisResult) error {
	stOff, err := m.store(m.client(), "audit", redisstate.WithAudit(false), redisstate.WithReplica("audit-off"))
	if err != nil {
		return err
	}
	cmds := &commandCounter{}
	cOn := m.client()
	cOn.AddHook(cmds)
	stOn, err := m.store(cOn, "audit", redisstate.WithReplica("audit-on"))
	if err != nil {
		return err
	}
	on := &auditCounter{Store: stOn, audit: true}
	off, err := m.guard(e, &auditCounter{Store: stOff})
	if err != nil {
		return err
	}
	onP, err := m.guard(e, on)
	if err != nil {
		return err
	}
	var drains []time.Duration
	round := func(p *inproc, drain bool) func(int) (time.Duration, error) {
		return func(n int) (time.Duration, error) {
			for range n {
				if err := p.attest(middleware.ContextWithConnState(context.Background()), p.pool[0]); err != nil {
					return 0, err
				}
			}
			if !drain {
				return 0, nil
			}
			res.att.onAttestations += n
			t0 := time.Now()
			err := on.drain()
			d := time.Since(t0)
			drains = append(drains, d)
			return d, err
		}
	}
	cpu0, cpuErr := m.serverCPU()
	rt0 := cmds.roundTrip.Load()
	samples, err := paired(dur, redisAttestsPerRound, round(off, false), round(onP, true))
	if err != nil {
		return err
	}
	res.att.roundTrips = cmds.roundTrip.Load() - rt0
	if cpu1, err := m.serverCPU(); err == nil && cpuErr == nil {
		res.att.serverCPU = cpu1 - cpu0
	}
	res.att.rounds = len(samples)
	res.att.ratio = 1 / median(mapf(samples, func(s pairSample) float64 { return s.wallC / s.wallA }))
	res.att.cpuRatio = 1 / median(mapf(samples, func(s pairSample) float64 { return s.cpuC / s.cpuA }))
	res.att.usOff = median(mapf(samples, func(s pairSample) float64 { return s.wallA })) / 1e3
	res.att.usOn = median(mapf(samples, func(s pairSample) float64 { return s.wallC })) / 1e3
	res.att.cpuOff = median(mapf(samples, func(s pairSample) float64 { return s.cpuA })) / 1e3
	res.att.cpuOn = median(mapf(samples, func(s pairSample) float64 { return s.cpuC })) / 1e3
	st := stOn.Stats()
	res.att.written, res.att.dropped, res.att.queued = st.AuditWritten, st.AuditDropped, on.queued.Load()
	if off := stOff.Stats(); off.AuditWritten+off.AuditDropped != 0 {
		return fmt.Errorf("audit off: %d records written, %d dropped", off.AuditWritten, off.AuditDropped)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res.att.streamLen, _ = m.admin.XLen(ctx, "reattest:{"+m.ns+"-audit}:audit").Result()
	slices.Sort(drains)
	if len(drains) > 0 {
		res.att.drainP50, res.att.drainMax = drains[len(drains)/2], drains[len(drains)-1]
	}
	return nil
}

// propagation (target b): Guard.Revoke on replica A until replica B's
// Guard has applied the revocation, one at a time, each replica with its
// own client.
func (m *redisBench) propagation(e *env, n int, maxDur time.Duration, res *redisResult) error {
	stA, err := m.store(m.client(), "prop", redisstate.WithAudit(false), redisstate.WithReplica("a"))
	if err != nil {
		return err
	}
	stB, err := m.store(m.client(), "prop", redisstate.WithAudit(false), redisstate.WithReplica("b"))
	if err != nil {
		return err
	}
	arrived := make(chan middleware.Identity, 64)
	a, err := m.guard(e, stA)
	if err != nil {
		return err
	}
	if _, err := m.guard(e, &tap{Store: stB, arrived: arrived}); err != nil {
		return err
	}
	ctx := context.Background()
	prefix := randomHex(8)
	var lat, rev []time.Duration
	deadline := time.Now().Add(maxDur)
	const warmup = 20
	// maxDur bounds the run, but at least one revocation is timed after
	// the warm-up, however slow the machine.
	for i := 0; i < warmup+n && (i <= warmup || time.Now().Before(deadline)); i++ {
		id := middleware.Identity{Kind: middleware.IdentityMachine, Value: fmt.Sprintf("%s%08x", prefix, i)}
		t0 := time.Now()
		if err := a.guard.Revoke(ctx, id, time.Now().Add(time.Minute), redisPropReason); err != nil {
			return fmt.Errorf("revoke: %w", err)
		}
		tr := time.Since(t0)
		timeout := time.After(time.Second)
	wait:
		for {
			select {
			case got := <-arrived:
				if got == id {
					break wait
				}
			case <-timeout:
				res.prop.lost++
				break wait
			}
		}
		if i >= warmup {
			lat, rev = append(lat, time.Since(t0)), append(rev, tr)
		}
	}
	if len(lat) == 0 {
		return errors.New("no revocation timed")
	}
	slices.Sort(lat)
	slices.Sort(rev)
	res.prop.n = len(lat)
	res.prop.p50, res.prop.p99, res.prop.max = percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1]
	res.prop.revokeP50, res.prop.revokeP99 = percentile(rev, 0.50), percentile(rev, 0.99)
	return nil
}

// percentile of sorted samples (nearest rank below).
func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(p*float64(len(sorted)-1))]
}

// pairSample is one round of each variant of a paired run: time and
// process CPU time per operation, in ns.
type pairSample struct{ wallA, wallC, cpuA, cpuC float64 }

// paired runs rounds of n operations of a and of c alternately (which one
// goes first alternates too) for at least dur and redisMinRounds rounds,
// after one unrecorded round of each. A round returns the time it spent
// idle waiting (for background work to finish): its CPU time counts, its
// wall-clock time does not. Short alternating rounds keep a busy
// machine's drift out of the comparison: compare the variants by the
// median of the per-round ratios.
func paired(dur time.Duration, n int, a, c func(n int) (idle time.Duration, err error)) ([]pairSample, error) {
	timed := func(f func(int) (time.Duration, error)) (wall, cpu float64, err error) {
		c0, t0 := cpuTime(), time.Now()
		idle, err := f(n)
		wall, cpu = float64(time.Since(t0)-idle), float64(cpuTime()-c0)
		return wall / float64(n), cpu / float64(n), err
	}
	for _, f := range []func(int) (time.Duration, error){a, c} {
		if _, _, err := timed(f); err != nil {
			return nil, err
		}
	}
	var out []pairSample
	start := time.Now()
	for len(out) < redisMinRounds || time.Since(start) < dur {
		var s pairSample
		var errA, errC error
		if len(out)%2 == 1 {
			s.wallC, s.cpuC, errC = timed(c)
			s.wallA, s.cpuA, errA = timed(a)
		} else {
			s.wallA, s.cpuA, errA = timed(a)
			s.wallC, s.cpuC, errC = timed(c)
		}
		if err := errors.Join(errA, errC); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func mapf[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// waitUntil checks cond every poll until it holds, for at most limit.
func waitUntil(what string, limit, poll time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting (%v): %s", limit, what)
		}
		time.Sleep(poll)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// statusWriter is a reusable ResponseWriter that keeps nothing but counts
// responses other than 200.
type statusWriter struct {
	h     http.Header
	other atomic.Int64
}

func (w *statusWriter) Header() http.Header         { return w.h }
func (w *statusWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *statusWriter) WriteHeader(code int) {
	if code != http.StatusOK {
		w.other.Add(1)
	}
}

// commandCounter is a go-redis hook that counts the commands a client
// sends (pub/sub traffic, the heartbeat PING included, does not pass
// through hooks).
type commandCounter struct {
	mu        sync.Mutex // guards names
	names     map[string]int
	roundTrip atomic.Int64 // commands and pipelines sent
}

func (c *commandCounter) count(cmds ...redis.Cmder) {
	c.roundTrip.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.names == nil {
		c.names = make(map[string]int)
	}
	for _, cmd := range cmds {
		c.names[strings.ToUpper(cmd.Name())]++
	}
}

// snapshot returns the counts so far by command name.
func (c *commandCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.names)
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.count(cmds...)
		return next(ctx, cmds)
	}
}

// auditCounter is a Store that counts the decisions it queues for the
// audit stream, so that a round can wait until they are written.
type auditCounter struct {
	*redisstate.Store
	audit  bool // the Store's audit stream is on
	queued atomic.Uint64
}

func (a *auditCounter) Audit(ctx context.Context, d middleware.Decision) {
	if a.audit && (a.AuditCacheHits() || d.Outcome != middleware.OutcomeCacheHit) {
		a.queued.Add(1)
	}
	a.Store.Audit(ctx, d)
}

// drain waits until the Store has written or dropped every record queued.
func (a *auditCounter) drain() error {
	return waitUntil("audit records written", 10*time.Second, 100*time.Microsecond, func() bool {
		s := a.Stats()
		return s.AuditWritten+s.AuditDropped >= a.queued.Load()
	})
}

// tap is a Store whose Watch tells arrived when the Guard has applied a
// revocation of the propagation measurement.
type tap struct {
	*redisstate.Store
	arrived chan<- middleware.Identity
}

func (t *tap) Watch(w middleware.Watcher) (stop func()) {
	return t.Store.Watch(tapWatcher{w, t.arrived})
}

type tapWatcher struct {
	inner   middleware.Watcher
	arrived chan<- middleware.Identity
}

func (w tapWatcher) Apply(e middleware.Event) {
	w.inner.Apply(e)
	if e.Kind == middleware.EventRevoke && e.Reason == redisPropReason {
		select {
		case w.arrived <- e.Identity:
		default:
		}
	}
}

func (w tapWatcher) Synced(ok bool) { w.inner.Synced(ok) }

// Interface guards.
var (
	_ middleware.Coordinator = (*tap)(nil)
	_ middleware.Auditor     = (*auditCounter)(nil)
	_ middleware.Auditor     = (*tap)(nil)
)

// provideRedis returns the address of REATTEST_REDIS, or starts a
// redis-server on a free loopback port (stop stops it by PID), or says
// why there is none.
func provideRedis() (addr, origin string, stop func(), skip string) {
	if a := os.Getenv("REATTEST_REDIS"); a != "" {
		return a, "REATTEST_REDIS", func() {}, ""
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", "", nil, "REATTEST_REDIS is not set and redis-server is not on PATH"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, "no free loopback port for redis-server: " + err.Error()
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return "", "", nil, fmt.Sprintf("starting %s: %v", path, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	err = waitUntil("redis-server answers", 10*time.Second, 20*time.Millisecond, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		// Dial first: go-redis logs each refused connection.
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		return c.Ping(ctx).Err() == nil
	})
	select {
	case <-exited:
		err = fmt.Errorf("it exited: %s", lastLine(out.String()))
	default:
	}
	if err != nil {
		stop()
		return "", "", nil, fmt.Sprintf("%s on %s did not start: %v", path, addr, err)
	}
	return addr, fmt.Sprintf("started by the bench: `redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no`, pid %d", port, cmd.Process.Pid), stop, ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// notMeasured says why the section has no figures ("" if it has).
func (rr redisResult) notMeasured() string {
	switch {
	case rr.skipped != "":
		return rr.skipped
	case rr.addr == "":
		return "the section did not run"
	}
	return ""
}

// parenList returns " (a, b)", or "" for none.
func parenList(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return " (" + strings.Join(s, ", ") + ")"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// writeRedisTargets writes the rows of issue 13's targets table.
func writeRedisTargets(md mdWriter, rr redisResult) {
	md.line("| target | measured | result |")
	md.line("|---|---|---|")
	if skipped := rr.notMeasured(); skipped != "" {
		md.line("| issue 13 performance targets | not measured: %s | — |", skipped)
		return
	}
	h, p, a := rr.hit, rr.prop, rr.att
	md.line("| cache hit with a redisstate.Store as the Guard's Coordinator ≤ %.2f× without (in-process) | median of %d paired rounds %.2f× (%.0f vs %.0f ns/op); %d Redis commands during the hits | %s |",
		targetRedisHit, h.rounds, h.ratio, h.nsWith, h.nsWithout, h.commands, verdict(h.ratio <= targetRedisHit && h.other == 0))
	md.line("| revocation propagation from one replica to another over loopback: p99 ≤ %v | p99 %s, p50 %s (%d revocations, %d lost) | %s |",
		targetRedisPropP99, ms(p.p99), ms(p.p50), p.n, p.lost, verdict(p.p99 <= targetRedisPropP99 && p.lost == 0))
	md.line("| re-attestation throughput with the audit stream on ≥ %.0f%% of off | median of %d paired rounds %.1f%% (%.0f vs %.0f µs per attestation); CPU per attestation off/on %.1f%% | %s |",
		100*targetRedisAudit, a.rounds, 100*a.ratio, a.usOn, a.usOff, 100*a.cpuRatio, verdict(a.ratio >= targetRedisAudit && a.dropped == 0))
}

// writeRedis writes the Scale-out (Redis) section; standalone (-only
// redis) adds the run's details and the targets.
func writeRedis(md mdWriter, r *results, standalone bool) {
	rr := r.redis
	if standalone {
		md.line("## Scale-out (Redis)")
		md.line("")
		md.line("Generated by `%s` (from the repository root) on %s, commit %s, %d cores (GOMAXPROCS %d), load average %s at start: a separate run from the rest of the report.",
			r.command, r.started.UTC().Format("2006-01-02 15:04 MST"), gitCommit(), runtime.NumCPU(), r.cores, r.load)
	} else {
		md.line("## 8. Scale-out (Redis)")
	}
	md.line("")
	if skipped := rr.notMeasured(); skipped != "" {
		md.line("Not measured in this run: %s.", skipped)
		md.line("")
		return
	}
	md.line("Redis %s at %s (%s); the run's namespaces (`%s-hit`, `%s-audit`, `%s-prop`) are deleted at the end.", rr.version, rr.addr, rr.origin, rr.ns, rr.ns, rr.ns)
	md.line("Each replica is a Guard (connection-mode route `POST /pay`) with `middleware.WithCoordinator(store)`, the store")
	md.line("`redisstate.New(client, redisstate.WithNamespace(...))` on a go-redis client of its own, as separate processes")
	md.line("would have, with the default options otherwise (audit stream on, 1 s heartbeat). Requests are given to")
	md.line("`Guard.Middleware` in-process as in section 4 (r.TLS from a real loopback TLS 1.3 connection, state from")
	md.line("`middleware.ContextWithConnState`); attestations are answered with software EAT on the matching client side.")
	md.line("The section took %v; Redis links lost and re-established meanwhile: %d.", rr.elapsed.Round(100*time.Millisecond), rr.resyncs)
	md.line("")
	if standalone {
		md.line("Targets (issue 13):")
		md.line("")
		writeRedisTargets(md, rr)
		md.line("")
	}
	h := rr.hit
	md.line("### Cache hit: the hot path does not touch Redis")
	md.line("")
	md.line("| Guard | ns/op (median of rounds) | × without (median of the rounds' ratios) | allocs/op |")
	md.line("|---|---|---|---|")
	md.line("| without a coordinator | %.0f | 1.00× | %.0f |", h.nsWithout, h.allocsWithout)
	md.line("| with a redisstate.Store | %.0f | %.2f× | %.0f |", h.nsWith, h.ratio, h.allocsWith)
	md.line("")
	md.line("%d rounds of %d cache hits of each Guard, alternating (which goes first alternates too), for %v: short", h.rounds, redisHitsPerRound, r.opts.dur)
	md.line("alternating rounds keep a busy machine's drift out of the ratio. During the measured hits the replica's")
	md.line("go-redis client sent **%d** commands%s (counted by a client hook; pub/sub traffic, the heartbeat PING", h.commands, parenList(h.commandNames))
	md.line("included, does not pass through it), and %d responses were other than 200.", h.other)
	md.line("")
	p := rr.prop
	md.line("### Revocation propagation between two replicas")
	md.line("")
	md.line("| revocations timed | p50 | p99 | max | lost (not applied within 1 s) | `Revoke` returns: p50 / p99 |")
	md.line("|---|---|---|---|---|---|")
	md.line("| %d | %s | %s | %s | %d | %s / %s |", p.n, ms(p.p50), ms(p.p99), ms(p.max), p.lost, ms(p.revokeP50), ms(p.revokeP99))
	md.line("")
	md.line("From `Guard.Revoke` on replica A (applied there, then recorded and announced on Redis by one Lua script)")
	md.line("until replica B's Guard has applied it: B's Store receives it on its subscription and delivers it to a")
	md.line("Watcher that wraps B's Guard and signals once the Guard's Apply has returned. One revocation at a time,")
	md.line("after 20 unrecorded ones; at most %d, for at most %v.", r.opts.n, 3*r.opts.dur)
	md.line("")
	a := rr.att
	md.line("### Re-attestation with the audit stream on and off")
	md.line("")
	md.line("| audit stream | µs per attestation (median of rounds) | attestations/s | CPU per attestation (median of rounds) |")
	md.line("|---|---|---|---|")
	md.line("| off (`redisstate.WithAudit(false)`) | %.0f | %.0f | %.0f µs |", a.usOff, 1e6/a.usOff, a.cpuOff)
	md.line("| on (the default) | %.0f | %.0f | %.0f µs |", a.usOn, 1e6/a.usOn, a.cpuOn)
	md.line("| **on / off** (median of the rounds' ratios) | | **%.1f%%** | off / on: **%.1f%%** |", 100*a.ratio, 100*a.cpuRatio)
	md.line("")
	md.line("%d rounds of %d connection-mode attestations of each Guard (401 with a challenge, the software EAT answer,", a.rounds, redisAttestsPerRound)
	md.line("the verified request; a fresh connection state each), alternating, for %v. An \"on\" round ends only when", 3*r.opts.dur)
	md.line("the Store has written every audit record it queued, so that its writes in the background happen in it and")
	md.line("not in the next \"off\" round. That wait (p50 %s, max %s per round) is left out of the round's time, since", ms(a.drainP50), ms(a.drainMax))
	md.line("it is mostly Redis's round trip and holds no request, but not out of its CPU time. CPU is the process's")
	md.line("CPU time (getrusage) per attestation: it includes the audit writer goroutine and the go-redis client, not")
	md.line("redis-server (another process; in production usually another host); its ratio predicts the throughput")
	md.line("of a server whose cores are all busy.")
	per := func(x float64) float64 { return ratioOf(x, float64(a.onAttestations)) }
	md.line("Audit records: %d queued (%.1f per attestation), %d written, %d dropped; stream length %d. The \"on\"",
		a.queued, per(float64(a.queued)), a.written, a.dropped, a.streamLen)
	md.line("Store's client made %d Redis round trips (%.2f per attestation: sequential requests leave little to batch).", a.roundTrips, per(float64(a.roundTrips)))
	if a.serverCPU > 0 {
		md.line("redis-server's own CPU time (INFO cpu) over the rounds of both variants: %s, %.0f µs per audited attestation;", ms(a.serverCPU), per(float64(a.serverCPU)/1e3))
		md.line("on loopback it runs on the same cores and competes with the Guard for them (bench/FINDINGS.md).")
	}
	md.line("")
}
