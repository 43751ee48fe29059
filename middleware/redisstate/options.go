package redisstate

import (
	"log/slog"
	"os"
	"time"
)

// Defaults.
const (
	DefaultNamespace      = "default"
	DefaultHeartbeat      = time.Second
	DefaultTimeout        = 2 * time.Second
	DefaultBackoffMin     = 50 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Second
	DefaultAuditMaxLen    = 100_000
	DefaultMaxRevocations = 100_000
	// auditQueue bounds the decisions waiting to be written.
	auditQueue = 8192
)

// Option configures a [Store].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config holds every setting of a Store, each with its default set by
// newConfig.
type config struct {
	namespace      string
	now            func() time.Time
	heartbeat      time.Duration
	timeout        time.Duration
	backoffMin     time.Duration
	backoffMax     time.Duration
	log            *slog.Logger
	audit          bool
	auditMaxLen    int64
	auditCacheHits bool
	replica        string
	maxRevocations int
}

func newConfig(opts []Option) config {
	host, _ := os.Hostname()
	c := config{
		namespace:      DefaultNamespace,
		now:            time.Now,
		heartbeat:      DefaultHeartbeat,
		timeout:        DefaultTimeout,
		backoffMin:     DefaultBackoffMin,
		backoffMax:     DefaultBackoffMax,
		audit:          true,
		auditMaxLen:    DefaultAuditMaxLen,
		replica:        host,
		maxRevocations: DefaultMaxRevocations,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithNamespace sets the namespace of the Store's keys and channel:
// replicas of one service share a namespace, other services use their own
// on the same Redis. 1 to 64 characters of [A-Za-z0-9._-]. Default
// "default". Every key of a namespace hashes to one Redis Cluster slot
// (the namespace is the hash tag), so the Lua scripts may touch several.
func WithNamespace(ns string) Option {
	return optionFunc(func(c *config) {
		if ns != "" {
			c.namespace = ns
		}
	})
}

// WithClock sets the clock that dates revocations (their expiry) and audit
// records. Use the Guards' clock. Nil means time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// WithHeartbeat sets how often an idle subscription is checked with a
// PING: a link that answers neither a message nor the PING within two
// heartbeats is out of sync (a silent network partition). Zero or less
// means DefaultHeartbeat.
func WithHeartbeat(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.heartbeat = d
		}
	})
}

// WithTimeout bounds each Redis operation (subscribing, loading the
// recorded state, publishing, a rate-limit check, an audit batch). Zero or
// less means DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// WithBackoff sets the delays between reconnection attempts: from min,
// doubling up to max, with jitter. Zero or less keeps the defaults
// (DefaultBackoffMin, DefaultBackoffMax).
func WithBackoff(min, max time.Duration) Option {
	return optionFunc(func(c *config) {
		if min > 0 {
			c.backoffMin = min
		}
		if max > 0 {
			c.backoffMax = max
		}
		c.backoffMax = maxDur(c.backoffMax, c.backoffMin)
	})
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// WithLogger sets the logger (link state, dropped audit records, ignored
// messages). Nil means no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.log = l })
}

// WithAudit turns the audit stream on (default) or off.
func WithAudit(on bool) Option {
	return optionFunc(func(c *config) { c.audit = on })
}

// WithAuditMaxLen caps the audit stream's length (exact trimming on every
// write: the oldest records go first). Zero or less means
// DefaultAuditMaxLen.
func WithAuditMaxLen(n int64) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.auditMaxLen = n
		}
	})
}

// WithAuditCacheHits also audits requests served on a cached verdict (one
// record per request: high volume). Default off: challenges, verifications,
// refusals and denials are audited.
func WithAuditCacheHits(on bool) Option {
	return optionFunc(func(c *config) { c.auditCacheHits = on })
}

// WithReplica names this replica in audit records. Default: the host name.
func WithReplica(name string) Option {
	return optionFunc(func(c *config) {
		if name != "" {
			c.replica = name
		}
	})
}

// WithMaxRevocations bounds the live revocations of a namespace: a
// revocation over the bound is refused with an error (never silently
// dropped). Zero or less means DefaultMaxRevocations.
func WithMaxRevocations(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxRevocations = n
		}
	})
}
