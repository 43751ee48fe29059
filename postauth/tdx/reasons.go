package tdx

// Reason tokens of this format: the wire-safe Reason of the
// *postauth.Error values the Verifier returns. They are untyped string
// constants here so that they can move to postauth's typed reason list
// (postauth/reason.go) at merge; docs/tdx.md section 7 lists them with
// their codes. Tokens marked "core" already exist in package postauth or
// in another format with the same meaning.
const (
	// ReasonFormatNotAccepted (core, CodeInvalid): the CMW media type is
	// not MediaType.
	ReasonFormatNotAccepted = "format_not_accepted"
	// ReasonEvidenceInvalid (core, CodeInvalid): the Evidence or the quote
	// in it does not decode within the bounds of docs/tdx.md section 2.
	ReasonEvidenceInvalid = "evidence_invalid"
	// ReasonUntrustedAttester (core, CodeInvalid): the quote's PCK
	// certificate chain does not verify to a trusted root (or is not an
	// Intel-shaped chain, or a certificate in it is not valid now).
	ReasonUntrustedAttester = "untrusted_attester"
	// ReasonBadEvidenceSignature (core, CodeInvalid): the chain is trusted
	// but the quote signature, the QE report signature or the QE report
	// data (the attestation key binding) does not verify.
	ReasonBadEvidenceSignature = "bad_evidence_signature"
	// ReasonBinderMismatch (core, CodeInvalid): REPORTDATA is not
	// binder || zero padding.
	ReasonBinderMismatch = "binder_mismatch"
	// ReasonCollateralUnavailable (new, CodeUnavailable): the collateral
	// source returned no collateral for the platform (PCS down, unknown
	// FMSPC, timeout).
	ReasonCollateralUnavailable = "collateral_unavailable"
	// ReasonCollateralInvalid (new, CodeUnavailable): the collateral does
	// not verify (signature, signer chain, identifiers, or it belongs to
	// another platform). The Evidence may be fine: no verdict is reached.
	ReasonCollateralInvalid = "collateral_invalid"
	// ReasonCollateralExpired (new, CodeUnavailable): a piece of
	// collateral is past its nextUpdate plus the grace, or its signer's
	// certificate expired.
	ReasonCollateralExpired = "collateral_expired"
	// ReasonPCKRevoked (new, CodeInvalid): the PCK certificate is on the
	// PCK CRL, or the PCK Platform CA certificate on the root CA CRL.
	ReasonPCKRevoked = "pck_revoked"
	// ReasonTDXModuleMismatch (new, CodeInvalid): the quote's
	// MRSIGNERSEAM or SEAMATTRIBUTES do not match the TDX module of the
	// TCB info.
	ReasonTDXModuleMismatch = "tdx_module_mismatch"
	// ReasonQEIdentityMismatch (new, CodeInvalid): the quoting enclave is
	// not Intel's TD QE (QE vendor id, MRSIGNER, ISVPRODID, MISCSELECT or
	// ATTRIBUTES differ from the QE identity).
	ReasonQEIdentityMismatch = "qe_identity_mismatch"
	// ReasonTCBNotSupported (new, CodeInvalid): no TCB level of the TCB
	// info (or of the QE identity) matches the platform.
	ReasonTCBNotSupported = "tcb_not_supported"
	// ReasonPostureInvalid (core, CodeInvalid): the posture log does not
	// decode, does not use SHA-384 or does not replay to RTMR3.
	ReasonPostureInvalid = "posture_invalid"
	// ReasonPostureMissing (core, CodeInvalid): the Evidence carries no
	// posture log but the Verifier requires one.
	ReasonPostureMissing = "posture_missing"
	// ReasonTCBStatusDenied (new, CodePolicyDenied): a TCB status (the
	// platform's or the QE's) is neither allowed nor warned by the TCB
	// policy. Violations name the component and the status.
	ReasonTCBStatusDenied = "tcb_status_denied"
	// ReasonTDXPolicyDenied (new, CodePolicyDenied): the measurement
	// policy refuses the TD (MRTD, RTMRs, MRCONFIGID, MROWNER,
	// MROWNERCONFIG, MRSEAM, XFAM, debug, TEE TCB SVN). Violations name
	// every failed item, never values.
	ReasonTDXPolicyDenied = "tdx_policy_denied"
)
