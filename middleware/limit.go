package middleware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limit is a token bucket: at most Burst at once, refilled at Rate per
// second. The zero Limit sets no limit.
type Limit struct {
	Rate  float64
	Burst int
}

func (l Limit) set() bool { return l.Rate > 0 && l.Burst > 0 }

// Bucket is one token bucket a [RateLimiter] takes from: Key names it
// (shared by every replica), Limit sizes it.
type Bucket struct {
	Key   string
	Limit Limit
}

// RateLimiter counts the expensive work of every replica: a [Coordinator]
// that also implements it (package middleware/redisstate does) makes
// [WithLimits] hold across replicas.
type RateLimiter interface {
	// Allow takes one token from every bucket if each has one, and none
	// otherwise: it reports whether all had one. An error means it could
	// not tell (the Guard then applies the limits alone, per replica).
	Allow(ctx context.Context, buckets ...Bucket) (bool, error)
}

// Limits bounds the expensive paths of a Guard: verifications of Evidence
// and server attestations, per peer and for all peers together. With a
// [Coordinator] that implements [RateLimiter] the buckets are shared by
// every replica, so a flood spread over replicas is bounded as a whole;
// without one (or while it fails) each replica counts alone. A peer is the
// key of its verified TLS client certificate, or its IP address without
// one (behind a proxy that is the proxy's: use client certificates). Plain
// data; the zero value sets no limit.
type Limits struct {
	// VerifyPerPeer and VerifyGlobal bound the verifications of Evidence
	// (an Attestation header on a high-impact route). Requests over them
	// get 429 rate_limited with Retry-After, before anything is verified.
	VerifyPerPeer Limit
	VerifyGlobal  Limit
	// ServerAttestPerPeer and ServerAttestGlobal bound the server-attests
	// answers, on top of the per-connection and per-replica limits of
	// [WithServerAttestationLimit]. Requests over them get no Attestation
	// header.
	ServerAttestPerPeer Limit
	ServerAttestGlobal  Limit
}

// WithLimits sets rate limits on the expensive paths. Default: none (the
// server-attests answers keep their per-replica limits).
func WithLimits(l Limits) Option {
	return optionFunc(func(c *config) { c.limits = l })
}

// maxLocalBuckets bounds the buckets a replica keeps when it counts alone.
const maxLocalBuckets = 100_000

// limiter applies Limits: through the shared RateLimiter if there is one
// and it answers, else with local buckets.
type limiter struct {
	limits Limits
	shared RateLimiter // nil: local only
	now    func() time.Time
	log    *slog.Logger
	// lastLog is when the shared limiter's failure was last logged.
	lastLog atomic.Int64

	mu    sync.Mutex // guards local
	local map[string]*localBucket
}

type localBucket struct {
	b     tokenBucket
	limit Limit
}

func newLimiter(cfg *config, shared RateLimiter) *limiter {
	l := cfg.limits
	if !l.VerifyPerPeer.set() && !l.VerifyGlobal.set() && !l.ServerAttestPerPeer.set() && !l.ServerAttestGlobal.set() {
		return nil
	}
	return &limiter{limits: l, shared: shared, now: cfg.now, log: cfg.log, local: make(map[string]*localBucket)}
}

// allowVerify reports whether r's peer may have Evidence verified now.
func (l *limiter) allowVerify(ctx context.Context, r *http.Request) bool {
	return l.allow(ctx, "verify", r, l.limits.VerifyPerPeer, l.limits.VerifyGlobal)
}

// allowServerAttest reports whether r's peer may get a server attestation.
func (l *limiter) allowServerAttest(ctx context.Context, r *http.Request) bool {
	return l.allow(ctx, "server", r, l.limits.ServerAttestPerPeer, l.limits.ServerAttestGlobal)
}

func (l *limiter) allow(ctx context.Context, class string, r *http.Request, perPeer, global Limit) bool {
	var buckets []Bucket
	if perPeer.set() {
		buckets = append(buckets, Bucket{class + ":peer:" + peerID(r), perPeer})
	}
	if global.set() {
		buckets = append(buckets, Bucket{class + ":global", global})
	}
	if len(buckets) == 0 {
		return true
	}
	if l.shared != nil {
		ok, err := l.shared.Allow(ctx, buckets...)
		if err == nil {
			return ok
		}
		if l.log != nil && logAllowed(&l.lastLog) {
			l.log.LogAttrs(ctx, slog.LevelWarn, "reattest: shared rate limit unavailable, counting on this replica alone (logged at most every 10 s)",
				slog.String("cause", err.Error()))
		}
	}
	return l.allowLocal(buckets)
}

// allowLocal is Allow on this replica's own buckets. Buckets that are full
// again are forgotten; if too many peers are counted at once, new peers
// are refused (fail closed) until some buckets refill.
func (l *limiter) allowLocal(buckets []Bucket) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.local) >= maxLocalBuckets {
		for k, b := range l.local {
			if b.b.full(now, b.limit.Rate, b.limit.Burst) {
				delete(l.local, k)
			}
		}
	}
	got := make([]*localBucket, len(buckets))
	for i, bk := range buckets {
		b := l.local[bk.Key]
		if b == nil {
			if len(l.local) >= maxLocalBuckets {
				return false
			}
			b = &localBucket{limit: bk.Limit}
			l.local[bk.Key] = b
		}
		got[i] = b
	}
	for i, b := range got {
		if !b.b.peek(now, buckets[i].Limit.Rate, buckets[i].Limit.Burst) {
			return false
		}
	}
	for i, b := range got {
		b.b.take(now, buckets[i].Limit.Rate, buckets[i].Limit.Burst)
	}
	return true
}

// peek reports whether take would succeed, without taking.
func (b *tokenBucket) peek(now time.Time, rate float64, burst int) bool {
	if b.at.IsZero() {
		return burst >= 1
	}
	return min(b.tokens+now.Sub(b.at).Seconds()*rate, float64(burst)) >= 1
}

// full reports whether the bucket has refilled to burst (it can then be
// forgotten: a new bucket is full too).
func (b *tokenBucket) full(now time.Time, rate float64, burst int) bool {
	return b.at.IsZero() || b.tokens+now.Sub(b.at).Seconds()*rate >= float64(burst)
}

// peerID names r's peer for rate limits: a hash of the key of its verified
// TLS client certificate, or its IP address.
func peerID(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && len(r.TLS.VerifiedChains) > 0 {
		sum := sha256.Sum256(r.TLS.PeerCertificates[0].RawSubjectPublicKeyInfo)
		return "key:" + hex.EncodeToString(sum[:16])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(host) > 64 {
		host = host[:64]
	}
	return "addr:" + host
}
