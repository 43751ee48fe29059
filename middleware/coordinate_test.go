package middleware_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reattest/reattest/internal/e2e"
	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

// memCoordinator is an in-memory Coordinator: every Guard watching it is a
// replica; publish delivers synchronously, in order. It also implements
// RateLimiter and Auditor when asked to.
type memCoordinator struct {
	mu        sync.Mutex // guards all; held while delivering, for order
	watchers  map[int]middleware.Watcher
	next      int
	synced    bool
	revoked   map[middleware.Identity]middleware.Event
	policy    *middleware.PolicyDocument
	published []middleware.Event
}

func newMemCoordinator() *memCoordinator {
	return &memCoordinator{watchers: map[int]middleware.Watcher{}, synced: true, revoked: map[middleware.Identity]middleware.Event{}}
}

var _ middleware.Coordinator = (*memCoordinator)(nil)

func (m *memCoordinator) Publish(_ context.Context, e middleware.Event) error {
	if err := e.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced {
		return errors.New("memCoordinator: down")
	}
	m.published = append(m.published, e)
	switch e.Kind {
	case middleware.EventRevoke:
		m.revoked[e.Identity] = e
	case middleware.EventUnrevoke:
		delete(m.revoked, e.Identity)
	case middleware.EventPolicy:
		if m.policy != nil && e.Policy.Version <= m.policy.Version {
			return errors.New("memCoordinator: stale policy version")
		}
		m.policy = e.Policy
	}
	for _, w := range m.watchers {
		w.Apply(e)
	}
	return nil
}

func (m *memCoordinator) Watch(w middleware.Watcher) func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.next
	m.next++
	m.watchers[id] = w
	if m.synced {
		for _, e := range m.revoked {
			w.Apply(e)
		}
		if m.policy != nil {
			w.Apply(middleware.Event{Kind: middleware.EventPolicy, Policy: m.policy})
		}
		w.Synced(true)
	}
	return func() {
		m.mu.Lock()
		delete(m.watchers, id)
		m.mu.Unlock()
	}
}

// setSynced takes the link down or up (up replays the recorded state).
func (m *memCoordinator) setSynced(ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.synced = ok
	for _, w := range m.watchers {
		if ok {
			for _, e := range m.revoked {
				w.Apply(e)
			}
		}
		w.Synced(ok)
	}
}

// events returns the published events of kind.
// waitEvents returns the events of kind once there are at least n (the
// Guard publishes from a background queue), or what there is after 5 s.
// Events arrive in the order they were published, so a later exact count
// also proves that no unexpected event came before.
func (m *memCoordinator) waitEvents(kind middleware.EventKind, n int) []middleware.Event {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := m.events(kind)
		if len(ev) >= n || time.Now().After(deadline) {
			return ev
		}
		time.Sleep(time.Millisecond)
	}
}

func (m *memCoordinator) events(kind middleware.EventKind) []middleware.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []middleware.Event
	for _, e := range m.published {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// limitedCoordinator adds a RateLimiter (counting buckets, or failing).
type limitedCoordinator struct {
	*memCoordinator
	mu    sync.Mutex
	fail  bool
	taken map[string]int
}

func (l *limitedCoordinator) Allow(_ context.Context, buckets ...middleware.Bucket) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail {
		return false, errors.New("limiter down")
	}
	for _, b := range buckets {
		if l.taken[b.Key] >= b.Limit.Burst {
			return false, nil
		}
	}
	for _, b := range buckets {
		l.taken[b.Key]++
	}
	return true, nil
}

// auditingCoordinator adds an Auditor.
type auditingCoordinator struct {
	*memCoordinator
	mu        sync.Mutex
	decisions []middleware.Decision
}

func (a *auditingCoordinator) AuditCacheHits() bool { return true }

func (a *auditingCoordinator) Audit(_ context.Context, d middleware.Decision) {
	a.mu.Lock()
	a.decisions = append(a.decisions, d)
	a.mu.Unlock()
}

// replicaOrigin is the Origin of events "from another replica".
const replicaOrigin = "replica-b"

// coordinatedHarness is a server whose Guard watches co, with the routes
// POST /pay (operation mode), PUT /config (connection mode) and POST /echo
// (operation mode, denies the shell tool); its client's
// agent has a posture (tr) and sends no posture hint, as a runtime that
// does not volunteer its posture: only the coordinator can tell the Guard.
func coordinatedHarness(t *testing.T, co middleware.Coordinator, tr *posture.Tracker, opts ...middleware.Option) (*e2e.Harness, *http.Client) {
	t.Helper()
	var attOpts []softeat.AttesterOption
	if tr != nil {
		attOpts = append(attOpts, softeat.WithPosture(tr))
	}
	noShell, err := posture.ParsePolicy([]byte(noShellPolicy), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithAttester(attOpts...), e2e.WithGuard(
		middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation}),
		middleware.WithRoute("PUT /config", middleware.Route{MaxAge: time.Minute}),
		middleware.WithRoute("POST /echo", middleware.Route{Mode: middleware.ModeOperation, Posture: noShell}),
		middleware.WithCoordinator(co)), e2e.WithGuard(opts...))
	t.Cleanup(func() { h.Guard.Close() })
	c, _ := h.Client()
	return h, c
}

// keyIdentity is the key identity of the harness client's TLS key (the
// authenticator key), SHA-256 form (the suites Go picks by default).
func keyIdentity(t *testing.T, h *e2e.Harness) middleware.Identity {
	t.Helper()
	leaf, err := x509.ParseCertificate(h.ClientCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return middleware.KeyIdentities(leaf.RawSubjectPublicKeyInfo)[0]
}

func problemReason(t *testing.T, body string) postauth.Reason {
	t.Helper()
	var p middleware.Problem
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	return p.Reason
}

// A revocation from another replica drops the cached verdict (403 at once,
// no new attestation asked) and refuses new Evidence of the attester, on
// every route and new connection, until it expires.
func TestRevocationDropsVerdictAndRefusesEvidence(t *testing.T) {
	co := newMemCoordinator()
	h, c := coordinatedHarness(t, co, nil)
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=1"); s != 200 {
		t.Fatalf("first request: %d", s)
	}
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=2"); s != 200 || h.Attester.Count() != 1 {
		t.Fatalf("cache hit: %d after %d attestations", s, h.Attester.Count())
	}
	id := keyIdentity(t, h)
	if err := co.Publish(context.Background(), middleware.Event{Kind: middleware.EventRevoke, Identity: id,
		Until: h.Clock.Now().Add(time.Hour), Origin: replicaOrigin, Reason: "compromised"}); err != nil {
		t.Fatal(err)
	}
	s, body, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=3")
	if s != http.StatusForbidden || problemReason(t, body) != postauth.ReasonAttesterRevoked {
		t.Fatalf("cached verdict of a revoked attester: %d %s", s, body)
	}
	if h.Attester.Count() != 1 {
		t.Fatalf("the revoked verdict was re-attested (%d attestations): it must be refused as revoked", h.Attester.Count())
	}
	// Fresh Evidence, on another route and on a new connection.
	s, body, _ = e2e.Do(t, c, "POST", h.URL("/pay"), "amount=1")
	if s != http.StatusForbidden || problemReason(t, body) != postauth.ReasonAttesterRevoked {
		t.Fatalf("new Evidence of a revoked attester: %d %s", s, body)
	}
	c2, _ := h.Client()
	if s, _, _ := e2e.Do(t, c2, "PUT", h.URL("/config"), "v=4"); s != http.StatusForbidden {
		t.Fatalf("new connection of a revoked attester: %d", s)
	}
	if h.Calls("/config") != 2 || h.Calls("/pay") != 0 {
		t.Fatalf("handlers ran %d/%d times", h.Calls("/config"), h.Calls("/pay"))
	}
	// The revocation expires.
	h.Clock.Advance(time.Hour + time.Second)
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=5"); s != 200 {
		t.Fatalf("after the revocation expired: %d", s)
	}
}

// A second, shorter revocation of the same identity does not shorten the
// first.
func TestRevocationKeepsLaterExpiry(t *testing.T) {
	co := newMemCoordinator()
	h, c := coordinatedHarness(t, co, nil)
	id := keyIdentity(t, h)
	for _, d := range []time.Duration{2 * time.Hour, time.Minute} {
		if err := co.Publish(context.Background(), middleware.Event{Kind: middleware.EventRevoke, Identity: id, Until: h.Clock.Now().Add(d), Origin: replicaOrigin}); err != nil {
			t.Fatal(err)
		}
	}
	h.Clock.Advance(10 * time.Minute)
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != http.StatusForbidden {
		t.Fatalf("10 minutes into a 2-hour revocation: %d", s)
	}
}

// Every identity a Result exposes can be revoked: key, machine, posture
// digest, subject, attestation key (the SHA-384 form of the key matches SHA-384 suites
// only); an unrevoke lifts it.
func TestRevocationByEachIdentity(t *testing.T) {
	tr := agentTracker(t)
	co := newMemCoordinator()
	var mu sync.Mutex
	var att middleware.Attester
	h, c := coordinatedHarness(t, co, tr, middleware.WithObserver(func(_ context.Context, d middleware.Decision) {
		if d.Outcome == middleware.OutcomeVerified {
			mu.Lock()
			att = d.Attester
			mu.Unlock()
		}
	}))
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 {
		t.Fatal(s)
	}
	mu.Lock()
	a := att
	mu.Unlock()
	kid, err := softeat.KeyID(h.AttKey.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyHash != keyIdentity(t, h).Value || a.MachineID == "" || a.Posture != hexOf(tr.Head()) || a.Subject == "" || a.AttestationKeyID != hexOf(kid) {
		t.Fatalf("attester %+v (key identity %s)", a, keyIdentity(t, h).Value)
	}
	leaf, _ := x509.ParseCertificate(h.ClientCert.Certificate[0])
	for _, tc := range []struct {
		id   middleware.Identity
		want int
	}{
		{keyIdentity(t, h), http.StatusForbidden},
		{middleware.KeyIdentities(leaf.RawSubjectPublicKeyInfo)[1], http.StatusOK},
		{middleware.Identity{Kind: middleware.IdentityMachine, Value: a.MachineID}, http.StatusForbidden},
		{middleware.Identity{Kind: middleware.IdentityPosture, Value: a.Posture}, http.StatusForbidden},
		{middleware.Identity{Kind: middleware.IdentitySubject, Value: a.Subject}, http.StatusForbidden},
		{middleware.Identity{Kind: middleware.IdentityAttestationKey, Value: a.AttestationKeyID}, http.StatusForbidden},
		{middleware.Identity{Kind: middleware.IdentityAttestationKey, Value: strings.Repeat("00", 16)}, http.StatusOK},
	} {
		ctx := context.Background()
		if err := co.Publish(ctx, middleware.Event{Kind: middleware.EventRevoke, Identity: tc.id, Until: h.Clock.Now().Add(time.Hour), Origin: replicaOrigin}); err != nil {
			t.Fatal(err)
		}
		// Cached verdict, then fresh Evidence on a new connection.
		c2, _ := h.Client()
		for _, cl := range []*http.Client{c, c2} {
			if s, _, _ := e2e.Do(t, cl, "PUT", h.URL("/config"), ""); s != tc.want {
				t.Fatalf("revoked %s: %d, want %d", tc.id, s, tc.want)
			}
		}
		if err := co.Publish(ctx, middleware.Event{Kind: middleware.EventUnrevoke, Identity: tc.id, Origin: replicaOrigin}); err != nil {
			t.Fatal(err)
		}
		if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 {
			t.Fatalf("after unrevoking %s: %d", tc.id, s)
		}
	}
}

// An invalidation from another replica drops the attester's cached verdict
// (its next request re-attests, 401 verdict_invalidated); one that keeps
// the attester's current posture keeps it.
func TestInvalidationFromAnotherReplica(t *testing.T) {
	tr := agentTracker(t)
	co := newMemCoordinator()
	var reasons []postauth.Reason
	var mu sync.Mutex
	h, c := coordinatedHarness(t, co, tr, middleware.WithObserver(func(_ context.Context, d middleware.Decision) {
		mu.Lock()
		reasons = append(reasons, d.Reason)
		mu.Unlock()
	}))
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 {
		t.Fatal(s)
	}
	id := keyIdentity(t, h)
	head := hexOf(tr.Head())
	// Same posture kept: the verdict stays.
	co.Publish(context.Background(), middleware.Event{Kind: middleware.EventInvalidate, Identity: id, Posture: head, Origin: replicaOrigin})
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 || h.Attester.Count() != 1 {
		t.Fatalf("invalidation keeping the current posture: %d after %d attestations", s, h.Attester.Count())
	}
	// Another posture kept (the attester moved on elsewhere): dropped.
	other := strings.Repeat("ab", 32)
	co.Publish(context.Background(), middleware.Event{Kind: middleware.EventInvalidate, Identity: id, Posture: other, Origin: replicaOrigin})
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 || h.Attester.Count() != 2 {
		t.Fatalf("invalidation keeping another posture: %d after %d attestations, want a re-attestation", s, h.Attester.Count())
	}
	// Drop all (a denial elsewhere).
	co.Publish(context.Background(), middleware.Event{Kind: middleware.EventInvalidate, Identity: id, Origin: replicaOrigin, Reason: "posture_denied"})
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 || h.Attester.Count() != 3 {
		t.Fatalf("invalidation of all verdicts: %d after %d attestations, want a re-attestation", s, h.Attester.Count())
	}
	mu.Lock()
	defer mu.Unlock()
	if n := countReason(reasons, postauth.ReasonVerdictInvalidated); n != 2 {
		t.Fatalf("observed reasons %q: want verdict_invalidated twice", reasons)
	}
}

func countReason(rs []postauth.Reason, r postauth.Reason) int {
	n := 0
	for _, x := range rs {
		if x == r {
			n++
		}
	}
	return n
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

// A replica that verifies an attester tells the others its current
// posture, again when it changes; a denial tells them to drop all its
// verdicts, and drops the attester's verdicts on this replica's other
// connections too.
func TestVerificationsAndDenialsArePublished(t *testing.T) {
	tr := agentTracker(t)
	co := newMemCoordinator()
	h, c := coordinatedHarness(t, co, tr)
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 {
		t.Fatal(s)
	}
	id := keyIdentity(t, h)
	inv := co.waitEvents(middleware.EventInvalidate, 1)
	if len(inv) != 1 || inv[0].Identity != id || inv[0].Posture != hexOf(tr.Head()) || inv[0].Origin == "" {
		t.Fatalf("after the first verification: %+v", inv)
	}
	// Same posture again (operation mode): nothing new to tell (the exact
	// count after the posture change below proves it).
	if s, _, _ := e2e.Do(t, c, "POST", h.URL("/pay"), "a=1"); s != 200 {
		t.Fatalf("same posture: %d", s)
	}
	// The posture changes (no hint: the Guard learns it from Evidence).
	shell := posture.Tool{Name: "shell", Version: "5.2", Digest: posture.DigestOf([]byte("/bin/sh"))}
	if err := tr.EnableTool(context.Background(), shell); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := e2e.Do(t, c, "POST", h.URL("/pay"), "a=2"); s != 200 {
		t.Fatal(s)
	}
	inv = co.waitEvents(middleware.EventInvalidate, 2)
	if len(inv) != 2 || inv[1].Posture != hexOf(tr.Head()) {
		t.Fatalf("after a posture change: %+v", inv)
	}
	// A second connection of the agent holds a verdict for /config.
	c2, _ := h.Client()
	if s, _, _ := e2e.Do(t, c2, "PUT", h.URL("/config"), ""); s != 200 {
		t.Fatal(s)
	}
	n := h.Attester.Count()
	// A denial (POST /echo denies shell).
	if s, _, _ := e2e.Do(t, c, "POST", h.URL("/echo"), "x"); s != http.StatusForbidden {
		t.Fatalf("denied route: %d", s)
	}
	inv = co.waitEvents(middleware.EventInvalidate, 3)
	if len(inv) != 3 {
		t.Fatalf("after a denial: %+v, want 3 events", inv)
	}
	last := inv[2]
	if last.Posture != "" || last.Identity != id || last.Reason != string(postauth.ReasonPostureDenied) {
		t.Fatalf("after a denial: %+v", last)
	}
	// The other connection's verdict was dropped here too.
	if s, _, _ := e2e.Do(t, c2, "PUT", h.URL("/config"), ""); s != 200 || h.Attester.Count() != n+2 {
		t.Fatalf("other connection after the denial: %d, %d attestations (want %d)", s, h.Attester.Count(), n+2)
	}
}

// A policy document reaches the Guard: cached verdicts it denies are
// dropped, new Evidence must pass it too, and an older version never
// replaces a newer one.
func TestPolicyDocumentAppliedNeverRolledBack(t *testing.T) {
	tr := agentTracker(t)
	shell := posture.Tool{Name: "shell", Version: "5.2", Digest: posture.DigestOf([]byte("/bin/sh"))}
	if err := tr.EnableTool(context.Background(), shell); err != nil {
		t.Fatal(err)
	}
	co := newMemCoordinator()
	h, c := coordinatedHarness(t, co, tr)
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 {
		t.Fatal(s)
	}
	deny, err := middleware.ParsePolicyDocument([]byte(`{"version": 2, "routes": {"PUT /config": {"posture": {"tools": {"deny": ["shell"]}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := co.Publish(context.Background(), middleware.Event{Kind: middleware.EventPolicy, Policy: deny}); err != nil {
		t.Fatal(err)
	}
	s, body, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "")
	if s != http.StatusForbidden || !strings.Contains(body, "tool:shell forbidden") {
		t.Fatalf("cached verdict under a denying document: %d %s", s, body)
	}
	if h.Attester.Count() != 2 {
		t.Fatalf("%d attestations: the dropped verdict must be re-attested once", h.Attester.Count())
	}
	// An older document (as a stale replay) is not applied.
	old := &middleware.PolicyDocument{Version: 1}
	co.mu.Lock()
	for _, w := range co.watchers {
		w.Apply(middleware.Event{Kind: middleware.EventPolicy, Policy: old})
	}
	co.mu.Unlock()
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != http.StatusForbidden {
		t.Fatalf("after an older document: %d", s)
	}
	allow := &middleware.PolicyDocument{Version: 3}
	if err := co.Publish(context.Background(), middleware.Event{Kind: middleware.EventPolicy, Policy: allow}); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 {
		t.Fatalf("after a newer document allowing it: %d", s)
	}
}

// While the coordinator is out of sync (re-attest mode, the default), no
// cached verdict serves: every request re-attests. When it is back,
// verdicts cached before are dropped once (events may have been missed).
func TestOutOfSyncReattests(t *testing.T) {
	co := newMemCoordinator()
	h, c := coordinatedHarness(t, co, nil)
	e2e.Do(t, c, "PUT", h.URL("/config"), "")
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 || h.Attester.Count() != 1 || !h.Guard.Synced() {
		t.Fatalf("in sync: %d after %d attestations", s, h.Attester.Count())
	}
	co.setSynced(false)
	if h.Guard.Synced() {
		t.Fatal("Guard.Synced true while the coordinator is down")
	}
	for i := range 3 {
		if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 || h.Attester.Count() != int64(2+i) {
			t.Fatalf("out of sync, request %d: %d after %d attestations (want a re-attestation each)", i, s, h.Attester.Count())
		}
	}
	if a := h.FindActivity(transports.ActivityChallenged, postauth.ReasonAttestationStale); a == nil {
		t.Fatal("no attestation_stale challenge seen")
	}
	co.setSynced(true)
	// The verdict made while out of sync is dropped once, then served.
	e2e.Do(t, c, "PUT", h.URL("/config"), "")
	e2e.Do(t, c, "PUT", h.URL("/config"), "")
	if h.Attester.Count() != 5 {
		t.Fatalf("after resync: %d attestations, want 5 (one re-attestation, then a cache hit)", h.Attester.Count())
	}
}

// A verdict cached before an outage is not served after it: an
// invalidation may have been missed meanwhile.
func TestResyncDropsVerdictsCachedBefore(t *testing.T) {
	co := newMemCoordinator()
	h, c := coordinatedHarness(t, co, nil)
	e2e.Do(t, c, "PUT", h.URL("/config"), "")
	co.setSynced(false)
	co.setSynced(true)
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != 200 || h.Attester.Count() != 2 {
		t.Fatalf("after an outage: %d after %d attestations, want a re-attestation", s, h.Attester.Count())
	}
}

// In deny mode, nothing high-impact runs while the coordinator is out of
// sync (503 coordinator_unavailable with Retry-After), neither on a cached
// verdict nor with fresh Evidence; it resumes when the link is back.
func TestOutOfSyncDenies(t *testing.T) {
	co := newMemCoordinator()
	h, c := coordinatedHarness(t, co, nil, middleware.WithCoordinatorDown(middleware.CoordinatorDownDeny))
	e2e.Do(t, c, "PUT", h.URL("/config"), "")
	co.setSynced(false)
	for _, r := range []struct{ method, path string }{{"PUT", "/config"}, {"POST", "/pay"}} {
		s, body, hdr := e2e.Do(t, c, r.method, h.URL(r.path), "x")
		if s != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || problemReason(t, body) != postauth.ReasonCoordinatorUnavailable {
			t.Fatalf("%s %s out of sync: %d %s", r.method, r.path, s, body)
		}
	}
	if h.Calls("/config") != 1 || h.Calls("/pay") != 0 {
		t.Fatal("a handler ran while the coordinator was out of sync")
	}
	co.setSynced(true)
	if s, _, _ := e2e.Do(t, c, "POST", h.URL("/pay"), "x"); s != 200 {
		t.Fatalf("back in sync: %d", s)
	}
}

// A coordinator that never syncs: the Guard never serves a cached verdict,
// and after Close it trusts none either.
func TestNeverSyncedAndClose(t *testing.T) {
	co := newMemCoordinator()
	co.synced = false
	h, c := coordinatedHarness(t, co, nil)
	for range 2 {
		e2e.Do(t, c, "PUT", h.URL("/config"), "")
	}
	if h.Attester.Count() != 2 || h.Guard.Synced() {
		t.Fatalf("never synced: %d attestations for 2 requests", h.Attester.Count())
	}
	co2 := newMemCoordinator()
	h2, c2 := coordinatedHarness(t, co2, nil)
	e2e.Do(t, c2, "PUT", h2.URL("/config"), "")
	h2.Guard.Close()
	if len(co2.watchers) != 0 || h2.Guard.Synced() {
		t.Fatal("Close did not stop watching")
	}
	e2e.Do(t, c2, "PUT", h2.URL("/config"), "")
	if h2.Attester.Count() != 2 {
		t.Fatal("a closed Guard served a cached verdict")
	}
}

// Guard.Revoke applies at once on this replica and publishes for the
// others; without a coordinator it fails.
func TestGuardRevoke(t *testing.T) {
	co := newMemCoordinator()
	h, c := coordinatedHarness(t, co, nil)
	e2e.Do(t, c, "PUT", h.URL("/config"), "")
	id := keyIdentity(t, h)
	if err := h.Guard.Revoke(context.Background(), id, h.Clock.Now().Add(time.Minute), "test"); err != nil {
		t.Fatal(err)
	}
	if ev := co.events(middleware.EventRevoke); len(ev) != 1 || ev[0].Identity != id || ev[0].Origin == "" {
		t.Fatalf("published %+v", ev)
	}
	if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), ""); s != http.StatusForbidden {
		t.Fatalf("after Revoke: %d", s)
	}
	if err := h.Guard.Revoke(context.Background(), middleware.Identity{Kind: "nope", Value: "x"}, time.Now(), ""); err == nil {
		t.Fatal("invalid identity accepted")
	}
	plain := e2e.New(t)
	if err := plain.Guard.Revoke(context.Background(), id, time.Now().Add(time.Minute), ""); err == nil {
		t.Fatal("Revoke without a coordinator succeeded")
	}
}

// Verifications are rate limited per peer: over the limit, 429 with
// Retry-After and nothing verified. The limit is shared through the
// coordinator's RateLimiter, and counted locally when it fails.
func TestVerifyRateLimit(t *testing.T) {
	limits := middleware.WithLimits(middleware.Limits{VerifyPerPeer: middleware.Limit{Rate: 0.001, Burst: 2}})
	for _, tc := range []struct {
		name string
		fail bool
	}{{"shared", false}, {"local fallback", true}} {
		t.Run(tc.name, func(t *testing.T) {
			co := &limitedCoordinator{memCoordinator: newMemCoordinator(), fail: tc.fail, taken: map[string]int{}}
			h, c := coordinatedHarness(t, co, nil, limits)
			for i := range 2 {
				if s, _, _ := e2e.Do(t, c, "POST", h.URL("/pay"), "a"); s != 200 {
					t.Fatalf("verification %d: %d", i, s)
				}
			}
			s, body, hdr := e2e.Do(t, c, "POST", h.URL("/pay"), "a")
			if s != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || problemReason(t, body) != postauth.ReasonRateLimited {
				t.Fatalf("third verification: %d %s", s, body)
			}
			if h.Calls("/pay") != 2 {
				t.Fatalf("handler ran %d times", h.Calls("/pay"))
			}
			co.mu.Lock()
			n := len(co.taken)
			co.mu.Unlock()
			if (n == 0) != tc.fail {
				t.Fatalf("shared buckets used: %d", n)
			}
		})
	}
}

// Server attestations are limited per peer by the shared limits too.
func TestServerAttestSharedLimit(t *testing.T) {
	serverKey := postauthtest.NewKey(t)
	co := &limitedCoordinator{memCoordinator: newMemCoordinator(), taken: map[string]int{}}
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(e2e.StandardRoutes()...), e2e.WithGuard(middleware.WithCoordinator(co),
		middleware.WithLimits(middleware.Limits{ServerAttestPerPeer: middleware.Limit{Rate: 0.001, Burst: 2}})),
		e2e.WithGuardFunc(func(h *e2e.Harness) middleware.Option {
			opt, _ := serverAttestation(t, h, serverKey)
			return opt
		}))
	t.Cleanup(func() { h.Guard.Close() })
	answered := 0
	for range 2 { // connections: the per-connection limit (burst 5) is not the one hit
		rc := h.Raw()
		reqr, err := postauthtest.RelyingParty(t, h.Verifier).NewRequester(rc.Channel, postauth.RoleServer)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			areq, _ := reqr.NewRequest(nil)
			b, _ := areq.Marshal()
			resp := rc.Send("GET", middleware.WellKnownPath, "", map[string]string{middleware.HeaderAttestationRequest: httpbind.EncodeBytes(b)})
			if resp.Header.Get(middleware.HeaderAttestation) != "" {
				answered++
			}
		}
	}
	if answered != 2 {
		t.Fatalf("server answered %d attestation requests of one peer, want 2 (its shared burst)", answered)
	}
}

// A coordinator that audits gets every decision with the attester's
// identities and never Evidence.
func TestAuditDecisions(t *testing.T) {
	co := &auditingCoordinator{memCoordinator: newMemCoordinator()}
	tr := agentTracker(t)
	h, c := coordinatedHarness(t, co, tr)
	e2e.Do(t, c, "PUT", h.URL("/config"), "")
	e2e.Do(t, c, "PUT", h.URL("/config"), "")
	co.mu.Lock()
	defer co.mu.Unlock()
	var outcomes []middleware.Outcome
	for _, d := range co.decisions {
		outcomes = append(outcomes, d.Outcome)
	}
	if !slices.Equal(outcomes, []middleware.Outcome{middleware.OutcomeChallenged, middleware.OutcomeVerified, middleware.OutcomeCacheHit}) {
		t.Fatalf("audited outcomes %q", outcomes)
	}
	for _, d := range co.decisions[1:] {
		if d.Attester.KeyHash != keyIdentity(t, h).Value || d.Attester.Posture != hexOf(tr.Head()) || d.Route != "PUT /config" {
			t.Fatalf("decision %+v", d)
		}
	}
	if co.decisions[1].VerifyDuration <= 0 {
		t.Fatal("no verification timing")
	}
}

func TestPolicyDocumentParse(t *testing.T) {
	good := `{"version": 7, "routes": {"PUT /v1/config": {"posture": {"tools": {"deny": ["shell"]}}}, "POST /pay": {}}}`
	d, err := middleware.ParsePolicyDocument([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 7 || d.Routes["PUT /v1/config"].Posture == nil || d.Routes["POST /pay"].Posture != nil {
		t.Fatalf("parsed %+v", d)
	}
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := middleware.ParsePolicyDocument(b)
	if err != nil || d2.Version != 7 || !slices.Equal(d2.Routes["PUT /v1/config"].Posture.Tools.Deny, []string{"shell"}) {
		t.Fatalf("round trip: %v %+v", err, d2)
	}
	for _, bad := range []string{
		`{"version": 0}`,
		`{"version": 9007199254740992}`,
		`{"version": 1, "extra": true}`,
		`{"version": 1, "routes": {"r": {"posture": {"tools": {"nope": 1}}}}}`,
		`{"version": 1, "routes": {"r": {"posture": {"tools": {"deny": ["a"], "deny": ["b"]}}}}}`,
		`{"version": 1, "routes": {"": {}}}`,
		`{"version": 1} {}`,
		`[]`,
		// One reading only: a second key for a route (the first policy
		// would be dropped silently), for the version, or for "routes"
		// spelled in another case (encoding/json would merge them).
		`{"version": 1, "routes": {"PUT /v1/config": {"posture": {"tools": {"deny": ["shell"]}}}, "PUT /v1/config": {}}}`,
		`{"version": 1, "version": 2}`,
		`{"version": 1, "routes": {}, "Routes": {"r": {}}}`,
		strings.Repeat(" ", middleware.MaxPolicyDocumentLen+1),
	} {
		if _, err := middleware.ParsePolicyDocument([]byte(bad)); err == nil {
			t.Errorf("accepted %.60q", bad)
		}
	}
}

func FuzzParsePolicyDocument(f *testing.F) {
	f.Add([]byte(`{"version": 7, "routes": {"PUT /v1/config": {"posture": {"tools": {"deny": ["shell"]}}}}}`))
	f.Add([]byte(`{"version": 1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := middleware.ParsePolicyDocument(data)
		if err != nil {
			return
		}
		b, err := d.Marshal()
		if err != nil {
			t.Fatalf("a parsed document does not marshal: %v", err)
		}
		d2, err := middleware.ParsePolicyDocument(b)
		if err != nil || d2.Version != d.Version || len(d2.Routes) != len(d.Routes) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func TestIdentity(t *testing.T) {
	for _, s := range []string{"key:" + strings.Repeat("AB", 32), "machine:0102", "posture:" + strings.Repeat("00", 48), "subject:CN=agent", "kid:" + strings.Repeat("0F", 16)} {
		id, err := middleware.ParseIdentity(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if id.String() != strings.ToLower(s[:strings.IndexByte(s, ':')])+":"+id.Value || (id.Kind != middleware.IdentitySubject && id.Value != strings.ToLower(id.Value)) {
			t.Fatalf("%s parsed as %s", s, id)
		}
	}
	for _, s := range []string{"", "key", "key:", "key:abc", "key:zz", "bad:00", "subject:a\nb", "machine:" + strings.Repeat("00", 257), "kid:0g"} {
		if _, err := middleware.ParseIdentity(s); err == nil {
			t.Errorf("accepted %.40q", s)
		}
	}
	if (middleware.Event{Kind: middleware.EventRevoke, Identity: middleware.Identity{Kind: middleware.IdentityMachine, Value: "00"}}).Validate() == nil {
		t.Error("a revocation without expiry is valid")
	}
}
