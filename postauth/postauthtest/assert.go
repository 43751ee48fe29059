package postauthtest

import (
	"errors"
	"sync"
	"time"

	"github.com/reattest/reattest/postauth"
)

// WantError fails tb unless err is an attestation error with code and,
// when reason is not empty, that reason ([postauth.CodeOf],
// [postauth.ReasonOf]). It is the one assertion for coded errors in the
// module's tests.
func WantError(tb TB, err error, code postauth.Code, reason postauth.Reason) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("got no error, want code %v reason %q", code, reason)
		return
	}
	if got := postauth.CodeOf(err); got != code {
		tb.Fatalf("got code %v (%v), want %v", got, err, code)
	}
	if reason != "" {
		if got := postauth.ReasonOf(err); got != reason {
			tb.Fatalf("got reason %q (%v), want %q", got, err, reason)
		}
	}
}

// WantErrorIs is [WantError] that also requires errors.Is(err, target).
func WantErrorIs(tb TB, err error, target error, code postauth.Code, reason postauth.Reason) {
	tb.Helper()
	WantError(tb, err, code, reason)
	if target != nil && !errors.Is(err, target) {
		tb.Fatalf("error %v does not wrap %v", err, target)
	}
}

// Clock is a settable clock for tests, safe for concurrent use. Pass
// Clock.Now wherever a package takes a clock (WithClock options).
type Clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

// NewClock returns a Clock set to t (time.Now() if zero).
func NewClock(t time.Time) *Clock {
	if t.IsZero() {
		t = time.Now()
	}
	return &Clock{t: t}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
