package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisSection runs the Scale-out (Redis) section briefly on
// REATTEST_REDIS and checks what it counted, then renders it.
func TestRedisSection(t *testing.T) {
	addr := os.Getenv("REATTEST_REDIS")
	if addr == "" {
		t.Skip("REATTEST_REDIS not set: run .ci/run or start redis-server, see CONTRIBUTING.md")
	}
	rr := measureRedis(30, 50*time.Millisecond)
	if rr.skipped != "" {
		t.Fatalf("not measured: %s", rr.skipped)
	}
	if rr.origin != "REATTEST_REDIS" || rr.addr != addr || rr.version == "" || rr.version == "unknown" {
		t.Errorf("Redis %q at %q from %q", rr.version, rr.addr, rr.origin)
	}
	h, a, p := rr.hit, rr.att, rr.prop
	if h.rounds < redisMinRounds || h.ratio <= 0 || h.nsWith <= 0 || h.nsWithout <= 0 {
		t.Errorf("cache hits: %+v", h)
	}
	if h.commands != 0 || h.other != 0 {
		t.Errorf("cache hits: %d Redis commands (%v), %d responses other than 200; want none", h.commands, h.commandNames, h.other)
	}
	if a.rounds < redisMinRounds || a.ratio <= 0 || a.cpuRatio <= 0 || a.usOn <= 0 || a.usOff <= 0 {
		t.Errorf("re-attestation: %+v", a)
	}
	// Every audited attestation queues two records (the challenge and the
	// verified request), all written: one stream, in the run's namespace.
	if a.queued != uint64(2*a.onAttestations) || a.written != a.queued || a.dropped != 0 || a.streamLen != int64(a.written) {
		t.Errorf("audit: %d attestations, %d records queued, %d written, %d dropped, stream length %d",
			a.onAttestations, a.queued, a.written, a.dropped, a.streamLen)
	}
	// p.n: as many revocations as the time bound allowed (at least one).
	if p.n < 1 || p.n > 30 || p.lost != 0 || p.p50 <= 0 || p.p99 < p.p50 || p.max < p.p99 {
		t.Errorf("propagation: %+v", p)
	}
	// The run left nothing behind.
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	keys, err := c.Keys(context.Background(), "reattest:{"+rr.ns+"-*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("keys left in Redis: %v", keys)
	}

	r := &results{opts: options{n: 30, dur: 50 * time.Millisecond}, command: "test", started: time.Now(), redis: rr}
	var out strings.Builder
	writeRedis(mdWriter{&out}, r, true)
	for _, want := range []string{"## Scale-out (Redis)", "Targets (issue 13)", "| revocation propagation", "### Cache hit", "### Re-attestation", "sent **0** commands"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("section lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRedisSkipped: without REATTEST_REDIS and without redis-server on
// PATH, the section says why it was not measured.
func TestRedisSkipped(t *testing.T) {
	t.Setenv("REATTEST_REDIS", "")
	t.Setenv("PATH", t.TempDir())
	rr := measureRedis(10, time.Millisecond)
	if !strings.Contains(rr.skipped, "redis-server is not on PATH") {
		t.Fatalf("skipped = %q", rr.skipped)
	}
	r := &results{command: "test", started: time.Now(), redis: rr}
	var out strings.Builder
	writeReport(&out, r)
	for _, want := range []string{
		"| issue 13 performance targets | not measured: REATTEST_REDIS is not set and redis-server is not on PATH |",
		"## 8. Scale-out (Redis)\n\nNot measured in this run: REATTEST_REDIS is not set and redis-server is not on PATH.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestProvideRedisStartsAndStops: without REATTEST_REDIS, the bench
// starts the redis-server on PATH on a free loopback port and stops it.
func TestProvideRedisStartsAndStops(t *testing.T) {
	server := os.Getenv("REATTEST_REDIS_SERVER")
	if server == "" {
		t.Skip("REATTEST_REDIS_SERVER not set: run .ci/run or see CONTRIBUTING.md")
	}
	t.Setenv("REATTEST_REDIS", "")
	t.Setenv("PATH", filepath.Dir(server))
	addr, origin, stop, skip := provideRedis()
	if skip != "" {
		t.Fatal(skip)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") || !strings.Contains(origin, "started by the bench") {
		t.Errorf("addr %q, origin %q", addr, origin)
	}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("started redis-server does not answer: %v", err)
	}
	stop()
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Error("redis-server still listens after stop")
	}
}
