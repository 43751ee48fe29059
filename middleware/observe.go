package middleware

import (
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// Outcome says what the middleware did with a request to a high-impact
// route.
type Outcome = httpbind.Outcome

// Outcomes.
const (
	// OutcomeCacheHit: served on the connection's cached verdict.
	OutcomeCacheHit = httpbind.OutcomeCacheHit
	// OutcomeVerified: a fresh attestation was verified; the handler ran.
	OutcomeVerified = httpbind.OutcomeVerified
	// OutcomeChallenged: 401 with a challenge (no verdict, a stale one, or a
	// changed posture): the normal start of an attestation.
	OutcomeChallenged = httpbind.OutcomeChallenged
	// OutcomeInvalid: an attestation failed a check (401, new challenge).
	OutcomeInvalid = httpbind.OutcomeInvalid
	// OutcomeDenied: the policy denied the request (403).
	OutcomeDenied = httpbind.OutcomeDenied
	// OutcomeUnavailable: no verdict could be reached (503).
	OutcomeUnavailable = httpbind.OutcomeUnavailable
	// OutcomeRefused: the request cannot be attested (early data, no TLS
	// 1.3, an unreadable or oversized body).
	OutcomeRefused = httpbind.OutcomeRefused
	// OutcomeMisconfigured: the Guard's configuration cannot decide the
	// request (500).
	OutcomeMisconfigured = httpbind.OutcomeMisconfigured
)

// Decision reports one decision of the middleware on a high-impact route,
// for metrics, traces and audit (see package middleware/otelattest). It
// carries no Evidence and no internal error text.
type Decision struct {
	// Route is the route's name: its pattern, its Name, or the name its
	// router reported.
	Route string
	Mode  Mode
	// Outcome is what happened; Status the HTTP status the middleware
	// answered with (0 when the handler ran).
	Outcome Outcome
	Status  int
	// Reason is the wire-safe reason of a refusal.
	Reason postauth.Reason
	// Format is the Evidence format of the verdict the handler ran with.
	Format string
	// VerifyStart and VerifyDuration time the verification of an
	// attestation (and its appraisal), when one was presented.
	VerifyStart    time.Time
	VerifyDuration time.Duration
	// Attester names the attester of the verdict (passes, and refusals of
	// a cached or newly verified one: denied, revoked, invalidated) by the
	// identities of its Result; zero when no Result was involved.
	Attester Attester
}

func (g *Guard) observe(x *exchange, outcome Outcome, status int, reason postauth.Reason, format string) {
	var audit Auditor
	if g.co != nil && (outcome != OutcomeCacheHit || g.co.hits) {
		audit = g.co.audit
	}
	if g.cfg.observe == nil && audit == nil {
		return
	}
	d := Decision{
		Route: x.rt.label(x.r), Mode: x.rt.Mode, Outcome: outcome, Status: status,
		Reason: reason, Format: format, VerifyStart: x.start, VerifyDuration: x.dur,
	}
	if x.att != nil {
		d.Attester = *x.att
	}
	if g.cfg.observe != nil {
		g.cfg.observe(x.r.Context(), d)
	}
	if audit != nil {
		audit.Audit(x.r.Context(), d)
	}
}
