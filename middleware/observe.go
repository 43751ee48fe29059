package middleware

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Outcome says what the middleware did with a request to a high-impact
// route.
type Outcome string

// Outcomes.
const (
	// OutcomeCacheHit: served on the connection's cached verdict.
	OutcomeCacheHit Outcome = "cache_hit"
	// OutcomeVerified: a fresh attestation was verified; the handler ran.
	OutcomeVerified Outcome = "verified"
	// OutcomeChallenged: 401 with a challenge (no verdict, a stale one, or a
	// changed posture).
	OutcomeChallenged Outcome = "challenged"
	// OutcomeInvalid: an attestation failed a check (401, new challenge).
	OutcomeInvalid Outcome = "invalid"
	// OutcomeDenied: the policy denied the request (403).
	OutcomeDenied Outcome = "denied"
	// OutcomeUnavailable: no verdict could be reached (503).
	OutcomeUnavailable Outcome = "unavailable"
	// OutcomeRefused: the request cannot be attested (early data, no TLS
	// 1.3, an unreadable or oversized body).
	OutcomeRefused Outcome = "refused"
)

// Event reports one decision of the middleware on a high-impact route, for
// metrics and traces (see package middleware/otelattest). It carries no
// Evidence and no internal error text.
type Event struct {
	// Route is the route's pattern (or its label, for wrapped handlers).
	Route string
	Mode  Mode
	// Outcome is what happened; Status the HTTP status the middleware
	// answered with (0 when the handler ran).
	Outcome Outcome
	Status  int
	// Reason is the wire-safe reason of a refusal.
	Reason string
	// Format is the Evidence format of a verified attestation.
	Format string
	// VerifyStart and VerifyDuration time the verification of an
	// attestation (and the Appraise hook), when one was presented.
	VerifyStart    time.Time
	VerifyDuration time.Duration
}

// WithObserver calls f for every decision on a high-impact route. f runs on
// the request's goroutine before the response is written (refusals) or the
// handler runs (passes); it must be quick. Nil means none.
func WithObserver(f func(ctx context.Context, e Event)) Option {
	return optionFunc(func(c *config) { c.observe = f })
}

// timedError carries the timing of a failed verification to the response
// writer, so that observers see it.
type timedError struct {
	error
	start time.Time
	dur   time.Duration
}

func (e *timedError) Unwrap() error { return e.error }

func (g *Guard) observePass(ctx context.Context, rt *route, outcome Outcome, format string, start time.Time, dur time.Duration) {
	if g.cfg.observe == nil {
		return
	}
	g.cfg.observe(ctx, Event{Route: rt.pattern, Mode: rt.Mode, Outcome: outcome, Format: format, VerifyStart: start, VerifyDuration: dur})
}

func (g *Guard) observeRefusal(r *http.Request, rt *route, status int, reason string, err error) {
	if g.cfg.observe == nil || rt == nil {
		return
	}
	e := Event{Route: rt.pattern, Mode: rt.Mode, Status: status, Reason: reason}
	switch status {
	case http.StatusUnauthorized:
		e.Outcome = OutcomeInvalid
		switch reason {
		case "attestation_required", "attestation_stale", "posture_changed":
			e.Outcome = OutcomeChallenged
		}
	case http.StatusForbidden:
		e.Outcome = OutcomeDenied
	case http.StatusServiceUnavailable:
		e.Outcome = OutcomeUnavailable
	default:
		e.Outcome = OutcomeRefused
	}
	var te *timedError
	if errors.As(err, &te) {
		e.VerifyStart, e.VerifyDuration = te.start, te.dur
	}
	g.cfg.observe(r.Context(), e)
}
