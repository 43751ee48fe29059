package redisstate_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
)

// ownRedis is a redis-server this test starts, kills and restarts (on the
// same port), from REATTEST_REDIS_SERVER.
type ownRedis struct {
	t    *testing.T
	bin  string
	port int
	cmd  *exec.Cmd
}

func startOwnRedis(t *testing.T) *ownRedis {
	t.Helper()
	bin := os.Getenv("REATTEST_REDIS_SERVER")
	if bin == "" {
		t.Skip("REATTEST_REDIS_SERVER not set: this test kills and restarts its own redis-server; run .ci/run or set it to the redis-server binary (see CONTRIBUTING.md)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &ownRedis{t: t, bin: bin, port: port}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *ownRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *ownRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port), "--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	waitFor(r.t, "redis-server listening", func() bool {
		c, err := net.DialTimeout("tcp", r.addr(), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// kill stops the server at once (SIGKILL: no goodbye to the clients).
func (r *ownRedis) kill() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// Redis is killed mid-test: every replica goes out of sync at once and
// fails closed (re-attest mode: every request re-attests; deny mode: 503),
// revocations they knew still apply; after a restart (which lost every
// key) they resynchronise, drop the verdicts cached before, and share
// revocations again.
func TestRedisKilledFailsClosedThenRecovers(t *testing.T) {
	redisd := startOwnRedis(t)
	f := newFleet(t, redisd.addr(), 0)
	f.add()                                                               // replica 0: re-attest while out of sync (default)
	f.add(middleware.WithCoordinatorDown(middleware.CoordinatorDownDeny)) // replica 1: deny
	c := f.client()
	for i := range 2 {
		f.do(c, i, "PUT", "/config")
		if s, _ := f.do(c, i, "PUT", "/config"); s != 200 {
			t.Fatalf("replica %d before the outage: %d", i, s)
		}
	}
	if f.attester.Count() != 2 {
		t.Fatalf("%d attestations before the outage", f.attester.Count())
	}
	other := middleware.Identity{Kind: middleware.IdentityMachine, Value: "00ff"}
	if err := f.replicas[0].store.Publish(context.Background(), middleware.Event{Kind: middleware.EventRevoke, Identity: other, Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sp := &spy{}
	f.replicas[1].store.Watch(sp)
	delivered(t, f.replicas[1].store, sp, "revocation before the outage", func(e middleware.Event) bool { return e.Identity == other })

	redisd.kill()
	for i, r := range f.replicas {
		waitFor(t, "replica "+strconv.Itoa(i)+" out of sync", func() bool { return !r.guard.Synced() })
	}
	// Re-attest mode: every request re-attests.
	for k := range 3 {
		n := f.attester.Count()
		if s, _ := f.do(c, 0, "PUT", "/config"); s != 200 || f.attester.Count() != n+1 {
			t.Fatalf("replica 0 out of sync, request %d: %d, %d attestations (want one each)", k, s, f.attester.Count()-n)
		}
	}
	if !slices.Contains(f.replicas[0].reasons(), postauth.ReasonVerdictUnconfirmed) {
		t.Fatalf("replica 0 reasons %q", f.replicas[0].reasons())
	}
	// Deny mode: nothing runs.
	calls := f.replicas[1].calls.Load()
	for _, r := range []struct{ method, path string }{{"PUT", "/config"}, {"POST", "/pay"}} {
		if s, reason := f.do(c, 1, r.method, r.path); s != http.StatusServiceUnavailable || reason != postauth.ReasonCoordinatorUnavailable {
			t.Fatalf("replica 1 out of sync, %s %s: %d %s", r.method, r.path, s, reason)
		}
	}
	if f.replicas[1].calls.Load() != calls {
		t.Fatal("a handler ran on a replica that denies while out of sync")
	}
	// A revocation cannot be recorded now: Revoke says so, and applies here.
	if err := f.replicas[0].guard.Revoke(context.Background(), middleware.Identity{Kind: middleware.IdentityMachine, Value: "01"}, time.Now().Add(time.Hour), ""); err == nil {
		t.Fatal("Revoke succeeded with Redis down")
	}

	redisd.start()
	for i, r := range f.replicas {
		waitFor(t, "replica "+strconv.Itoa(i)+" back in sync", r.guard.Synced)
	}
	// Verdicts cached before the resync are dropped once, then cache hits.
	for i := range 2 {
		n := f.attester.Count()
		f.do(c, i, "PUT", "/config")
		if s, _ := f.do(c, i, "PUT", "/config"); s != 200 || f.attester.Count() != n+1 {
			t.Fatalf("replica %d after recovery: %d, %d attestations (want one, then a cache hit)", i, s, f.attester.Count()-n)
		}
	}
	// The restarted Redis lost every key, but the running replicas never
	// lift a revocation they know.
	sp2 := &spy{}
	f.replicas[1].store.Watch(sp2)
	if !sp2.has(func(e middleware.Event) bool { return e.Identity == other }) {
		t.Fatal("a resynchronisation lifted a revocation")
	}
	// Revocations flow again.
	spies := []*spy{{}, {}}
	for i, r := range f.replicas {
		r.store.Watch(spies[i])
	}
	id := f.keyIdentity()
	if err := f.replicas[0].guard.Revoke(context.Background(), id, time.Now().Add(time.Hour), "after recovery"); err != nil {
		t.Fatal(err)
	}
	delivered(t, f.replicas[1].store, spies[1], "revocation after recovery", func(e middleware.Event) bool { return e.Identity == id })
	if s, reason := f.do(c, 1, "PUT", "/config"); s != http.StatusForbidden || reason != postauth.ReasonAttesterRevoked {
		t.Fatalf("replica 1 after a revocation on replica 0: %d %s", s, reason)
	}
}
