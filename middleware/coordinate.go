package middleware

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/reattest/reattest/postauth"
)

// Coordinator links the Guards of the replicas of one service, so that
// what one replica learns reaches all of them: revocations, invalidated
// verdicts and policy documents (package middleware/redisstate implements
// it over Redis). Verdicts stay per connection, in each replica; the Guard
// keeps a local view of the shared state that the Coordinator updates, so
// that a cached verdict is served without any I/O.
//
// A Coordinator may also implement [RateLimiter] (shared [WithLimits]) and
// [Auditor] (an audit trail of decisions).
type Coordinator interface {
	// Publish shares e with every replica. A revocation, the lifting of one
	// and a policy document are also recorded, so that a replica that
	// connects later, or reconnects, learns them; an invalidation is only
	// broadcast.
	Publish(ctx context.Context, e Event) error
	// Watch delivers to w the recorded state (every live revocation, the
	// current policy document), then every event any replica publishes,
	// in order, and tells w whether it is in sync, until stop is called.
	// It does not wait for the network: w learns when it is in sync.
	Watch(w Watcher) (stop func())
}

// Watcher receives what a [Coordinator] learns. A Guard's is the one it
// gives its Coordinator; its methods are quick and never block on I/O.
type Watcher interface {
	// Apply applies one event.
	Apply(e Event)
	// Synced reports whether the Coordinator is in sync: true once the
	// recorded state has been delivered and events flow, false as soon as
	// the link fails or may have missed an event. A Guard trusts no cached
	// verdict while it is false (see [WithCoordinatorDown]); when it turns
	// true again, verdicts cached before are dropped, since events may
	// have been missed meanwhile.
	Synced(ok bool)
}

// Auditor records the decisions of a Guard, for example in a stream that
// a SIEM consumes. A [Coordinator] that implements it gets the decisions
// on high-impact routes (as [WithObserver] does, with the identities of
// the attester; never Evidence).
type Auditor interface {
	// Audit records d. It must not block: it runs on the request's
	// goroutine.
	Audit(ctx context.Context, d Decision)
	// AuditCacheHits reports whether requests served on a cached verdict
	// are audited too (one record per request). The Guard asks once, when
	// it is created; if false, cache hits cost the Auditor nothing.
	AuditCacheHits() bool
}

// EventKind is what an [Event] tells the replicas.
type EventKind uint8

// Event kinds.
const (
	// EventRevoke revokes Identity until Until: every replica drops the
	// verdicts that match it and refuses Evidence that matches it (403
	// attester_revoked) until then. A verdict dropped stays dropped.
	EventRevoke EventKind = iota + 1
	// EventUnrevoke lifts the revocation of Identity before it expires.
	EventUnrevoke
	// EventInvalidate drops the verdicts of Identity cached before the
	// event, except, if Posture is set, those whose posture digest is
	// Posture (the attester's current one): its next high-impact request
	// on any replica re-attests (401 verdict_invalidated).
	EventInvalidate
	// EventPolicy carries a new [PolicyDocument], applied if its version is
	// newer than the replica's.
	EventPolicy
)

func (k EventKind) String() string {
	switch k {
	case EventRevoke:
		return "revoke"
	case EventUnrevoke:
		return "unrevoke"
	case EventInvalidate:
		return "invalidate"
	case EventPolicy:
		return "policy"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// MaxEventReason bounds [Event.Reason].
const MaxEventReason = 256

// Event is what one replica (or an operator) tells the others.
type Event struct {
	Kind EventKind
	// Identity is the attester a revocation or an invalidation names.
	Identity Identity
	// Until is when a revocation expires.
	Until time.Time
	// Posture, for an invalidation, is the posture digest (lower case hex)
	// whose verdicts are kept: the attester's current posture.
	Posture string
	// Policy is the document of an EventPolicy.
	Policy *PolicyDocument
	// Origin names the replica that published the event ("" for an
	// operator). A Guard applies its own events when it publishes them and
	// ignores them when they come back.
	Origin string
	// Reason says why, for logs and audit: a reason token
	// ("posture_changed", "posture_denied") or an operator's note. At most
	// MaxEventReason bytes; never Evidence.
	Reason string
}

// Validate checks that e is well formed for its kind.
func (e Event) Validate() error {
	if len(e.Reason) > MaxEventReason || !utf8.ValidString(e.Reason) || len(e.Origin) > 64 {
		return errors.New("middleware: event reason or origin too long, or not UTF-8")
	}
	switch e.Kind {
	case EventRevoke:
		if e.Until.IsZero() {
			return errors.New("middleware: a revocation needs an expiry (Until)")
		}
		return e.Identity.Validate()
	case EventUnrevoke:
		return e.Identity.Validate()
	case EventInvalidate:
		if e.Posture != "" {
			if err := (Identity{IdentityPosture, e.Posture}).Validate(); err != nil {
				return err
			}
		}
		return e.Identity.Validate()
	case EventPolicy:
		return e.Policy.Validate()
	}
	return fmt.Errorf("middleware: unknown event kind %d", e.Kind)
}

// CoordinatorDown is what a Guard does while its [Coordinator] is out of
// sync (unreachable, reconnecting, or not yet synchronised at start). In
// every case no cached verdict is served: it might have been revoked.
type CoordinatorDown uint8

const (
	// CoordinatorDownReattest (the default): every high-impact request
	// re-attests, as in operation mode (a cached verdict gets 401
	// verdict_unconfirmed with a new challenge). Revocations known before
	// the outage still apply; revocations issued elsewhere during it are
	// learned only when the link is back.
	CoordinatorDownReattest CoordinatorDown = iota
	// CoordinatorDownDeny: every high-impact request gets 503
	// coordinator_unavailable with Retry-After until the link is back.
	CoordinatorDownDeny
)

// WithCoordinator links the Guard with the other replicas of the service
// through c (see [Coordinator]; package middleware/redisstate). The Guard
// starts out of sync: until c has delivered its recorded state, it behaves
// as [WithCoordinatorDown] says. Call [Guard.Close] to unlink it. Nil
// means none (default).
func WithCoordinator(c Coordinator) Option {
	return optionFunc(func(cfg *config) {
		if c != nil {
			cfg.coordinator = c
		}
	})
}

// WithCoordinatorDown sets what the Guard does while its Coordinator is
// out of sync. Default: CoordinatorDownReattest.
func WithCoordinatorDown(m CoordinatorDown) Option {
	return optionFunc(func(cfg *config) { cfg.coordinatorDown = m })
}

// Revoke revokes the attester identity id on every replica until until
// (an operator's call, or the application's when it learns an agent is
// compromised). This replica applies it at once; the others when the
// Coordinator delivers it. It fails without a Coordinator, or if the
// Coordinator could not record it (this replica still applies it).
func (g *Guard) Revoke(ctx context.Context, id Identity, until time.Time, reason string) error {
	if g.co == nil {
		return errors.New("middleware: Revoke needs a Coordinator (WithCoordinator)")
	}
	e := Event{Kind: EventRevoke, Identity: id, Until: until, Reason: reason, Origin: g.co.origin}
	if err := e.Validate(); err != nil {
		return err
	}
	g.co.apply(e)
	return g.co.c.Publish(ctx, e)
}

// Synced reports whether the Guard's Coordinator is in sync (true without
// a Coordinator): a readiness probe may use it.
func (g *Guard) Synced() bool { return g.co == nil || g.co.synced.Load() }

// Close unlinks the Guard from its Coordinator and stops its background
// publishing; the Guard then trusts no cached verdict. It does not close
// the Coordinator. Without a Coordinator it does nothing.
func (g *Guard) Close() error {
	if g.co != nil {
		g.co.close()
	}
	return nil
}

// Bounds of a Guard's view of the shared state.
const (
	maxInvalidations = 100_000
	maxPostureHeads  = 100_000
	publishQueue     = 256
	pruneEvery       = time.Minute
)

// coordination is a Guard's local view of the state its Coordinator
// shares: the hot path reads it without I/O.
type coordination struct {
	g       *Guard
	c       Coordinator
	limiter RateLimiter
	audit   Auditor
	hits    bool // audit cache hits too
	origin  string
	deny    bool
	now     func() time.Time
	log     *slog.Logger
	timeout time.Duration

	synced atomic.Bool
	// epoch moves on every change of the state below; a cached verdict
	// checked at the current epoch needs no new check.
	epoch  atomic.Uint64
	policy atomic.Pointer[PolicyDocument]

	mu sync.RWMutex // guards the fields below
	// floor: verdicts whose verification started before it are dropped
	// (set when the link comes back, and when invalid overflows).
	floor   uint64
	revoked map[Identity]time.Time
	invalid map[Identity]invalidation
	// heads is the last posture digest this replica verified or heard of,
	// per key identity value.
	heads  map[string]string
	pruned time.Time
	closed bool

	queue    chan Event
	dropLog  atomic.Int64 // Unix ns of the last log of a kind (logAllowed)
	failLog  atomic.Int64
	stopOnce sync.Once
	done     chan struct{}
	stop     func()
}

// invalidation drops the verdicts of an identity born before all, and
// those born before keepEpoch whose posture is not keep.
type invalidation struct {
	all       uint64
	keep      string
	keepEpoch uint64
	at        time.Time
}

// verdictState is what the coordination knows of a cached verdict.
type verdictState struct {
	att Attester
	ids []Identity
	// born is the epoch when its verification started; checked the epoch
	// of its last check; policy the version of the policy document it
	// passed.
	born, checked, policy uint64
}

func (c *cachedResult) attester() *Attester {
	if c.shared == nil {
		return nil
	}
	return &c.shared.att
}

// startCoordination links g with its Coordinator, if it has one.
func (g *Guard) startCoordination() {
	cfg := &g.cfg
	var shared RateLimiter
	if cfg.coordinator != nil {
		var id [8]byte
		rand.Read(id[:])
		co := &coordination{
			g: g, c: cfg.coordinator, origin: hex.EncodeToString(id[:]),
			deny: cfg.coordinatorDown == CoordinatorDownDeny, now: cfg.now, log: cfg.log,
			timeout: cfg.verifyTimeout,
			revoked: make(map[Identity]time.Time), invalid: make(map[Identity]invalidation),
			heads: make(map[string]string), queue: make(chan Event, publishQueue), done: make(chan struct{}),
		}
		co.limiter, _ = cfg.coordinator.(RateLimiter)
		if co.audit, _ = cfg.coordinator.(Auditor); co.audit != nil {
			co.hits = co.audit.AuditCacheHits()
		}
		shared = co.limiter
		g.co = co
		go co.publisher()
		co.stop = co.c.Watch(co)
	}
	g.limits = newLimiter(cfg, shared)
}

// admits reports whether high-impact requests may be decided now: not in
// deny mode while out of sync.
func (co *coordination) admits() bool { return co == nil || !co.deny || co.synced.Load() }

// snapshot returns the epoch and policy version a verification starts at.
func (co *coordination) snapshot() (epoch, policy uint64) {
	if co == nil {
		return 0, 0
	}
	epoch = co.epoch.Load()
	if d := co.policy.Load(); d != nil {
		policy = d.Version
	}
	return epoch, policy
}

// check decides whether the cached verdict c may serve route rt: "" if
// it may, else the reason it may not (the caller drops it). Without news
// since its last check it costs two atomic loads.
func (co *coordination) check(ctx context.Context, rt *route, c *cachedResult) postauth.Reason {
	if co == nil {
		return ""
	}
	if !co.synced.Load() { // mutation: unsynced verdict untrusted
		return postauth.ReasonVerdictUnconfirmed
	}
	vs := c.shared
	if vs == nil {
		return postauth.ReasonVerdictUnconfirmed
	}
	e := co.epoch.Load()
	if vs.checked == e {
		return ""
	}
	now := co.now()
	co.mu.RLock()
	why := co.judge(vs, now)
	co.mu.RUnlock()
	if why != "" {
		return why
	}
	if d := co.policy.Load(); d != nil && d.Version != vs.policy {
		if err := appraiseDocument(ctx, d, rt, c.res); err != nil { // mutation: shared policy on cached verdicts
			co.logf(ctx, slog.LevelInfo, "reattest: cached verdict dropped: the new policy document denies it",
				slog.String("route", routeName(rt)), slog.Uint64("version", d.Version))
			return postauth.ReasonVerdictInvalidated
		}
		vs.policy = d.Version
	}
	vs.checked = e
	return ""
}

// judge checks a verdict against the revocations and invalidations.
// co.mu is held.
func (co *coordination) judge(vs *verdictState, now time.Time) postauth.Reason {
	if vs.born < co.floor { // mutation: resync drops verdicts
		return postauth.ReasonVerdictInvalidated
	}
	for _, id := range vs.ids {
		if until, ok := co.revoked[id]; ok && now.Before(until) { // mutation: revoked cached verdict
			return postauth.ReasonAttesterRevoked
		}
	}
	for _, id := range vs.ids {
		if inv, ok := co.invalid[id]; ok {
			if vs.born < inv.all { // mutation: invalidated verdict
				return postauth.ReasonVerdictInvalidated
			}
			if vs.born < inv.keepEpoch && vs.att.Posture != inv.keep { // mutation: posture invalidation
				return postauth.ReasonVerdictInvalidated
			}
		}
	}
	return ""
}

// admit refuses a newly verified Result of a revoked attester.
func (co *coordination) admit(res *postauth.Result) error {
	if co == nil {
		return nil
	}
	now := co.now()
	co.mu.RLock()
	defer co.mu.RUnlock()
	for _, id := range AttesterOf(res).Identities() {
		if until, ok := co.revoked[id]; ok && now.Before(until) { // mutation: revoked evidence refused
			return postauth.ErrorFor(postauth.ReasonAttesterRevoked, fmt.Errorf("middleware: %s is revoked until %s", id, until.UTC().Format(time.RFC3339)))
		}
	}
	return nil
}

// appraiseShared runs the policy document's policy for rt on a newly
// verified Result.
func (co *coordination) appraiseShared(ctx context.Context, rt *route, res *postauth.Result) error {
	if co == nil {
		return nil
	}
	if d := co.policy.Load(); d != nil {
		return appraiseDocument(ctx, d, rt, res) // mutation: shared policy on new evidence
	}
	return nil
}

func appraiseDocument(ctx context.Context, d *PolicyDocument, rt *route, res *postauth.Result) error {
	rp, ok := d.Routes[routeName(rt)]
	if !ok || rp.Posture == nil {
		return nil
	}
	return postauth.AppraisePosture(ctx, rp.Posture, res)
}

func routeName(rt *route) string {
	if n := rt.name.Load(); n != nil {
		return *n
	}
	return ""
}

// attesterOf returns the identities of res when someone needs them (a
// coordinator, an observer), else nil.
func (g *Guard) attesterOf(res *postauth.Result) *Attester {
	if res == nil || (g.co == nil && g.cfg.observe == nil) {
		return nil
	}
	a := AttesterOf(res)
	return &a
}

// newVerdict returns the coordination state of a verdict about to be
// cached (nil if nobody needs one).
func (g *Guard) newVerdict(att *Attester, born, policy uint64) *verdictState {
	if att == nil {
		return nil
	}
	return &verdictState{att: *att, ids: att.Identities(), born: born, checked: born, policy: policy}
}

// verified tells the other replicas an attester's current posture: if this
// replica knew another (or none), they drop its verdicts with another
// posture.
func (co *coordination) verified(att *Attester) {
	if co == nil || att == nil || att.KeyHash == "" || att.Posture == "" {
		return
	}
	co.mu.RLock()
	prev, ok := co.heads[att.KeyHash]
	co.mu.RUnlock()
	if ok && prev == att.Posture {
		return
	}
	ev := Event{Kind: EventInvalidate, Identity: Identity{IdentityKey, att.KeyHash}, Posture: att.Posture,
		Reason: string(postauth.ReasonPostureChanged)}
	co.publish(ev) // mutation: posture change reaches other replicas
}

// denied tells the other replicas that a policy denied an attester: they
// drop all its verdicts.
func (co *coordination) denied(att *Attester, err error) {
	if co == nil || att == nil || att.KeyHash == "" || postauth.CodeOf(err) != postauth.CodePolicyDenied ||
		postauth.ReasonOf(err) == postauth.ReasonAttesterRevoked {
		return
	}
	reason := string(postauth.ReasonOf(err))
	if reason == "" {
		reason = string(postauth.ReasonPolicyDenied)
	}
	ev := Event{Kind: EventInvalidate, Identity: Identity{IdentityKey, att.KeyHash}, Reason: reason}
	co.publish(ev) // mutation: denial reaches other replicas
}

// publish applies e here and now, and queues it for the Coordinator. A
// full queue drops it (invalidations are best effort; the log says so).
func (co *coordination) publish(e Event) {
	e.Origin = co.origin
	co.apply(e)
	select {
	case co.queue <- e:
	default:
		if logAllowed(&co.dropLog) {
			co.logf(context.Background(), slog.LevelWarn, "reattest: coordinator publish queue full, event dropped (logged at most every 10 s)",
				slog.String("kind", e.Kind.String()), slog.String("identity", e.Identity.String()))
		}
	}
}

func (co *coordination) publisher() {
	for {
		select {
		case <-co.done:
			return
		case e := <-co.queue:
			ctx, cancel := context.WithTimeout(context.Background(), co.timeout)
			if err := co.c.Publish(ctx, e); err != nil && logAllowed(&co.failLog) {
				co.logf(ctx, slog.LevelWarn, "reattest: coordinator publish failed (logged at most every 10 s)",
					slog.String("kind", e.Kind.String()), slog.String("cause", err.Error()))
			}
			cancel()
		}
	}
}

func (co *coordination) close() {
	co.stopOnce.Do(func() {
		co.stop()
		co.mu.Lock()
		co.closed = true
		co.synced.Store(false)
		co.mu.Unlock()
		close(co.done)
	})
}

// Apply implements [Watcher]: it applies an event of another replica.
func (co *coordination) Apply(e Event) {
	if e.Origin != "" && e.Origin == co.origin {
		return // applied when published
	}
	if err := e.Validate(); err != nil {
		co.logf(context.Background(), slog.LevelWarn, "reattest: coordinator event ignored", slog.String("cause", err.Error()))
		return
	}
	co.apply(e)
}

// Synced implements [Watcher].
func (co *coordination) Synced(ok bool) {
	if !ok {
		if co.synced.Swap(false) {
			co.logf(context.Background(), slog.LevelWarn, "reattest: coordinator out of sync: cached verdicts are not trusted")
		}
		return
	}
	co.mu.Lock()
	defer co.mu.Unlock()
	if co.closed || co.synced.Load() {
		return
	}
	// Events may have been missed while out of sync: verdicts verified
	// before now are dropped (their next request re-attests).
	co.floor = co.epoch.Add(1)
	co.synced.Store(true)
	co.logf(context.Background(), slog.LevelInfo, "reattest: coordinator in sync")
}

// apply changes the local view.
func (co *coordination) apply(e Event) {
	now := co.now()
	switch e.Kind {
	case EventPolicy:
		for {
			cur := co.policy.Load()
			if cur != nil && e.Policy.Version <= cur.Version { // mutation: policy never rolls back
				return
			}
			if co.policy.CompareAndSwap(cur, e.Policy) {
				co.epoch.Add(1)
				co.logf(context.Background(), slog.LevelInfo, "reattest: policy document applied", slog.Uint64("version", e.Policy.Version))
				return
			}
		}
	case EventUnrevoke:
		co.mu.Lock()
		delete(co.revoked, e.Identity)
		co.mu.Unlock()
		return
	}
	co.mu.Lock()
	defer co.mu.Unlock()
	co.prune(now)
	switch e.Kind {
	case EventRevoke:
		if until, ok := co.revoked[e.Identity]; !ok || e.Until.After(until) { // mutation: revocation keeps the later expiry
			co.revoked[e.Identity] = e.Until
		}
		inv := co.invalid[e.Identity]
		inv.all, inv.at = co.epoch.Add(1), now
		co.setInvalid(e.Identity, inv)
	case EventInvalidate:
		inv := co.invalid[e.Identity]
		epoch := co.epoch.Add(1)
		if e.Posture == "" {
			inv.all = epoch
		} else {
			inv.keep, inv.keepEpoch = e.Posture, epoch
			if e.Identity.Kind == IdentityKey {
				if len(co.heads) >= maxPostureHeads {
					clear(co.heads)
				}
				co.heads[e.Identity.Value] = e.Posture
			}
		}
		inv.at = now
		co.setInvalid(e.Identity, inv)
	}
}

// setInvalid records an invalidation; when there are too many, every
// cached verdict is dropped instead (fail closed). co.mu is held.
func (co *coordination) setInvalid(id Identity, inv invalidation) {
	if _, ok := co.invalid[id]; !ok && len(co.invalid) >= maxInvalidations { // mutation: too many invalidations drop every verdict
		co.floor = co.epoch.Add(1)
		clear(co.invalid)
	}
	co.invalid[id] = inv
}

// prune forgets expired revocations, and invalidations older than any
// verdict they could drop. co.mu is held.
func (co *coordination) prune(now time.Time) {
	if now.Sub(co.pruned) < pruneEvery {
		return
	}
	co.pruned = now
	for id, until := range co.revoked {
		if !now.Before(until) {
			delete(co.revoked, id)
		}
	}
	// A verdict lives at most its route's MaxAge from its attestation
	// time, which is no later than its verification (give clocks 5
	// minutes).
	horizon := co.g.maxRouteAge() + 5*time.Minute
	for id, inv := range co.invalid {
		if now.Sub(inv.at) > horizon {
			if _, revoked := co.revoked[id]; !revoked {
				delete(co.invalid, id)
			}
		}
	}
}

// maxRouteAge is the longest MaxAge of g's routes.
func (g *Guard) maxRouteAge() time.Duration {
	m := DefaultMaxAge
	for _, rt := range g.patterns {
		m = max(m, rt.MaxAge)
	}
	g.mu.Lock()
	for _, rt := range g.handlers {
		m = max(m, rt.MaxAge)
	}
	g.mu.Unlock()
	return m
}

// logAllowed reports whether a log of a repeated kind may be written now
// (at most one every 10 s); last holds when it was last written.
func logAllowed(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	return now-prev >= int64(10*time.Second) && last.CompareAndSwap(prev, now)
}

func (co *coordination) logf(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if co.log != nil {
		co.log.LogAttrs(ctx, level, msg, attrs...)
	}
}
