package ear

// Reason tokens of the errors this package returns ([postauth.Error]
// Reason): short snake_case strings, safe to send to the peer. They are
// untyped constants here; the core's postauth.Reason will take them over.
//
// Tokens that already exist elsewhere in reattest are reused with the same
// meaning: format_not_accepted, binder_mismatch, key_hash_mismatch,
// evidence_invalid, posture_invalid, policy_invalid, verifier_timeout.
const (
	// ReasonFormatNotAccepted: not an EAR passport (passport Verifier), or
	// no local binding checker for the Evidence media type (RemoteVerifier).
	// CodeInvalid.
	ReasonFormatNotAccepted = "format_not_accepted"
	// ReasonBinderMismatch: the EAR's eat_nonce (passport), or the
	// Evidence's own freshness value checked locally (background check), is
	// not the connection's binder. CodeInvalid.
	ReasonBinderMismatch = "binder_mismatch"
	// ReasonKeyHashMismatch: the attested key (passport akpub), or the
	// Evidence's key hash checked locally, is not the authenticator key.
	// CodeInvalid.
	ReasonKeyHashMismatch = "key_hash_mismatch"
	// ReasonEvidenceInvalid: a local binding checker cannot read the
	// Evidence (background check; nothing is sent). CodeInvalid.
	ReasonEvidenceInvalid = "evidence_invalid"
	// ReasonPostureInvalid: the EAR's posture log does not replay to its
	// posture register value. CodeInvalid.
	ReasonPostureInvalid = "posture_invalid"
	// ReasonPolicyInvalid: the appraisal policy is invalid. CodeUnavailable.
	ReasonPolicyInvalid = "policy_invalid"
	// ReasonVerifierTimeout: the remote verifier did not answer before the
	// deadline (a late answer is never used). CodeUnavailable.
	ReasonVerifierTimeout = "verifier_timeout"

	// ReasonEARInvalid (new): the passport is not a well-formed EAR: not a
	// compact JWS, a header other than {alg: ES256, typ, kid}, malformed
	// claims, a wrong eat_profile, no iat or eat_nonce. CodeInvalid.
	ReasonEARInvalid = "ear_invalid"
	// ReasonEARSignature (new): no pinned verifier key verifies the EAR's
	// signature (an untrusted verifier, or a forged EAR). CodeInvalid.
	ReasonEARSignature = "ear_signature_invalid"
	// ReasonEARStale (new): the EAR is older than the policy's max age, its
	// exp has passed, or its iat is in the future. CodeStale.
	ReasonEARStale = "ear_stale"
	// ReasonEARPolicyDenied (new): a submodule's status or trust vector
	// fails the appraisal policy; Violations name the items.
	// CodePolicyDenied.
	ReasonEARPolicyDenied = "ear_policy_denied"
	// ReasonKeyAttestationMissing (new): the passport attests no key, or
	// two different keys. CodeInvalid.
	ReasonKeyAttestationMissing = "ear_key_attestation_missing"
	// ReasonVerifierUnavailable (new): the remote verifier is down or
	// answered with an error status. CodeUnavailable.
	ReasonVerifierUnavailable = "verifier_unavailable"
	// ReasonVerifierBusy (new): too many requests to the remote verifier
	// are in flight. CodeUnavailable.
	ReasonVerifierBusy = "verifier_busy"
	// ReasonVerifierError (new): the remote verifier's answer is unusable:
	// garbage, a protocol violation, an EAR that does not verify or is not
	// bound to the nonce sent. CodeUnavailable.
	ReasonVerifierError = "verifier_error"
	// ReasonCircuitOpen (new): the circuit breaker is open after repeated
	// verifier failures; no request was sent. CodeUnavailable.
	ReasonCircuitOpen = "verifier_circuit_open"
)
