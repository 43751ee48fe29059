package ear

import (
	"sync"
	"time"
)

// breaker is a consecutive-failure circuit breaker: closed, then open for
// a cooldown after threshold failures in a row, then half-open (one probe
// at a time) until a success closes it or a failure opens it again.
type breaker struct {
	threshold int // < 1: disabled
	cooldown  time.Duration
	now       func() time.Time

	mu        sync.Mutex // guards the fields below
	failures  int
	openUntil time.Time
	probing   bool
}

// allow reports whether a request may be sent, and otherwise how long to
// wait. A half-open breaker lets one probe through.
func (b *breaker) allow() (bool, time.Duration) {
	if b.threshold < 1 {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return true, 0
	}
	now := b.now()
	if now.Before(b.openUntil) { // mutation: background circuit breaker
		return false, b.openUntil.Sub(now)
	}
	if b.probing {
		return false, time.Second
	}
	b.probing = true
	return true, 0
}

// done records the outcome of a request that allow let through.
func (b *breaker) done(ok bool) {
	if b.threshold < 1 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= b.threshold {
		b.openUntil = b.now().Add(b.cooldown)
	}
}

// cancel returns a request that allow let through but that was never
// sent (or whose caller went away): it counts neither way.
func (b *breaker) cancel() {
	if b.threshold < 1 {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}
