package redisstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reattest/reattest/middleware"
)

// Store links the Guards of the replicas of a service through Redis: it is
// a [middleware.Coordinator], a [middleware.RateLimiter] and a
// [middleware.Auditor]. Give it to each replica's Guard with
// [middleware.WithCoordinator]. A Store is safe for concurrent use; one
// Store may serve several Guards.
type Store struct {
	client redis.UniversalClient
	cfg    config
	keys   keys

	mu       sync.Mutex // guards the fields below; held while delivering, so watchers see events in order
	watchers map[uint64]middleware.Watcher
	nextID   uint64
	revoked  map[middleware.Identity]time.Time // every live revocation learned (never lifted by absence)
	policy   *middleware.PolicyDocument
	synced   bool
	closed   bool

	psMu sync.Mutex // guards ps
	ps   *redis.PubSub

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	audit        chan []any
	resyncs      atomic.Uint64
	auditWritten atomic.Uint64
	auditDropped atomic.Uint64
}

// Interface guards.
var (
	_ middleware.Coordinator = (*Store)(nil)
	_ middleware.RateLimiter = (*Store)(nil)
	_ middleware.Auditor     = (*Store)(nil)
)

// keys are the Redis names of a namespace. The namespace is their hash
// tag: in a Redis Cluster they share one slot.
type keys struct {
	revoked string // sorted set: identity -> expiry (Unix ms)
	policy  string // hash: version, doc
	events  string // pub/sub channel
	audit   string // stream
	limit   string // prefix of the rate-limit buckets (hashes)
}

func newKeys(ns string) keys {
	p := "reattest:{" + ns + "}:"
	return keys{revoked: p + "revoked", policy: p + "policy", events: p + "events", audit: p + "audit", limit: p + "rl:"}
}

var validNamespace = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// New returns a Store on client (a single Redis, Sentinel or Cluster
// client: see [redis.NewUniversalClient]; the caller owns it and closes it
// after the Store). New does not wait for Redis: the Store connects in the
// background, reconnects with backoff, and tells its watchers whether it
// is in sync. Call Close when done.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstate: New needs a Redis client (redis.NewUniversalClient)")
	}
	cfg := newConfig(opts)
	if !validNamespace.MatchString(cfg.namespace) {
		return nil, fmt.Errorf("redisstate: namespace %q: want 1 to 64 characters of A-Z a-z 0-9 . _ -", cfg.namespace)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		client: client, cfg: cfg, keys: newKeys(cfg.namespace),
		watchers: make(map[uint64]middleware.Watcher), revoked: make(map[middleware.Identity]time.Time),
		ctx: ctx, cancel: cancel, audit: make(chan []any, auditQueue),
	}
	s.wg.Add(2)
	go s.run()
	go s.writeAudit()
	return s, nil
}

// Close stops the Store: its watchers are told it is out of sync, queued
// audit records are written (for at most the operation timeout). It does
// not close the Redis client.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.psMu.Lock()
	if s.ps != nil {
		s.ps.Close()
	}
	s.psMu.Unlock()
	s.wg.Wait()
	s.setSynced(false)
	return nil
}

// Stats are counters of a Store.
type Stats struct {
	// Synced says whether the Store is in sync now.
	Synced bool
	// Syncs counts the times it got in sync (the first time, then after
	// every reconnection).
	Syncs uint64
	// AuditWritten and AuditDropped count audit records written to the
	// stream and dropped (queue full, or Redis failing).
	AuditWritten, AuditDropped uint64
}

// Stats returns the Store's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	synced := s.synced
	s.mu.Unlock()
	return Stats{Synced: synced, Syncs: s.resyncs.Load(), AuditWritten: s.auditWritten.Load(), AuditDropped: s.auditDropped.Load()}
}

// Watch implements [middleware.Coordinator]: w gets every live revocation
// and the policy document the Store knows, then every event, and whether
// the Store is in sync.
func (s *Store) Watch(w middleware.Watcher) (stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID
	s.nextID++
	s.watchers[id] = w
	now := s.cfg.now()
	for ident, until := range s.revoked {
		if now.Before(until) {
			w.Apply(middleware.Event{Kind: middleware.EventRevoke, Identity: ident, Until: until})
		}
	}
	if s.policy != nil {
		w.Apply(middleware.Event{Kind: middleware.EventPolicy, Policy: s.policy})
	}
	w.Synced(s.synced)
	return func() {
		s.mu.Lock()
		delete(s.watchers, id)
		s.mu.Unlock()
	}
}

// deliver updates the Store's view with e and passes it to every watcher.
func (s *Store) deliver(e middleware.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Kind {
	case middleware.EventRevoke:
		if until, ok := s.revoked[e.Identity]; ok && !e.Until.After(until) {
			e.Until = until
		}
		s.revoked[e.Identity] = e.Until
	case middleware.EventUnrevoke:
		delete(s.revoked, e.Identity)
	case middleware.EventPolicy:
		if s.policy != nil && e.Policy.Version <= s.policy.Version {
			return
		}
		s.policy = e.Policy
	}
	for _, w := range s.watchers {
		w.Apply(e)
	}
}

func (s *Store) setSynced(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok && s.closed {
		return
	}
	s.synced = ok
	for _, w := range s.watchers {
		w.Synced(ok)
	}
}

// run keeps a session with Redis: subscribe, load the recorded state,
// follow the channel; after a failure, out of sync, and again after a
// backoff.
func (s *Store) run() {
	defer s.wg.Done()
	backoff := s.cfg.backoffMin
	for s.ctx.Err() == nil {
		start := time.Now()
		err := s.session()
		s.setSynced(false) // mutation: out of sync when the link fails
		if s.ctx.Err() != nil {
			return
		}
		s.logf(slog.LevelWarn, "reattest: Redis link lost, cached verdicts are not trusted until it is back", slog.String("cause", err.Error()))
		if time.Since(start) > 10*s.cfg.backoffMax {
			backoff = s.cfg.backoffMin // the session lasted: start over
		}
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, s.cfg.backoffMax)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

var errHeartbeat = errors.New("redisstate: no answer to a heartbeat PING (silent link)")

// session runs one subscription until it fails.
func (s *Store) session() error {
	ctx := s.ctx
	ps := s.client.Subscribe(ctx, s.keys.events)
	s.psMu.Lock()
	s.ps = ps
	s.psMu.Unlock()
	defer func() {
		s.psMu.Lock()
		s.ps = nil
		s.psMu.Unlock()
		ps.Close()
	}()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Subscribed first, then loaded: an event published meanwhile is
	// delivered (twice at worst), never missed.
	msg, err := ps.ReceiveTimeout(ctx, s.cfg.timeout)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return fmt.Errorf("subscribe: unexpected %T", msg)
	}
	if err := s.load(); err != nil {
		return err
	}
	s.resyncs.Add(1)
	s.setSynced(true)
	s.logf(slog.LevelInfo, "reattest: Redis link in sync", slog.String("namespace", s.cfg.namespace))
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.cfg.heartbeat)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return err
			}
			if pinged { // mutation: heartbeat detects a silent link
				return errHeartbeat
			}
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			pinged = true
			continue
		}
		switch m := msg.(type) {
		case *redis.Pong:
			pinged = false
		case *redis.Message:
			if err := s.handle(m.Payload); err != nil { // mutation: undecodable event resyncs
				// An event might be lost: resynchronise (fail closed).
				return err
			}
		}
	}
}

// handle applies one channel message.
func (s *Store) handle(payload string) error {
	e, version, err := decodeEvent([]byte(payload))
	if err != nil {
		return fmt.Errorf("undecodable event: %w", err)
	}
	if e.Kind == middleware.EventPolicy {
		s.mu.Lock()
		have := s.policy != nil && s.policy.Version >= version
		s.mu.Unlock()
		if have {
			return nil
		}
		return s.loadPolicy()
	}
	s.deliver(e)
	return nil
}

// load reads the recorded state: every live revocation and the policy
// document. Revocations the Store knew and Redis lacks (lost data, or an
// unrevoke missed while disconnected) are kept until they expire: a
// resynchronisation never lifts one.
func (s *Store) load() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.timeout)
	defer cancel()
	now := s.cfg.now().UnixMilli()
	zs, err := s.client.ZRangeByScoreWithScores(ctx, s.keys.revoked, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now, 10), Max: "+inf"}).Result()
	if err != nil {
		return fmt.Errorf("load revocations: %w", err)
	}
	for _, z := range zs {
		member, _ := z.Member.(string)
		id, err := middleware.ParseIdentity(member)
		if err != nil {
			s.logf(slog.LevelWarn, "reattest: ignoring an invalid revocation record", slog.String("cause", err.Error()))
			continue
		}
		s.deliver(middleware.Event{Kind: middleware.EventRevoke, Identity: id, Until: time.UnixMilli(int64(z.Score))})
	}
	s.pruneRevoked()
	return s.loadPolicy()
}

// loadPolicy reads the policy document and delivers it if it is newer.
func (s *Store) loadPolicy() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.timeout)
	defer cancel()
	doc, err := s.readPolicy(ctx)
	if err != nil {
		return err
	}
	if doc != nil {
		s.deliver(middleware.Event{Kind: middleware.EventPolicy, Policy: doc})
	}
	return nil
}

// Policy returns the policy document recorded in Redis (nil if none).
func (s *Store) Policy(ctx context.Context) (*middleware.PolicyDocument, error) {
	return s.readPolicy(ctx)
}

func (s *Store) readPolicy(ctx context.Context) (*middleware.PolicyDocument, error) {
	doc, err := s.client.HGet(ctx, s.keys.policy, "doc").Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	d, err := middleware.ParsePolicyDocument([]byte(doc))
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	return d, nil
}

// pruneRevoked forgets expired revocations.
func (s *Store) pruneRevoked() {
	now := s.cfg.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, until := range s.revoked {
		if !now.Before(until) {
			delete(s.revoked, id)
		}
	}
}

// Revocation is a live revocation recorded in Redis.
type Revocation struct {
	Identity middleware.Identity
	Until    time.Time
}

// Revocations returns the live revocations recorded in Redis.
func (s *Store) Revocations(ctx context.Context) ([]Revocation, error) {
	now := s.cfg.now().UnixMilli()
	zs, err := s.client.ZRangeByScoreWithScores(ctx, s.keys.revoked, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now, 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Revocation, 0, len(zs))
	for _, z := range zs {
		member, _ := z.Member.(string)
		if id, err := middleware.ParseIdentity(member); err == nil {
			out = append(out, Revocation{id, time.UnixMilli(int64(z.Score))})
		}
	}
	return out, nil
}

func (s *Store) logf(level slog.Level, msg string, attrs ...slog.Attr) {
	if s.cfg.log != nil {
		s.cfg.log.LogAttrs(context.Background(), level, msg, attrs...)
	}
}
