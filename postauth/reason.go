package postauth

import (
	"slices"
)

// Reason is a short, stable token that says why attestation did not pass
// (docs/protocol.md, section 7). Reasons are safe to send to the peer: they
// name a check, never Evidence, keys or claims. Every token that can reach
// the wire has a constant below; [Reason.Code] gives the [Code] it is
// reported with.
//
// The HTTP binding (package middleware) maps each reason to a status, a
// challenge and a problem type in one table; Evidence formats use the
// format reasons. A format of your own may use a Reason not listed here: it
// is then handled by its Code alone.
type Reason string

// Layer 1: the TLS connection and the Exported Authenticator (RFC 9261).
const (
	// ReasonNoTLS: the request did not arrive over TLS, or the connection
	// state is unusable.
	ReasonNoTLS Reason = "no_tls"
	// ReasonTLS13Required: the connection is not TLS 1.3.
	ReasonTLS13Required Reason = "tls13_required"
	// ReasonHandshakeIncomplete: the TLS handshake has not completed (0-RTT).
	ReasonHandshakeIncomplete Reason = "handshake_incomplete"
	// ReasonUnsupportedSuite: the TLS 1.3 cipher suite is not supported.
	ReasonUnsupportedSuite Reason = "unsupported_suite"
	// ReasonExporterFailed: the TLS exporter returned an error.
	ReasonExporterFailed Reason = "exporter_failed"
	// ReasonMalformed: the authenticator or its cmw_attestation data does
	// not parse, or is too large.
	ReasonMalformed Reason = "malformed"
	// ReasonWrongRequestType: a request of the type the sender itself
	// answers (a reflected request).
	ReasonWrongRequestType Reason = "wrong_request_type"
	// ReasonContextMismatch: the authenticator's context is not the
	// request's, or a context was used in the wrong mode.
	ReasonContextMismatch Reason = "context_mismatch"
	// ReasonUnsupportedExtension: a certificate extension the request did not
	// offer, or cmw_attestation outside the end-entity entry.
	ReasonUnsupportedExtension Reason = "unsupported_extension"
	// ReasonBadFinished: the Finished MAC does not verify.
	ReasonBadFinished Reason = "bad_finished"
	// ReasonUnsupportedScheme: a signature scheme that was not offered, is
	// not accepted, or does not fit the key.
	ReasonUnsupportedScheme Reason = "unsupported_scheme"
	// ReasonBadCertificate: the authenticator's certificate does not parse or
	// its key is not accepted (type, size, exponent).
	ReasonBadCertificate Reason = "bad_certificate"
	// ReasonBadSignature: the CertificateVerify signature does not verify.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonKeyNotTrusted: the key trust mode does not accept the
	// authenticator key.
	ReasonKeyNotTrusted Reason = "key_not_trusted"
	// ReasonAttestationRefused: the peer declined with an empty
	// authenticator.
	ReasonAttestationRefused Reason = "attestation_refused"
)

// Requests and their contexts (docs/protocol.md, section 3).
const (
	// ReasonUnknownContext: the context was never issued on this connection
	// (or was forgotten).
	ReasonUnknownContext Reason = "unknown_context"
	// ReasonContextReused: the context was already answered.
	ReasonContextReused Reason = "context_reused"
	// ReasonContextExpired: the context was answered after its lifetime.
	ReasonContextExpired Reason = "context_expired"
	// ReasonOperationMismatch: the answer was made for another operation.
	ReasonOperationMismatch Reason = "operation_mismatch"
)

// Layer 2: Evidence bound to the connection (draft-fossati-seat-expat).
const (
	// ReasonAttestationNotOffered: the request did not offer
	// cmw_attestation.
	ReasonAttestationNotOffered Reason = "attestation_not_offered"
	// ReasonNoAttestation: the authenticator, or the appraisal, carries no
	// attestation.
	ReasonNoAttestation Reason = "no_attestation"
	// ReasonUnsupportedCMW: the CMW record is not supported (a collection, a
	// bad media type, a bad indicator).
	ReasonUnsupportedCMW Reason = "unsupported_cmw"
	// ReasonFormatNotAccepted: the Evidence media type is not accepted here.
	ReasonFormatNotAccepted Reason = "format_not_accepted"
	// ReasonEvidenceInvalid: the Evidence failed a check of its format.
	ReasonEvidenceInvalid Reason = "evidence_invalid"
	// ReasonBinderMismatch: the Evidence's freshness value is not this
	// connection's binder.
	ReasonBinderMismatch Reason = "binder_mismatch"
	// ReasonKeyHashMismatch: the Evidence vouches for another key.
	ReasonKeyHashMismatch Reason = "key_hash_mismatch"
	// ReasonVerifierTimeout: the verifier did not answer in time.
	ReasonVerifierTimeout Reason = "verifier_timeout"
	// ReasonVerifierFailed: the verifier or an appraisal hook failed
	// (panicked) without a verdict.
	ReasonVerifierFailed Reason = "verifier_failed"
	// ReasonCanceled: the caller went away.
	ReasonCanceled Reason = "canceled"
)

// Evidence formats (postauth/softeat, postauth/tpm, postauth/tdx).
const (
	// ReasonUntrustedAttester: the Evidence is signed by a key the verifier
	// does not trust.
	ReasonUntrustedAttester Reason = "untrusted_attester"
	// ReasonBadEvidenceSignature: the Evidence signature does not verify.
	ReasonBadEvidenceSignature Reason = "bad_evidence_signature"
	// ReasonUnknownMachine: the Evidence comes from a machine the verifier
	// does not accept.
	ReasonUnknownMachine Reason = "unknown_machine"
	// ReasonEvidenceStale: the Evidence was produced outside the accepted
	// time window.
	ReasonEvidenceStale Reason = "evidence_stale"
	// ReasonPostureInvalid: the posture log does not replay to the attested
	// register value.
	ReasonPostureInvalid Reason = "posture_invalid"
	// ReasonPostureMissing: the Evidence carries no posture where the
	// verifier requires one.
	ReasonPostureMissing Reason = "posture_missing"
	// ReasonPCRSelectionMismatch: the reported PCRs are not the quoted
	// selection (TPM).
	ReasonPCRSelectionMismatch Reason = "pcr_selection_mismatch"
	// ReasonPCRDigestMismatch: the reported PCR values do not hash to the
	// quoted digest (TPM).
	ReasonPCRDigestMismatch Reason = "pcr_digest_mismatch"
	// ReasonPCRPolicyDenied: PCR values outside the verifier's policy (TPM).
	ReasonPCRPolicyDenied Reason = "pcr_policy_denied"
	// ReasonKeyNotResident: the verifier requires a hardware-resident
	// authenticator key and the Evidence does not certify one (TPM: no
	// TPM2_Certify of the key).
	ReasonKeyNotResident Reason = "key_not_resident"
	// ReasonKeyCertificationInvalid: the Evidence's certification of the
	// authenticator key does not certify the key it names, or certifies a
	// key that may leave the hardware (TPM).
	ReasonKeyCertificationInvalid Reason = "key_certification_invalid"
	// ReasonEKInvalid: the endorsement key certificate is missing where the
	// verifier requires it, does not chain to a trusted manufacturer root,
	// or is not the EK the AK certificate was issued for (TPM).
	ReasonEKInvalid Reason = "ek_invalid"
	// ReasonEventLogInvalid: the boot event log is missing where the
	// verifier requires it, does not parse, or does not replay to the
	// quoted PCR values (TPM).
	ReasonEventLogInvalid Reason = "event_log_invalid"
)

// Remote verification (postauth/ear): EAR passports and the background
// check against a verifier service (docs/verification.md).
const (
	// ReasonEARInvalid: a passport that is not a well-formed EAR (not a
	// compact JWS, a header other than {alg: ES256, typ, kid}, malformed
	// claims, a wrong eat_profile, no iat or eat_nonce).
	ReasonEARInvalid Reason = "ear_invalid"
	// ReasonEARSignatureInvalid: no pinned verifier key verifies the EAR's
	// signature (an untrusted verifier, or a forged EAR).
	ReasonEARSignatureInvalid Reason = "ear_signature_invalid"
	// ReasonEARStale: the EAR is older than the policy's max age, its exp
	// has passed, or its iat is in the future.
	ReasonEARStale Reason = "ear_stale"
	// ReasonEARPolicyDenied: a submodule's status or trust vector fails the
	// EAR appraisal policy; the error's Violations name the items.
	ReasonEARPolicyDenied Reason = "ear_policy_denied"
	// ReasonEARKeyAttestationMissing: the passport attests no key, or two
	// different keys.
	ReasonEARKeyAttestationMissing Reason = "ear_key_attestation_missing"
	// ReasonVerifierUnavailable: the remote verifier is down or answered
	// with an error status.
	ReasonVerifierUnavailable Reason = "verifier_unavailable"
	// ReasonVerifierBusy: too many requests to the remote verifier are in
	// flight.
	ReasonVerifierBusy Reason = "verifier_busy"
	// ReasonVerifierError: the remote verifier's answer is unusable
	// (garbage, a protocol violation, an EAR that does not verify or is not
	// bound to the nonce sent).
	ReasonVerifierError Reason = "verifier_error"
	// ReasonVerifierCircuitOpen: the circuit breaker is open after repeated
	// verifier failures; no request was sent.
	ReasonVerifierCircuitOpen Reason = "verifier_circuit_open"
)

// Intel TDX quotes and Intel's collateral (postauth/tdx). The collateral
// reasons are CodeUnavailable: the Evidence may be fine, but no verdict is
// reached without valid collateral.
const (
	// ReasonCollateralUnavailable: no collateral (TCB info, QE identity,
	// CRLs) for the quote's platform could be obtained (PCS down, unknown
	// FMSPC, timeout).
	ReasonCollateralUnavailable Reason = "collateral_unavailable"
	// ReasonCollateralInvalid: the collateral does not verify (signature,
	// signer chain, identifiers, another platform, a CRL older than one
	// already accepted).
	ReasonCollateralInvalid Reason = "collateral_invalid"
	// ReasonCollateralExpired: a piece of collateral is past its nextUpdate
	// (plus the verifier's grace), or its signer's certificate expired.
	ReasonCollateralExpired Reason = "collateral_expired"
	// ReasonPCKRevoked: the platform's PCK certificate, or its CA, is on a
	// current CRL.
	ReasonPCKRevoked Reason = "pck_revoked"
	// ReasonTDXModuleMismatch: the quote's TDX module signer or attributes
	// are not those of Intel's TCB info.
	ReasonTDXModuleMismatch Reason = "tdx_module_mismatch"
	// ReasonQEIdentityMismatch: the quoting enclave is not Intel's TD QE.
	ReasonQEIdentityMismatch Reason = "qe_identity_mismatch"
	// ReasonTCBNotSupported: no TCB level of Intel's collateral matches the
	// platform.
	ReasonTCBNotSupported Reason = "tcb_not_supported"
	// ReasonTCBStatusDenied: the platform's or the quoting enclave's TCB
	// status is not allowed by the TCB policy; the error's Violations name
	// them.
	ReasonTCBStatusDenied Reason = "tcb_status_denied"
	// ReasonTDXPolicyDenied: the TD's measurements are outside the
	// verifier's measurement policy; the error's Violations name every
	// failed item.
	ReasonTDXPolicyDenied Reason = "tdx_policy_denied"
)

// Appraisal policy.
const (
	// ReasonPolicyDenied: an appraisal hook said no, without a reason of its
	// own.
	ReasonPolicyDenied Reason = "policy_denied"
	// ReasonPostureDenied: the posture policy denied the posture; the error's
	// Violations name every failed item.
	ReasonPostureDenied Reason = "posture_denied"
	// ReasonPolicyInvalid: the policy itself is invalid (or nil): never a
	// pass.
	ReasonPolicyInvalid Reason = "policy_invalid"
)

// The HTTP binding (package middleware and package transports). The first
// four are also the error parameter of the WWW-Authenticate challenge.
const (
	// ReasonAttestationRequired: no verdict for this route on this
	// connection.
	ReasonAttestationRequired Reason = "attestation_required"
	// ReasonAttestationStale: the cached verdict passed its max-age or the
	// verifier's expiry.
	ReasonAttestationStale Reason = "attestation_stale"
	// ReasonPostureChanged: the posture hint differs from the cached
	// verdict's.
	ReasonPostureChanged Reason = "posture_changed"
	// ReasonInvalidAttestation: the challenge error for an answer that failed
	// a check (the problem body names the precise reason).
	ReasonInvalidAttestation Reason = "invalid_attestation"
	// ReasonMalformedHeader: an Attestation header that is not a byte
	// sequence within its size limit.
	ReasonMalformedHeader Reason = "malformed_header"
	// ReasonEarlyData: the request came as TLS early data (0-RTT).
	ReasonEarlyData Reason = "early_data"
	// ReasonBadBody: operation mode: the request body cannot be read.
	ReasonBadBody Reason = "bad_body"
	// ReasonBodyTooLarge: operation mode: the request body is over the
	// route's limit.
	ReasonBodyTooLarge Reason = "body_too_large"
	// ReasonConnectionClosed: the connection closed while the request was
	// being decided.
	ReasonConnectionClosed Reason = "connection_closed"
	// ReasonMisconfigured: the server's attestation configuration cannot
	// decide this request (for example a route protected twice with
	// incompatible policies). Never a pass.
	ReasonMisconfigured Reason = "misconfigured"
)

// The stream binding (package streams: raw TLS and QUIC connections with
// periodic re-attestation). Each closes the connection; docs/protocol.md
// section 10 gives the application error code it is sent with.
const (
	// ReasonAnswerTimeout: the peer did not answer an attestation request
	// within the answer deadline.
	ReasonAnswerTimeout Reason = "answer_timeout"
	// ReasonProtocolViolation: a frame that is malformed, unknown, or not
	// allowed in the connection's state (an authenticator nobody asked for,
	// more unanswered requests or more data than allowed, a wrong
	// application protocol).
	ReasonProtocolViolation Reason = "protocol_violation"
	// ReasonFrameTooLarge: a frame over the size limit of its type.
	ReasonFrameTooLarge Reason = "frame_too_large"
)

// Scale-out: replicas that share revocations, invalidations, policy and
// rate limits through a coordinator (middleware.WithCoordinator,
// middleware.WithLimits; docs/scale-out.md).
const (
	// ReasonAttesterRevoked: the attester (its key, machine, posture,
	// subject or attestation key) is revoked: its cached verdicts are dropped and its new
	// Evidence is refused until the revocation expires.
	ReasonAttesterRevoked Reason = "attester_revoked"
	// ReasonVerdictInvalidated: the cached verdict was dropped because a
	// replica saw the attester's posture change or denied it, the shared
	// policy changed and denies it, or the replica resynchronised with the
	// coordinator. The attester re-attests.
	ReasonVerdictInvalidated Reason = "verdict_invalidated"
	// ReasonVerdictUnconfirmed: the coordinator is unreachable, so no cached
	// verdict is trusted (it might have been revoked): every high-impact
	// request re-attests.
	ReasonVerdictUnconfirmed Reason = "verdict_unconfirmed"
	// ReasonCoordinatorUnavailable: the coordinator is unreachable and the
	// server is configured to deny high-impact requests meanwhile.
	ReasonCoordinatorUnavailable Reason = "coordinator_unavailable"
	// ReasonRateLimited: the peer, or every peer together, is over the
	// rate limit of verifications.
	ReasonRateLimited Reason = "rate_limited"
)

// reasonCodes gives the code each reason is reported with.
var reasonCodes = map[Reason]Code{
	ReasonNoTLS:                    CodeInvalid,
	ReasonTLS13Required:            CodeInvalid,
	ReasonHandshakeIncomplete:      CodeInvalid,
	ReasonUnsupportedSuite:         CodeInvalid,
	ReasonExporterFailed:           CodeInvalid,
	ReasonMalformed:                CodeInvalid,
	ReasonWrongRequestType:         CodeInvalid,
	ReasonContextMismatch:          CodeInvalid,
	ReasonUnsupportedExtension:     CodeInvalid,
	ReasonBadFinished:              CodeInvalid,
	ReasonUnsupportedScheme:        CodeInvalid,
	ReasonBadCertificate:           CodeInvalid,
	ReasonBadSignature:             CodeInvalid,
	ReasonKeyNotTrusted:            CodeInvalid,
	ReasonAttestationRefused:       CodeRequired,
	ReasonUnknownContext:           CodeInvalid,
	ReasonContextReused:            CodeInvalid,
	ReasonContextExpired:           CodeStale,
	ReasonOperationMismatch:        CodeInvalid,
	ReasonAttestationNotOffered:    CodeInvalid,
	ReasonNoAttestation:            CodeRequired,
	ReasonUnsupportedCMW:           CodeInvalid,
	ReasonFormatNotAccepted:        CodeInvalid,
	ReasonEvidenceInvalid:          CodeInvalid,
	ReasonBinderMismatch:           CodeInvalid,
	ReasonKeyHashMismatch:          CodeInvalid,
	ReasonVerifierTimeout:          CodeUnavailable,
	ReasonVerifierFailed:           CodeUnavailable,
	ReasonCanceled:                 CodeCanceled,
	ReasonUntrustedAttester:        CodeInvalid,
	ReasonBadEvidenceSignature:     CodeInvalid,
	ReasonUnknownMachine:           CodeInvalid,
	ReasonEvidenceStale:            CodeStale,
	ReasonPostureInvalid:           CodeInvalid,
	ReasonPostureMissing:           CodeInvalid,
	ReasonPCRSelectionMismatch:     CodeInvalid,
	ReasonPCRDigestMismatch:        CodeInvalid,
	ReasonPCRPolicyDenied:          CodePolicyDenied,
	ReasonCollateralUnavailable:    CodeUnavailable,
	ReasonCollateralInvalid:        CodeUnavailable,
	ReasonCollateralExpired:        CodeUnavailable,
	ReasonPCKRevoked:               CodeInvalid,
	ReasonTDXModuleMismatch:        CodeInvalid,
	ReasonQEIdentityMismatch:       CodeInvalid,
	ReasonTCBNotSupported:          CodeInvalid,
	ReasonTCBStatusDenied:          CodePolicyDenied,
	ReasonTDXPolicyDenied:          CodePolicyDenied,
	ReasonEARInvalid:               CodeInvalid,
	ReasonEARSignatureInvalid:      CodeInvalid,
	ReasonEARStale:                 CodeStale,
	ReasonEARPolicyDenied:          CodePolicyDenied,
	ReasonEARKeyAttestationMissing: CodeInvalid,
	ReasonVerifierUnavailable:      CodeUnavailable,
	ReasonVerifierBusy:             CodeUnavailable,
	ReasonVerifierError:            CodeUnavailable,
	ReasonVerifierCircuitOpen:      CodeUnavailable,
	ReasonPolicyDenied:             CodePolicyDenied,
	ReasonPostureDenied:            CodePolicyDenied,
	ReasonPolicyInvalid:            CodeUnavailable,
	ReasonAttestationRequired:      CodeRequired,
	ReasonAttestationStale:         CodeStale,
	ReasonPostureChanged:           CodeStale,
	ReasonInvalidAttestation:       CodeInvalid,
	ReasonMalformedHeader:          CodeInvalid,
	ReasonEarlyData:                CodeRequired,
	ReasonBadBody:                  CodeInvalid,
	ReasonBodyTooLarge:             CodeInvalid,
	ReasonConnectionClosed:         CodeCanceled,
	ReasonMisconfigured:            CodeUnavailable,
	ReasonKeyNotResident:           CodePolicyDenied,
	ReasonKeyCertificationInvalid:  CodeInvalid,
	ReasonEKInvalid:                CodeInvalid,
	ReasonEventLogInvalid:          CodeInvalid,

	// Scale-out.
	ReasonAttesterRevoked:        CodePolicyDenied,
	ReasonVerdictInvalidated:     CodeStale,
	ReasonVerdictUnconfirmed:     CodeStale,
	ReasonCoordinatorUnavailable: CodeUnavailable,
	ReasonRateLimited:            CodeUnavailable,

	// The stream binding.
	ReasonAnswerTimeout:     CodeRequired,
	ReasonProtocolViolation: CodeInvalid,
	ReasonFrameTooLarge:     CodeInvalid,
}

// Code is the code r is reported with, or CodeUnknown for a reason that is
// not listed here (a format of your own).
func (r Reason) Code() Code { return reasonCodes[r] }

// Known reports whether r is one of the reasons listed in this package.
func (r Reason) Known() bool {
	_, ok := reasonCodes[r]
	return ok
}

// Reasons returns every listed reason, sorted.
func Reasons() []Reason {
	out := make([]Reason, 0, len(reasonCodes))
	for r := range reasonCodes {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}
