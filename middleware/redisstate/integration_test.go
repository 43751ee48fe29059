package redisstate_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/redisstate"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// Three replicas on one redis-server: a revocation on one reaches the
// others at once (their cached verdicts are refused without a new
// attestation, new Evidence too), and a replica that starts later learns
// it from the recorded state.
func TestReplicasRevokeOnOneOthersRefuse(t *testing.T) {
	f := newFleet(t, redisAddr(t), 3)
	c := f.client()
	for i := range f.replicas {
		if s, _ := f.do(c, i, "PUT", "/config"); s != 200 {
			t.Fatalf("replica %d: %d", i, s)
		}
	}
	if n := f.attester.Count(); n != 3 {
		t.Fatalf("%d attestations, want one per replica", n)
	}
	spies := make([]*spy, len(f.replicas))
	for i, r := range f.replicas {
		spies[i] = &spy{}
		r.store.Watch(spies[i])
	}
	id := f.keyIdentity()
	if err := f.replicas[0].guard.Revoke(context.Background(), id, time.Now().Add(time.Hour), "agent-7 compromised"); err != nil {
		t.Fatal(err)
	}
	for i, r := range f.replicas {
		delivered(t, r.store, spies[i], "revocation", func(e middleware.Event) bool {
			return e.Kind == middleware.EventRevoke && e.Identity == id
		})
		if s, reason := f.do(c, i, "PUT", "/config"); s != http.StatusForbidden || reason != postauth.ReasonAttesterRevoked {
			t.Fatalf("replica %d, cached verdict: %d %s", i, s, reason)
		}
	}
	if n := f.attester.Count(); n != 3 {
		t.Fatalf("%d attestations: a revoked verdict is refused, never re-attested", n)
	}
	// New Evidence (operation mode) on every replica.
	for i := range f.replicas {
		if s, reason := f.do(c, i, "POST", "/pay"); s != http.StatusForbidden || reason != postauth.ReasonAttesterRevoked {
			t.Fatalf("replica %d, new Evidence: %d %s", i, s, reason)
		}
	}
	// A replica started after the revocation.
	late := f.add()
	if s, reason := f.do(f.client(), len(f.replicas)-1, "PUT", "/config"); s != http.StatusForbidden || reason != postauth.ReasonAttesterRevoked {
		t.Fatalf("late replica: %d %s", s, reason)
	}
	for i, r := range f.replicas {
		if r.calls.Load() != 1 && r != late {
			t.Fatalf("replica %d handler ran %d times", i, r.calls.Load())
		}
	}
	if revs, err := f.replicas[0].store.Revocations(context.Background()); err != nil || len(revs) != 1 || revs[0].Identity != id {
		t.Fatalf("recorded revocations %+v, %v", revs, err)
	}
}

// The agent's posture changes; it attests on replica A only (operation
// mode) and sends no hint. Replica B drops its verdict of the old posture:
// the next request there re-attests (verdict_invalidated).
func TestReplicasPostureInvalidation(t *testing.T) {
	f := newFleet(t, redisAddr(t), 2)
	c := f.client()
	f.do(c, 1, "PUT", "/config")
	if s, _ := f.do(c, 1, "PUT", "/config"); s != 200 || f.attester.Count() != 1 {
		t.Fatalf("replica B cache hit: %d after %d attestations", s, f.attester.Count())
	}
	sp := &spy{}
	f.replicas[1].store.Watch(sp)
	ctx := context.Background()
	if err := f.tracker.SetFlag(ctx, "fips_mode", "off"); err != nil {
		t.Fatal(err)
	}
	head := hexOf(f.tracker.Head())
	if s, _ := f.do(c, 0, "POST", "/pay"); s != 200 {
		t.Fatalf("replica A: %d", s)
	}
	delivered(t, f.replicas[1].store, sp, "posture invalidation on B", func(e middleware.Event) bool {
		return e.Kind == middleware.EventInvalidate && e.Posture == head
	})
	n := f.attester.Count()
	if s, _ := f.do(c, 1, "PUT", "/config"); s != 200 || f.attester.Count() != n+1 {
		t.Fatalf("replica B after the change: %d, %d attestations (want a re-attestation)", s, f.attester.Count()-n)
	}
	if !slices.Contains(f.replicas[1].reasons(), postauth.ReasonVerdictInvalidated) {
		t.Fatalf("replica B reasons %q", f.replicas[1].reasons())
	}
	// Its new verdict (current posture) serves again.
	if s, _ := f.do(c, 1, "PUT", "/config"); s != 200 || f.attester.Count() != n+1 {
		t.Fatalf("replica B, new verdict: %d", s)
	}
}

// A policy denial on replica A (the agent enabled a forbidden tool) makes
// replica B drop the agent's verdict: its next config change there
// re-attests instead of riding on the old verdict.
func TestReplicasDenialInvalidates(t *testing.T) {
	f := newFleet(t, redisAddr(t), 2)
	c := f.client()
	f.do(c, 1, "PUT", "/config")
	sp := &spy{}
	f.replicas[1].store.Watch(sp)
	if err := f.tracker.EnableTool(context.Background(), posture.Tool{Name: "shell", Version: "5", Digest: posture.DigestOf([]byte("sh"))}); err != nil {
		t.Fatal(err)
	}
	if s, reason := f.do(c, 0, "POST", "/pay"); s != http.StatusForbidden || reason != postauth.ReasonPostureDenied {
		t.Fatalf("replica A: %d %s", s, reason)
	}
	delivered(t, f.replicas[1].store, sp, "denial on B", func(e middleware.Event) bool {
		return e.Kind == middleware.EventInvalidate && e.Posture == "" && e.Reason == string(postauth.ReasonPostureDenied)
	})
	n := f.attester.Count()
	f.do(c, 1, "PUT", "/config")
	if f.attester.Count() != n+1 {
		t.Fatal("replica B served the verdict of an agent another replica denied")
	}
}

// A policy document published once reaches every replica: cached verdicts
// it denies are dropped and re-appraised; an older version is refused.
func TestReplicasPolicyChange(t *testing.T) {
	f := newFleet(t, redisAddr(t), 2)
	c := f.client()
	if err := f.tracker.EnableTool(context.Background(), posture.Tool{Name: "shell", Version: "5", Digest: posture.DigestOf([]byte("sh"))}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if s, _ := f.do(c, i, "PUT", "/config"); s != 200 {
			t.Fatalf("replica %d: %d", i, s)
		}
	}
	sp := &spy{}
	f.replicas[1].store.Watch(sp)
	doc, err := middleware.ParsePolicyDocument([]byte(`{"version": 5, "routes": {"PUT /config": {"posture": ` + noShell + `}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.replicas[0].store.Publish(context.Background(), middleware.Event{Kind: middleware.EventPolicy, Policy: doc}); err != nil {
		t.Fatal(err)
	}
	delivered(t, f.replicas[1].store, sp, "policy on B", func(e middleware.Event) bool {
		return e.Kind == middleware.EventPolicy && e.Policy.Version == 5
	})
	waitFor(t, "policy on A", func() bool {
		d, err := f.replicas[0].store.Policy(context.Background())
		return err == nil && d != nil && d.Version == 5
	})
	for i := range 2 {
		waitFor(t, "policy applied", func() bool { s, _ := f.do(c, i, "PUT", "/config"); return s == http.StatusForbidden })
	}
	old := &middleware.PolicyDocument{Version: 4}
	if err := f.replicas[1].store.Publish(context.Background(), middleware.Event{Kind: middleware.EventPolicy, Policy: old}); err == nil {
		t.Fatal("an older policy version was recorded")
	}
}

// A verification rate limit holds across replicas: the peer's burst is
// spent wherever its requests land.
func TestReplicasRateLimit(t *testing.T) {
	f := newFleet(t, redisAddr(t), 3, middleware.WithLimits(middleware.Limits{VerifyPerPeer: middleware.Limit{Rate: 0.001, Burst: 4}}))
	c := f.client()
	ok, limited := 0, 0
	for i := range 9 {
		switch s, reason := f.do(c, i%3, "POST", "/pay"); {
		case s == 200:
			ok++
		case s == http.StatusTooManyRequests && reason == postauth.ReasonRateLimited:
			limited++
		default:
			t.Fatalf("request %d: %d %s", i, s, reason)
		}
	}
	if ok != 4 || limited != 5 {
		t.Fatalf("%d verified, %d limited: want 4 and 5 (one burst for all replicas)", ok, limited)
	}
}

// Decisions reach the audit stream, with identities and timing, never
// Evidence; the stream is capped.
func TestReplicasAudit(t *testing.T) {
	addr := redisAddr(t)
	f := newFleet(t, addr, 1)
	c := f.client()
	f.do(c, 0, "PUT", "/config")
	f.do(c, 0, "PUT", "/config") // cache hit: not audited by default
	st := f.replicas[0].store
	waitFor(t, "audit written", func() bool { return st.Stats().AuditWritten >= 2 })
	rc := newClient(t, addr)
	recs, err := rc.XRange(context.Background(), "reattest:{"+f.ns+"}:audit", "-", "+").Result()
	if err != nil || len(recs) != 2 {
		t.Fatalf("audit stream: %d records, %v", len(recs), err)
	}
	v := recs[1].Values
	if v["outcome"] != "verified" || v["route"] != "PUT /config" || v["key"] != f.keyIdentity().Value ||
		v["posture"] != hexOf(f.tracker.Head()) || v["subject"] == "" || v["verify_us"] == nil {
		t.Fatalf("audit record %v", v)
	}
	for k, val := range v {
		if s, _ := val.(string); len(s) > 200 {
			t.Fatalf("audit field %s is %d bytes: Evidence?", k, len(s))
		}
	}
}

// The ACL of docs/scale-out.md is enough: a Store logged in as a user
// limited to its namespace syncs, records and announces revocations and
// policy, counts rate limits and writes the audit stream; another
// namespace is out of its reach.
func TestACLUserOfTheDocs(t *testing.T) {
	addr := redisAddr(t)
	ns := namespace(t)
	admin := newClient(t, addr)
	ctx := context.Background()
	user := "reattest-" + ns
	// The command of docs/scale-out.md, "Redis ACL".
	acl := []any{"ACL", "SETUSER", user, "reset", "on", ">s3cret", "resetkeys", "~reattest:{" + ns + "}:*",
		"resetchannels", "&reattest:{" + ns + "}:events", "-@all",
		"+hello", "+auth", "+ping", "+subscribe", "+unsubscribe", "+publish",
		"+eval", "+evalsha", "+time", "+zrangebyscore", "+zremrangebyscore", "+zscore", "+zcard", "+zadd", "+zrem",
		"+hget", "+hset", "+hmget", "+pexpire", "+xadd"}
	if err := admin.Do(ctx, acl...).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, Username: user, Password: "s3cret"})
	t.Cleanup(func() { rdb.Close() })
	st, err := redisstate.New(rdb, redisstate.WithNamespace(ns), redisstate.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sp := &spy{}
	st.Watch(sp)
	waitFor(t, "in sync as an ACL user", sp.isSynced)
	id := middleware.Identity{Kind: middleware.IdentityMachine, Value: "0102"}
	for _, e := range []middleware.Event{
		{Kind: middleware.EventRevoke, Identity: id, Until: time.Now().Add(time.Hour)},
		{Kind: middleware.EventInvalidate, Identity: id},
		{Kind: middleware.EventUnrevoke, Identity: id},
		{Kind: middleware.EventPolicy, Policy: &middleware.PolicyDocument{Version: 1}},
	} {
		if err := st.Publish(ctx, e); err != nil {
			t.Fatalf("%s as an ACL user: %v", e.Kind, err)
		}
	}
	delivered(t, st, sp, "own policy", func(e middleware.Event) bool { return e.Kind == middleware.EventPolicy })
	if ok, err := st.Allow(ctx, middleware.Bucket{Key: "verify:global", Limit: middleware.Limit{Rate: 1, Burst: 1}}); err != nil || !ok {
		t.Fatalf("Allow as an ACL user: %v %v", ok, err)
	}
	st.Audit(ctx, middleware.Decision{Route: "r", Outcome: middleware.OutcomeVerified})
	waitFor(t, "audit as an ACL user", func() bool { return st.Stats().AuditWritten == 1 })
	if st.Stats().AuditDropped != 0 {
		t.Fatal("audit dropped")
	}
	if err := rdb.Get(ctx, "reattest:{other}:policy").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("another namespace is reachable: %v", err)
	}
}

// On a real redis-server an idle link stays in sync: the heartbeat PINGs
// on the subscription are answered (RESP3 push or RESP2 pong alike).
func TestHeartbeatAnsweredByRedis(t *testing.T) {
	st := newStore(t, redisAddr(t), namespace(t), redisstate.WithHeartbeat(400*time.Millisecond))
	waitFor(t, "in sync", func() bool { return st.Stats().Synced })
	time.Sleep(2 * time.Second) // five heartbeats (a period long enough for a loaded machine)
	if s := st.Stats(); !s.Synced || s.Syncs != 1 {
		t.Fatalf("idle link: %+v (want in sync since the first sync)", s)
	}
}
