package middleware

import (
	"fmt"
	"testing"
	"time"
)

// When a replica is told of more invalidations than it keeps, it drops
// every cached verdict rather than forget one.
func TestTooManyInvalidationsDropEveryVerdict(t *testing.T) {
	now := time.Now()
	co := &coordination{g: &Guard{}, now: func() time.Time { return now }, revoked: map[Identity]time.Time{},
		invalid: map[Identity]invalidation{}, heads: map[string]string{}, pruned: now}
	co.synced.Store(true)
	mine := Attester{KeyHash: "aa"}
	vs := &verdictState{att: mine, ids: mine.Identities(), born: co.epoch.Load()}
	for i := range maxInvalidations + 1 {
		co.apply(Event{Kind: EventInvalidate, Identity: Identity{IdentityMachine, fmt.Sprintf("%08x", i)}})
	}
	if len(co.invalid) > maxInvalidations {
		t.Fatalf("%d invalidations kept, bound %d", len(co.invalid), maxInvalidations)
	}
	if why := co.judge(vs, now); why == "" {
		t.Fatal("a verdict survived an overflow of invalidations (one of them might have been its own)")
	}
	later := &verdictState{att: mine, ids: mine.Identities(), born: co.epoch.Load()}
	if why := co.judge(later, now); why != "" {
		t.Fatalf("a verdict verified after the overflow was dropped: %s", why)
	}
}
