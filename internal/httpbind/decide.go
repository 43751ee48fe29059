package httpbind

import (
	"log/slog"
	"net/http"

	"github.com/reattest/reattest/postauth"
)

// Outcome says what the server did with a request to a high-impact route.
type Outcome string

// Outcomes.
const (
	// OutcomeCacheHit: served on the connection's cached verdict.
	OutcomeCacheHit Outcome = "cache_hit"
	// OutcomeVerified: a fresh attestation was verified; the handler ran.
	OutcomeVerified Outcome = "verified"
	// OutcomeChallenged: 401 with a challenge (no verdict, a stale one, or a
	// changed posture): the normal start of an attestation.
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
	// OutcomeMisconfigured: the server's configuration cannot decide the
	// request (500).
	OutcomeMisconfigured Outcome = "misconfigured"
)

// ProblemTypePrefix starts the problem type URI of every refusal
// (RFC 9457), followed by the slug of [Answer.Problem].
const ProblemTypePrefix = "tag:github.com,2026:reattest/problem/"

// Answer is how the HTTP binding answers a request that attestation
// stopped. It is the one place that maps reasons to statuses, challenges,
// problem types, observer outcomes and log levels.
type Answer struct {
	// Status is the HTTP status code.
	Status int
	// Challenge is the error parameter of the WWW-Authenticate:
	// Attestation challenge, or "" for no challenge.
	Challenge postauth.Reason
	// NewRequest says a fresh Attestation-Request goes with the challenge.
	NewRequest bool
	// Problem is the problem type slug; Title its title.
	Problem string
	Title   string
	// Outcome is what observers see.
	Outcome Outcome
	// Level is the log level: DEBUG for the normal challenges and for
	// clients that went away, INFO for refusals of requests that cannot be
	// attested, WARN for failed or denied attestations and unreachable
	// verifiers, ERROR for misconfiguration.
	Level slog.Level
}

// The rows of the table, one per kind of answer.
var (
	decRequired = Answer{http.StatusUnauthorized, postauth.ReasonAttestationRequired, true,
		"attestation-required", "Attestation required", OutcomeChallenged, slog.LevelDebug}
	decStale = Answer{http.StatusUnauthorized, postauth.ReasonAttestationStale, true,
		"attestation-stale", "Attestation stale", OutcomeChallenged, slog.LevelDebug}
	decPostureChanged = Answer{http.StatusUnauthorized, postauth.ReasonPostureChanged, true,
		"posture-changed", "Posture changed", OutcomeChallenged, slog.LevelDebug}
	decMissing = Answer{http.StatusUnauthorized, postauth.ReasonAttestationRequired, true,
		"attestation-required", "Attestation required", OutcomeInvalid, slog.LevelInfo}
	decStaleAnswer = Answer{http.StatusUnauthorized, postauth.ReasonAttestationStale, true,
		"attestation-stale", "Attestation stale", OutcomeInvalid, slog.LevelInfo}
	decInvalid = Answer{http.StatusUnauthorized, postauth.ReasonInvalidAttestation, true,
		"invalid-attestation", "Invalid attestation", OutcomeInvalid, slog.LevelWarn}
	decImpossible = Answer{http.StatusUnauthorized, postauth.ReasonInvalidAttestation, false,
		"attestation-impossible", "Attestation needs TLS 1.3", OutcomeRefused, slog.LevelInfo}
	decTooEarly = Answer{http.StatusTooEarly, "", false,
		"too-early", "Too Early", OutcomeRefused, slog.LevelInfo}
	decBadBody = Answer{http.StatusBadRequest, "", false,
		"bad-body", "Request body unreadable", OutcomeRefused, slog.LevelInfo}
	decBodyTooLarge = Answer{http.StatusRequestEntityTooLarge, "", false,
		"body-too-large", "Request body too large", OutcomeRefused, slog.LevelInfo}
	decDenied = Answer{http.StatusForbidden, "", false,
		"policy-denied", "Attestation policy denied the request", OutcomeDenied, slog.LevelWarn}
	decUnavailable = Answer{http.StatusServiceUnavailable, "", false,
		"verifier-unavailable", "Attestation could not be verified now", OutcomeUnavailable, slog.LevelWarn}
	decCanceled = Answer{http.StatusServiceUnavailable, "", false,
		"verifier-unavailable", "Attestation could not be verified now", OutcomeUnavailable, slog.LevelDebug}
	decInvalidated = Answer{http.StatusUnauthorized, postauth.ReasonAttestationStale, true,
		"attestation-stale", "Attestation stale", OutcomeChallenged, slog.LevelInfo}
	decRateLimited = Answer{http.StatusTooManyRequests, "", false,
		"rate-limited", "Too many attestations", OutcomeUnavailable, slog.LevelWarn}
	decMisconfigured = Answer{http.StatusInternalServerError, "", false,
		"misconfigured", "Attestation misconfigured", OutcomeMisconfigured, slog.LevelError}
)

// decisions maps every reason of package postauth to its answer.
// docs/protocol.md section 7 lists the same table; a test keeps them equal.
var decisions = map[postauth.Reason]Answer{
	// The normal challenges.
	postauth.ReasonAttestationRequired: decRequired,
	postauth.ReasonAttestationStale:    decStale,
	postauth.ReasonPostureChanged:      decPostureChanged,
	// No usable answer.
	postauth.ReasonAttestationRefused: decMissing,
	postauth.ReasonNoAttestation:      decMissing,
	postauth.ReasonContextExpired:     decStaleAnswer,
	postauth.ReasonEvidenceStale:      decStaleAnswer,
	// Failed checks: a new challenge.
	postauth.ReasonInvalidAttestation:      decInvalid,
	postauth.ReasonMalformedHeader:         decInvalid,
	postauth.ReasonMalformed:               decInvalid,
	postauth.ReasonWrongRequestType:        decInvalid,
	postauth.ReasonContextMismatch:         decInvalid,
	postauth.ReasonUnsupportedExtension:    decInvalid,
	postauth.ReasonBadFinished:             decInvalid,
	postauth.ReasonUnsupportedScheme:       decInvalid,
	postauth.ReasonBadCertificate:          decInvalid,
	postauth.ReasonBadSignature:            decInvalid,
	postauth.ReasonKeyNotTrusted:           decInvalid,
	postauth.ReasonUnknownContext:          decInvalid,
	postauth.ReasonContextReused:           decInvalid,
	postauth.ReasonOperationMismatch:       decInvalid,
	postauth.ReasonAttestationNotOffered:   decInvalid,
	postauth.ReasonUnsupportedCMW:          decInvalid,
	postauth.ReasonFormatNotAccepted:       decInvalid,
	postauth.ReasonEvidenceInvalid:         decInvalid,
	postauth.ReasonBinderMismatch:          decInvalid,
	postauth.ReasonKeyHashMismatch:         decInvalid,
	postauth.ReasonUntrustedAttester:       decInvalid,
	postauth.ReasonBadEvidenceSignature:    decInvalid,
	postauth.ReasonUnknownMachine:          decInvalid,
	postauth.ReasonPostureInvalid:          decInvalid,
	postauth.ReasonPostureMissing:          decInvalid,
	postauth.ReasonPCRSelectionMismatch:    decInvalid,
	postauth.ReasonPCRDigestMismatch:       decInvalid,
	postauth.ReasonPCKRevoked:              decInvalid,
	postauth.ReasonTDXModuleMismatch:       decInvalid,
	postauth.ReasonQEIdentityMismatch:      decInvalid,
	postauth.ReasonTCBNotSupported:         decInvalid,
	postauth.ReasonKeyCertificationInvalid: decInvalid,
	postauth.ReasonEKInvalid:               decInvalid,
	postauth.ReasonEventLogInvalid:         decInvalid,
	// Remote verification (postauth/ear): a bad passport.
	postauth.ReasonEARInvalid:               decInvalid,
	postauth.ReasonEARSignatureInvalid:      decInvalid,
	postauth.ReasonEARKeyAttestationMissing: decInvalid,
	postauth.ReasonEARStale:                 decStaleAnswer,
	// The connection cannot carry attestation: no challenge to answer.
	postauth.ReasonNoTLS:               decImpossible,
	postauth.ReasonTLS13Required:       decImpossible,
	postauth.ReasonHandshakeIncomplete: decImpossible,
	postauth.ReasonUnsupportedSuite:    decImpossible,
	postauth.ReasonExporterFailed:      decImpossible,
	// Requests that cannot be attested.
	postauth.ReasonEarlyData:    decTooEarly,
	postauth.ReasonBadBody:      decBadBody,
	postauth.ReasonBodyTooLarge: decBodyTooLarge,
	// Policy.
	postauth.ReasonPolicyDenied:    decDenied,
	postauth.ReasonPostureDenied:   decDenied,
	postauth.ReasonPCRPolicyDenied: decDenied,
	postauth.ReasonTCBStatusDenied: decDenied,
	postauth.ReasonTDXPolicyDenied: decDenied,
	postauth.ReasonKeyNotResident:  decDenied,
	postauth.ReasonEARPolicyDenied: decDenied,
	// No verdict.
	postauth.ReasonVerifierTimeout:       decUnavailable,
	postauth.ReasonVerifierFailed:        decUnavailable,
	postauth.ReasonPolicyInvalid:         decUnavailable,
	postauth.ReasonCollateralUnavailable: decUnavailable,
	postauth.ReasonCollateralInvalid:     decUnavailable,
	postauth.ReasonCollateralExpired:     decUnavailable,
	// The remote verifier (background check, passport attester).
	postauth.ReasonVerifierUnavailable: decUnavailable,
	postauth.ReasonVerifierBusy:        decUnavailable,
	postauth.ReasonVerifierError:       decUnavailable,
	postauth.ReasonVerifierCircuitOpen: decUnavailable,
	postauth.ReasonCanceled:            decCanceled,
	postauth.ReasonConnectionClosed:    decCanceled,
	postauth.ReasonMisconfigured:       decMisconfigured,
	// Scale-out: a coordinator shared by replicas, rate limits.
	postauth.ReasonAttesterRevoked:        decDenied,
	postauth.ReasonVerdictInvalidated:     decInvalidated,
	postauth.ReasonVerdictUnconfirmed:     decInvalidated,
	postauth.ReasonCoordinatorUnavailable: decUnavailable,
	postauth.ReasonRateLimited:            decRateLimited,
	// The stream binding (package streams); they do not arise over HTTP,
	// and are answered as the failures they are closest to.
	postauth.ReasonAnswerTimeout:     decMissing,
	postauth.ReasonProtocolViolation: decInvalid,
	postauth.ReasonFrameTooLarge:     decInvalid,
}

// byCode answers reasons the table does not list (a format of your own),
// by their code. An error without a code is invalid: never a pass.
var byCode = map[postauth.Code]Answer{
	postauth.CodeUnknown:      decInvalid,
	postauth.CodeRequired:     decMissing,
	postauth.CodeStale:        decStaleAnswer,
	postauth.CodeInvalid:      decInvalid,
	postauth.CodePolicyDenied: decDenied,
	postauth.CodeUnavailable:  decUnavailable,
	postauth.CodeCanceled:     decCanceled,
}

// Decide returns the answer for a refusal with code and reason. A listed
// reason decides alone, except that an appraisal may report a listed reason
// with a stronger code (a denial, an unavailable verdict) than the table's:
// the code then wins, so no refusal is ever answered more leniently than
// its code says.
func Decide(code postauth.Code, reason postauth.Reason) Answer {
	if d, ok := decisions[reason]; ok && reason.Code() == code {
		return d
	}
	if d, ok := byCode[code]; ok {
		return d
	}
	return decInvalid
}

// AnswerFor returns the table's answer for reason, and whether the table
// lists it.
func AnswerFor(reason postauth.Reason) (Answer, bool) {
	d, ok := decisions[reason]
	return d, ok
}
