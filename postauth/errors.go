package postauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Code classifies a failed attestation so that a protocol adapter (HTTP
// middleware, client transport) can map it to a response without looking at
// the internal cause. The mapping to HTTP lives in package middleware.
type Code uint8

const (
	// CodeUnknown is returned by [CodeOf] for errors that carry no code.
	// Adapters treat it like CodeInvalid: it never lets a request through.
	CodeUnknown Code = iota
	// CodeRequired: no attestation was presented where one is needed.
	CodeRequired
	// CodeStale: an earlier attestation exists but is too old, or the peer's
	// posture changed since.
	CodeStale
	// CodeInvalid: an authenticator or its Evidence failed a check (bad
	// signature, unknown or reused context, binder mismatch, ...).
	CodeInvalid
	// CodePolicyDenied: the Evidence is valid but the appraisal policy says
	// no (posture, measurements). [Error.Violations] names the failed items.
	CodePolicyDenied
	// CodeUnavailable: the verdict could not be reached (verifier down or
	// too slow). This is never a pass.
	CodeUnavailable
	// CodeCanceled: the caller went away (context canceled). Not an attack and
	// not a verifier failure; adapters should not count it as either.
	CodeCanceled
)

var codeNames = [...]string{
	CodeUnknown:      "unknown",
	CodeRequired:     "required",
	CodeStale:        "stale",
	CodeInvalid:      "invalid",
	CodePolicyDenied: "policy_denied",
	CodeUnavailable:  "unavailable",
	CodeCanceled:     "canceled",
}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Error is a failed attestation step. Code and Reason (and Violations) are
// safe to show to the peer; Err is the internal cause and must never be
// written to the wire, since it may name keys, claims or library internals.
type Error struct {
	Code Code
	// Reason is a short, stable token (for example [ReasonContextReused])
	// that adapters may send to the peer.
	Reason Reason
	// Violations lists the policy items that failed (CodePolicyDenied only),
	// for example "tool:shell forbidden". They name items, never Evidence.
	Violations []string
	// RetryAfter suggests when to try again (CodeUnavailable only).
	RetryAfter time.Duration
	// Err is the internal cause, for logs.
	Err error
}

func (e *Error) Error() string {
	if e == nil {
		return "postauth: <nil error>"
	}
	var b strings.Builder
	b.WriteString("postauth: ")
	b.WriteString(e.Code.String())
	if e.Reason != "" {
		b.WriteString(" (")
		b.WriteString(string(e.Reason))
		b.WriteString(")")
	}
	if len(e.Violations) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(e.Violations, "; "))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

// NewError returns an *Error with the given code, wire-safe reason and
// internal cause.
func NewError(c Code, reason Reason, cause error) *Error {
	return &Error{Code: c, Reason: reason, Err: cause}
}

// ErrorFor returns an *Error for reason, with the code the reason is
// reported with ([Reason.Code]; CodeInvalid for an unlisted reason).
func ErrorFor(reason Reason, cause error) *Error {
	c := reason.Code()
	if c == CodeUnknown {
		c = CodeInvalid
	}
	return &Error{Code: c, Reason: reason, Err: cause}
}

// ReasonOf returns the reason of the first *Error in err's chain, or "".
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) && e != nil {
		return e.Reason
	}
	return ""
}

// CodeOf returns the code of the first *Error in err's chain. A context
// cancellation maps to CodeCanceled and a deadline to CodeUnavailable;
// anything else without a code is CodeUnknown.
func CodeOf(err error) Code {
	if err == nil {
		return CodeUnknown
	}
	var e *Error
	if errors.As(err, &e) {
		if e == nil {
			return CodeUnknown // a typed nil *Error: treated as invalid, never a pass
		}
		return e.Code
	}
	switch {
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return CodeUnavailable
	}
	return CodeUnknown
}

// Sentinel causes. They are wrapped in an *Error with a code; test with
// [errors.Is].
var (
	ErrNotTLS13              = errors.New("postauth: connection is not TLS 1.3")
	ErrHandshakeIncomplete   = errors.New("postauth: TLS handshake not complete")
	ErrNoConnectionState     = errors.New("postauth: no TLS connection state")
	ErrUnsupportedSuite      = errors.New("postauth: unsupported cipher suite")
	ErrMalformed             = errors.New("postauth: malformed message")
	ErrTooLarge              = errors.New("postauth: message too large")
	ErrWrongRequestType      = errors.New("postauth: request type does not match the responder's role")
	ErrUnknownContext        = errors.New("postauth: unknown certificate_request_context")
	ErrContextReused         = errors.New("postauth: certificate_request_context already used")
	ErrContextExpired        = errors.New("postauth: certificate_request_context expired")
	ErrContextMismatch       = errors.New("postauth: certificate_request_context does not match the request")
	ErrOperationMismatch     = errors.New("postauth: authenticator was made for another operation")
	ErrRefused               = errors.New("postauth: peer refused to authenticate (empty authenticator)")
	ErrUnexpectedExtension   = errors.New("postauth: certificate carries an extension the request did not offer")
	ErrUnsupportedScheme     = errors.New("postauth: signature scheme not offered or not allowed")
	ErrBadSignature          = errors.New("postauth: CertificateVerify signature invalid")
	ErrBadFinished           = errors.New("postauth: Finished MAC invalid")
	ErrBadCertificate        = errors.New("postauth: certificate invalid")
	ErrKeyNotTrusted         = errors.New("postauth: authenticator key is not trusted")
	ErrNoKeyTrust            = errors.New("postauth: no way to trust the authenticator key: use mutual TLS, set Roots, or opt in to KeyTrustAttestedKeyOnly")
	ErrAttestationNotOffered = errors.New("postauth: request did not offer cmw_attestation")
	ErrNoAttestation         = errors.New("postauth: authenticator carries no attestation")
	ErrUnsupportedCMW        = errors.New("postauth: unsupported CMW")
	ErrFormatNotAccepted     = errors.New("postauth: evidence format not accepted")
	ErrBinderMismatch        = errors.New("postauth: evidence freshness value does not match the connection binder")
	ErrKeyHashMismatch       = errors.New("postauth: evidence key hash does not match the authenticator key")
	ErrEvidence              = errors.New("postauth: evidence verification failed")
)

// invalid wraps cause in a CodeInvalid *Error with the given reason.
func invalid(reason Reason, cause error) *Error {
	return &Error{Code: CodeInvalid, Reason: reason, Err: cause}
}
