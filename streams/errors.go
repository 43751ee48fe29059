package streams

import (
	"fmt"
	"strings"

	"github.com/reattest/reattest/postauth"
)

// ErrorCode is the application error code an attested connection is closed
// with: the code of a FrameClose over TLS, the QUIC application error code
// of CONNECTION_CLOSE over QUIC (docs/protocol.md section 10).
type ErrorCode uint64

// Error codes.
const (
	// NoError: an orderly close.
	NoError ErrorCode = 0x00
	// ProtocolError: a malformed, unknown or unexpected frame, too many
	// unanswered requests, data beyond the flow-control window, a reflected
	// request, or a peer that did not negotiate [ALPN].
	ProtocolError ErrorCode = 0x01
	// FrameTooLarge: a frame over the size limit of its type.
	FrameTooLarge ErrorCode = 0x02
	// EarlyData: application data the receiver does not accept: sent before
	// its verdict (with [Refuse]), or in QUIC 0-RTT.
	EarlyData ErrorCode = 0x03
	// AttestationRequired: the peer declined to attest (an empty
	// authenticator) or its answer carried no attestation.
	AttestationRequired ErrorCode = 0x10
	// AttestationTimeout: the peer did not answer a request within the
	// answer deadline.
	AttestationTimeout ErrorCode = 0x11
	// AttestationInvalid: the peer's answer failed a check (authenticator,
	// binding, Evidence, freshness).
	AttestationInvalid ErrorCode = 0x12
	// PolicyDenied: valid Evidence that the relying party's policy denies
	// (posture, appraisal hook).
	PolicyDenied ErrorCode = 0x13
	// VerifierUnavailable: no verdict could be reached (the verifier is
	// down or too slow). Never a pass.
	VerifierUnavailable ErrorCode = 0x14
)

var codeNames = map[ErrorCode]string{
	NoError:             "NO_ERROR",
	ProtocolError:       "PROTOCOL_ERROR",
	FrameTooLarge:       "FRAME_TOO_LARGE",
	EarlyData:           "EARLY_DATA",
	AttestationRequired: "ATTESTATION_REQUIRED",
	AttestationTimeout:  "ATTESTATION_TIMEOUT",
	AttestationInvalid:  "ATTESTATION_INVALID",
	PolicyDenied:        "POLICY_DENIED",
	VerifierUnavailable: "VERIFIER_UNAVAILABLE",
}

func (c ErrorCode) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("ERROR_0x%x", uint64(c))
}

// CodeFor returns the error code a connection is closed with because of
// err: by its reason where the binding names one, otherwise by its
// postauth code. An error without a code is ATTESTATION_INVALID: never a
// pass.
func CodeFor(err error) ErrorCode {
	if err == nil {
		return NoError
	}
	switch postauth.ReasonOf(err) {
	case postauth.ReasonProtocolViolation, postauth.ReasonWrongRequestType:
		return ProtocolError
	case postauth.ReasonFrameTooLarge:
		return FrameTooLarge
	case postauth.ReasonEarlyData:
		return EarlyData
	case postauth.ReasonAnswerTimeout:
		return AttestationTimeout
	}
	switch postauth.CodeOf(err) {
	case postauth.CodeRequired:
		return AttestationRequired
	case postauth.CodePolicyDenied:
		return PolicyDenied
	case postauth.CodeUnavailable, postauth.CodeCanceled:
		return VerifierUnavailable
	}
	return AttestationInvalid
}

// CloseError is the error of an attested connection that was closed with
// an error code, by either endpoint. Reads and writes on the connection
// return it. Code and Reason are what travelled on the wire; Err is the
// local cause (a *postauth.Error for attestation failures, so
// [postauth.CodeOf] and [postauth.ReasonOf] work on a CloseError), for
// logs only.
type CloseError struct {
	// Code is the application error code.
	Code ErrorCode
	// Reason is the wire-safe reason token ("" if none or unknown).
	Reason postauth.Reason
	// Remote is true if the peer closed the connection.
	Remote bool
	// Err is the cause. For a remote close, a *postauth.Error built from
	// the peer's reason (or nil for NoError).
	Err error
}

func (e *CloseError) Error() string {
	var b strings.Builder
	b.WriteString("streams: connection closed")
	if e.Remote {
		b.WriteString(" by the peer")
	}
	b.WriteString(": ")
	b.WriteString(e.Code.String())
	if e.Reason != "" {
		b.WriteString(" (")
		b.WriteString(string(e.Reason))
		b.WriteString(")")
	}
	if e.Err != nil && !e.Remote {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *CloseError) Unwrap() error { return e.Err }

// closeErrorFor returns the local CloseError for a failure err.
func closeErrorFor(err error) *CloseError {
	r := postauth.ReasonOf(err)
	if !r.Known() {
		r = ""
	}
	return &CloseError{Code: CodeFor(err), Reason: r, Err: err}
}

// remoteCloseError returns the CloseError of a close the peer sent. Only
// reasons that postauth lists are kept.
func remoteCloseError(code ErrorCode, reason postauth.Reason) *CloseError {
	if !reason.Known() {
		reason = ""
	}
	ce := &CloseError{Code: code, Reason: reason, Remote: true}
	if code != NoError {
		if reason != "" {
			ce.Err = postauth.ErrorFor(reason, nil)
		} else {
			ce.Err = postauth.NewError(code.postauthCode(), "", nil)
		}
	}
	return ce
}

// RemoteError returns the CloseError of a close the peer sent with code and
// reason (for bindings: a QUIC CONNECTION_CLOSE).
func RemoteError(code ErrorCode, reason string) *CloseError {
	return remoteCloseError(code, postauth.Reason(reason))
}

// postauthCode is the postauth code closest to c, for a remote close
// without a known reason.
func (c ErrorCode) postauthCode() postauth.Code {
	switch c {
	case AttestationRequired, AttestationTimeout, EarlyData:
		return postauth.CodeRequired
	case PolicyDenied:
		return postauth.CodePolicyDenied
	case VerifierUnavailable:
		return postauth.CodeUnavailable
	}
	return postauth.CodeInvalid
}
