package redisstate_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/redisstate"
)

// Unit tests of the Store against miniredis, for fault injection (an
// in-process Redis that can be closed, restarted, flushed, or reached
// through a proxy that goes silent). The integration tests use a real
// redis-server.

func miniStore(t *testing.T, m *miniredis.Miniredis, ns string, opts ...redisstate.Option) *redisstate.Store {
	t.Helper()
	return newStore(t, m.Addr(), ns, opts...)
}

var machine = middleware.Identity{Kind: middleware.IdentityMachine, Value: "0a0b"}

// A Store delivers the recorded state to a watcher (including one that
// starts after the events), then the events of other Stores, and says when
// it is in sync.
func TestStoreDeliversRecordedStateAndEvents(t *testing.T) {
	m := miniredis.RunT(t)
	a := miniStore(t, m, "ns")
	ctx := context.Background()
	waitFor(t, "a in sync", func() bool { return a.Stats().Synced })
	if err := a.Publish(ctx, middleware.Event{Kind: middleware.EventRevoke, Identity: machine, Until: time.Now().Add(time.Hour), Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	doc := &middleware.PolicyDocument{Version: 3}
	if err := a.Publish(ctx, middleware.Event{Kind: middleware.EventPolicy, Policy: doc}); err != nil {
		t.Fatal(err)
	}
	b := miniStore(t, m, "ns")
	sp := &spy{}
	b.Watch(sp)
	waitFor(t, "b in sync", sp.isSynced)
	if !sp.has(func(e middleware.Event) bool { return e.Kind == middleware.EventRevoke && e.Identity == machine }) ||
		!sp.has(func(e middleware.Event) bool { return e.Kind == middleware.EventPolicy && e.Policy.Version == 3 }) {
		t.Fatalf("recorded state not delivered: %+v", sp.events)
	}
	key := middleware.Identity{Kind: middleware.IdentityKey, Value: strings.Repeat("ab", 32)}
	if err := a.Publish(ctx, middleware.Event{Kind: middleware.EventInvalidate, Identity: key, Posture: strings.Repeat("cd", 32), Origin: "r1"}); err != nil {
		t.Fatal(err)
	}
	delivered(t, b, sp, "invalidation", func(e middleware.Event) bool {
		return e.Kind == middleware.EventInvalidate && e.Identity == key && e.Origin == "r1"
	})
	if err := a.Publish(ctx, middleware.Event{Kind: middleware.EventUnrevoke, Identity: machine}); err != nil {
		t.Fatal(err)
	}
	delivered(t, b, sp, "unrevoke", func(e middleware.Event) bool { return e.Kind == middleware.EventUnrevoke })
	if revs, err := b.Revocations(ctx); err != nil || len(revs) != 0 {
		t.Fatalf("revocations after unrevoke: %+v %v", revs, err)
	}
	// Other namespaces see nothing.
	other := miniStore(t, m, "other")
	sp2 := &spy{}
	other.Watch(sp2)
	waitFor(t, "other in sync", sp2.isSynced)
	if len(sp2.events) != 0 {
		t.Fatalf("another namespace got %+v", sp2.events)
	}
}

// A policy document is recorded only if its version is newer.
func TestStorePolicyVersionOnlyForward(t *testing.T) {
	m := miniredis.RunT(t)
	s := miniStore(t, m, "ns")
	ctx := context.Background()
	for _, v := range []uint64{2, 5} {
		if err := s.Publish(ctx, middleware.Event{Kind: middleware.EventPolicy, Policy: &middleware.PolicyDocument{Version: v}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []uint64{5, 4} {
		if err := s.Publish(ctx, middleware.Event{Kind: middleware.EventPolicy, Policy: &middleware.PolicyDocument{Version: v}}); !errors.Is(err, redisstate.ErrStalePolicy) {
			t.Fatalf("version %d after 5: %v", v, err)
		}
	}
	if d, err := s.Policy(ctx); err != nil || d.Version != 5 {
		t.Fatalf("recorded %+v %v", d, err)
	}
}

// Redis goes away: watchers are told at once that the Store is out of
// sync; it reconnects with backoff and resynchronises.
func TestStoreOutOfSyncWhenRedisDies(t *testing.T) {
	m := miniredis.RunT(t)
	s := miniStore(t, m, "ns")
	sp := &spy{}
	s.Watch(sp)
	waitFor(t, "in sync", sp.isSynced)
	m.Close()
	waitFor(t, "out of sync", func() bool { return !sp.isSynced() })
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "back in sync", sp.isSynced)
	if st := s.Stats(); st.Syncs < 2 || !st.Synced {
		t.Fatalf("stats %+v", st)
	}
}

// freezer is a TCP proxy that can go silent: it keeps the connections open
// but stops forwarding, as a network partition without resets does.
type freezer struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, u)
			f.mu.Unlock()
			go f.pipe(c, u)
			go f.pipe(u, c)
		}
	}()
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			dst.Close()
			return
		}
		for f.frozen.Load() {
			time.Sleep(10 * time.Millisecond) // swallow nothing, deliver nothing
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			src.Close()
			return
		}
	}
}

// A link that goes silent (no reset, no answer) is detected by the
// heartbeat within two periods: out of sync, fail closed.
func TestStoreHeartbeatDetectsSilentLink(t *testing.T) {
	m := miniredis.RunT(t)
	p := newFreezer(t, m.Addr())
	s := newStore(t, p.ln.Addr().String(), "ns", redisstate.WithHeartbeat(400*time.Millisecond))
	sp := &spy{}
	s.Watch(sp)
	waitFor(t, "in sync", sp.isSynced)
	time.Sleep(1200 * time.Millisecond) // heartbeats answered: still in sync
	if !sp.isSynced() {
		t.Fatal("out of sync on a live link")
	}
	p.frozen.Store(true)
	start := time.Now()
	waitFor(t, "out of sync on a silent link", func() bool { return !sp.isSynced() })
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("silent link detected after %v", d)
	}
	p.frozen.Store(false)
}

// A message the Store cannot decode might be an event it would miss: it
// resynchronises (the recorded state is read again).
func TestStoreResyncsOnUndecodableMessage(t *testing.T) {
	m := miniredis.RunT(t)
	s := miniStore(t, m, "ns")
	waitFor(t, "in sync", func() bool { return s.Stats().Synced })
	before := s.Stats().Syncs
	m.Publish("reattest:{ns}:events", `{"v":2,"kind":"revoke"}`)
	waitFor(t, "resync", func() bool { st := s.Stats(); return st.Syncs > before && st.Synced })
}

// Redis loses its data (a restart without persistence): the Store keeps
// the revocations it knew; a resynchronisation never lifts one.
func TestStoreResyncNeverLiftsRevocations(t *testing.T) {
	m := miniredis.RunT(t)
	s := miniStore(t, m, "ns")
	waitFor(t, "in sync", func() bool { return s.Stats().Synced })
	if err := s.Publish(context.Background(), middleware.Event{Kind: middleware.EventRevoke, Identity: machine, Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sp := &spy{}
	s.Watch(sp)
	delivered(t, s, sp, "revocation", func(e middleware.Event) bool { return e.Identity == machine })
	before := s.Stats().Syncs
	m.Close()
	m.FlushAll()
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resync", func() bool { st := s.Stats(); return st.Syncs > before && st.Synced })
	late := &spy{}
	s.Watch(late)
	if !late.has(func(e middleware.Event) bool { return e.Kind == middleware.EventRevoke && e.Identity == machine }) {
		t.Fatal("the revocation was lifted by a resynchronisation")
	}
}

// Rate-limit buckets are shared by every Store of a namespace, all or
// none.
func TestStoreAllowShared(t *testing.T) {
	m := miniredis.RunT(t)
	a, b := miniStore(t, m, "ns"), miniStore(t, m, "ns")
	ctx := context.Background()
	peer := middleware.Bucket{Key: "verify:peer:x", Limit: middleware.Limit{Rate: 0.001, Burst: 3}}
	global := middleware.Bucket{Key: "verify:global", Limit: middleware.Limit{Rate: 0.001, Burst: 4}}
	var got []bool
	for i := range 4 {
		s := a
		if i%2 == 1 {
			s = b
		}
		ok, err := s.Allow(ctx, peer, global)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ok)
	}
	if !got[0] || !got[1] || !got[2] || got[3] {
		t.Fatalf("allowed %v: want the peer's burst of 3 across both Stores", got)
	}
	// The global bucket was not charged by the refused request: one left.
	if ok, _ := b.Allow(ctx, middleware.Bucket{Key: "verify:peer:y", Limit: peer.Limit}, global); !ok {
		t.Fatal("a refused request consumed a global token")
	}
	if ok, _ := b.Allow(ctx, middleware.Bucket{Key: "verify:peer:z", Limit: peer.Limit}, global); ok {
		t.Fatal("global burst exceeded")
	}
	if _, err := a.Allow(ctx); err == nil {
		t.Fatal("Allow without buckets")
	}
	m.Close()
	if _, err := a.Allow(ctx, peer); err == nil {
		t.Fatal("Allow with Redis down did not report an error")
	}
}

// The audit stream gets decisions (not cache hits by default), capped at
// its maximum length.
func TestStoreAuditStream(t *testing.T) {
	m := miniredis.RunT(t)
	s := miniStore(t, m, "ns", redisstate.WithAuditMaxLen(5), redisstate.WithReplica("gw-1"))
	ctx := context.Background()
	d := middleware.Decision{Route: "PUT /config", Outcome: middleware.OutcomeVerified, Reason: "", Format: "software-eat",
		Attester: middleware.Attester{KeyHash: "ab", Subject: "CN=agent"}, VerifyStart: time.Now(), VerifyDuration: time.Millisecond}
	s.Audit(ctx, middleware.Decision{Route: "PUT /config", Outcome: middleware.OutcomeCacheHit})
	for range 8 {
		s.Audit(ctx, d)
	}
	waitFor(t, "audit written", func() bool { return s.Stats().AuditWritten == 8 })
	recs, err := m.Stream("reattest:{ns}:audit")
	if err != nil || len(recs) != 5 {
		t.Fatalf("stream length %d %v, want the cap 5", len(recs), err)
	}
	v := map[string]string{}
	for i := 0; i+1 < len(recs[0].Values); i += 2 {
		v[recs[0].Values[i]] = recs[0].Values[i+1]
	}
	if v["replica"] != "gw-1" || v["outcome"] != "verified" || v["key"] != "ab" || v["subject"] != "CN=agent" || v["verify_us"] != "1000" {
		t.Fatalf("record %v", v)
	}
	off := miniStore(t, m, "off", redisstate.WithAudit(false))
	off.Audit(ctx, d)
	hits := miniStore(t, m, "hits", redisstate.WithAuditCacheHits(true))
	hits.Audit(ctx, middleware.Decision{Outcome: middleware.OutcomeCacheHit})
	waitFor(t, "cache hit audited", func() bool { return hits.Stats().AuditWritten == 1 })
	if off.Stats().AuditWritten != 0 {
		t.Fatal("audit off wrote a record")
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := redisstate.New(nil); err == nil {
		t.Fatal("nil client accepted")
	}
	m := miniredis.RunT(t)
	for _, ns := range []string{"a{b}", "a b", strings.Repeat("x", 65)} {
		if _, err := redisstate.New(newClient(t, m.Addr()), redisstate.WithNamespace(ns)); err == nil {
			t.Errorf("namespace %q accepted", ns)
		}
	}
	s := miniStore(t, m, "ns")
	if err := s.Publish(context.Background(), middleware.Event{Kind: middleware.EventRevoke, Identity: machine}); err == nil {
		t.Fatal("revocation without expiry published")
	}
	s.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
