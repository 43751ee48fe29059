package transports

import (
	"fmt"
	"time"

	"github.com/reattest/reattest/postauth"
)

// ActivityKind names what an [Activity] reports.
type ActivityKind uint8

// Activity kinds.
const (
	// ActivityChallenged: the server answered 401 with a challenge.
	ActivityChallenged ActivityKind = iota + 1
	// ActivityAttested: the transport answered a challenge (or a pre-armed
	// request, Proactive) with an authenticator; Outcome says how the
	// server took it.
	ActivityAttested
	// ActivityShared: the request rode on another request's attestation of
	// the same connection.
	ActivityShared
	// ActivityServerAttested: the transport asked the server to attest and
	// validated (or refused) its answer.
	ActivityServerAttested
)

var kindNames = [...]string{
	ActivityChallenged:     "challenged",
	ActivityAttested:       "attested",
	ActivityShared:         "shared",
	ActivityServerAttested: "server-attested",
}

func (k ActivityKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("activity(%d)", uint8(k))
}

// Outcome says how an attestation ended.
type Outcome uint8

// Outcomes.
const (
	// OutcomeNone: the activity has no outcome of its own (a challenge).
	OutcomeNone Outcome = iota
	// OutcomeAccepted: the server served the attested request (or the
	// server's attestation was valid).
	OutcomeAccepted
	// OutcomeRefused: the server refused the attested request (Status and
	// Reason say why), or the server's attestation failed validation.
	OutcomeRefused
	// OutcomeFailed: no attestation could be made or sent (Err says why).
	OutcomeFailed
)

var outcomeNames = [...]string{
	OutcomeNone:     "none",
	OutcomeAccepted: "accepted",
	OutcomeRefused:  "refused",
	OutcomeFailed:   "failed",
}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Activity reports what the transport did for a request, for logs, demos
// and tests. It carries no Evidence.
type Activity struct {
	Kind    ActivityKind
	Outcome Outcome
	Method  string
	URL     string
	// Mode is the freshness mode, "connection" or "operation".
	Mode string
	// Reason is the challenge's error (ActivityChallenged) or the reason of
	// a refusal (OutcomeRefused).
	Reason postauth.Reason
	// Status is the HTTP status of the response to the attested request.
	Status int
	// Proactive: the transport answered a pre-armed request, without a 401
	// first (ActivityAttested).
	Proactive bool
	// Result is the server's verified attestation (ActivityServerAttested,
	// OutcomeAccepted).
	Result *postauth.Result
	// Duration is how long attesting and the retry took.
	Duration time.Duration
	// Err is why an attestation failed (OutcomeFailed, or a refused server
	// attestation).
	Err error
}

func (t *Transport) emit(a Activity) {
	if t.cfg.observe != nil {
		t.cfg.observe(a)
	}
}
