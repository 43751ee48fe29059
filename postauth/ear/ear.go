package ear

import (
	"fmt"
	"mime"
	"strings"
)

// Profile is the eat_profile of an EAR (draft-ietf-rats-ear, Veraison).
const Profile = "tag:github.com,2023:veraison/ear"

// MediaType is the CMW media type of a passport: an EAR in a JWT.
const MediaType = `application/eat+jwt; eat_profile="` + Profile + `"`

// Format is the format name a passport [Verifier] reports
// ([postauth.Result.Format]).
const Format = "passport"

// Veraison challenge-response API v1 (docs/verification.md).
const (
	// SessionMediaType is the media type of the session resource.
	SessionMediaType = "application/vnd.veraison.challenge-response-session+json"
	// DiscoveryMediaType is the media type of the well-known document.
	DiscoveryMediaType = "application/vnd.veraison.discovery+json"
	// ProblemMediaType is the media type of error bodies (RFC 9457).
	ProblemMediaType = "application/problem+json"
	// NewSessionPath creates a session: POST, ?nonce=<base64> or ?nonceSize=N.
	NewSessionPath = "/challenge-response/v1/newSession"
	// SessionPath is the prefix of a session resource: POST Evidence, GET,
	// DELETE on SessionPath + id.
	SessionPath = "/challenge-response/v1/session/"
	// WellKnownPath gives the EAR verification key and the media types.
	WellKnownPath = "/.well-known/veraison/verification"
	// HeaderAuthenticatorKey (a reattest extension of the API) carries the
	// DER SubjectPublicKeyInfo of the authenticator key, as an RFC 9651
	// byte sequence (":base64:"), on the Evidence POST. A verifier that
	// knows it puts it in the EAR's key attestation, but only if the
	// Evidence vouches for that key. Veraison ignores it.
	HeaderAuthenticatorKey = "Reattest-Authenticator-Key"
)

// Session states of the challenge-response API.
const (
	StateWaiting    = "waiting"
	StateProcessing = "processing"
	StateComplete   = "complete"
	StateFailed     = "failed"
)

// EAR claim names (draft-ietf-rats-ear, veraison/ear).
const (
	ClaimProfile           = "eat_profile"
	ClaimIssuedAt          = "iat"
	ClaimExpiry            = "exp"
	ClaimNonce             = "eat_nonce"
	ClaimVerifierID        = "ear.verifier-id"
	ClaimSubmods           = "submods"
	ClaimStatus            = "ear.status"
	ClaimTrustVector       = "ear.trustworthiness-vector"
	ClaimPolicyID          = "ear.appraisal-policy-id"
	ClaimAnnotatedEvidence = "ear.veraison.annotated-evidence"
	ClaimPolicyClaims      = "ear.veraison.policy-claims"
	ClaimKeyAttestation    = "ear.veraison.key-attestation"
	// ClaimAKPub is the member of ClaimKeyAttestation: base64url (no
	// padding) of the DER SubjectPublicKeyInfo of the attested key.
	ClaimAKPub = "akpub"
)

// Annotated-evidence members (inside a submodule's
// "ear.veraison.annotated-evidence") that carry what the Evidence verified.
// A reattest verifier writes them; Veraison schemes write their own
// members, which this package ignores.
const (
	// AnnotationFormat: string, the Evidence format ("software-eat").
	AnnotationFormat = "reattest.format"
	// AnnotationMediaType: string, the Evidence media type.
	AnnotationMediaType = "reattest.media-type"
	// AnnotationKeyHash: string "sha-256:<hex>", the authenticator key
	// hash the Evidence vouches for, as the Evidence carries it.
	AnnotationKeyHash = "reattest.key-hash"
	// AnnotationMachineID: string, base64url (no padding) of the machine
	// identifier (EAT ueid, TPM AK name).
	AnnotationMachineID = "reattest.machine-id"
	// AnnotationAttestationKeyID: string, base64url (no padding) of the
	// key that signed the Evidence (postauth.Appraisal.AttestationKeyID:
	// a software EAT kid, a TPM AK's), at most 64 bytes.
	AnnotationAttestationKeyID = "reattest.attestation-key-id"
	// AnnotationAttestedAt: integer, Unix seconds when the Evidence was
	// produced.
	AnnotationAttestedAt = "reattest.attested-at"
	// AnnotationPostureHead: string "sha-256:<hex>", the posture register
	// value the Evidence covers.
	AnnotationPostureHead = "reattest.posture-head"
	// AnnotationPostureLog: string, base64url (no padding) of the posture
	// log that replays to AnnotationPostureHead.
	AnnotationPostureLog = "reattest.posture-log"
)

// Trust-vector claim names (AR4SI, in the order of the draft).
const (
	ClaimInstanceIdentity = "instance-identity"
	ClaimConfiguration    = "configuration"
	ClaimExecutables      = "executables"
	ClaimFileSystem       = "file-system"
	ClaimHardware         = "hardware"
	ClaimRuntimeOpaque    = "runtime-opaque"
	ClaimStorageOpaque    = "storage-opaque"
	ClaimSourcedData      = "sourced-data"
)

// TrustVectorClaims lists the trust-vector claim names.
var TrustVectorClaims = []string{
	ClaimInstanceIdentity, ClaimConfiguration, ClaimExecutables, ClaimFileSystem,
	ClaimHardware, ClaimRuntimeOpaque, ClaimStorageOpaque, ClaimSourcedData,
}

func isTrustClaim(name string) bool {
	for _, c := range TrustVectorClaims {
		if c == name {
			return true
		}
	}
	return false
}

// Status is an EAR trust tier: the value of ear.status, and the tier of a
// trust-vector claim.
type Status int8

// Trust tiers (draft-ietf-rats-ear).
const (
	StatusNone            Status = 0
	StatusAffirming       Status = 2
	StatusWarning         Status = 32
	StatusContraindicated Status = 96
)

// String returns the tier name: "none", "affirming", "warning" or
// "contraindicated".
func (s Status) String() string {
	switch s {
	case StatusNone:
		return "none"
	case StatusAffirming:
		return "affirming"
	case StatusWarning:
		return "warning"
	case StatusContraindicated:
		return "contraindicated"
	}
	return fmt.Sprintf("status(%d)", int8(s))
}

// ParseStatus parses a tier name.
func ParseStatus(s string) (Status, error) {
	switch s {
	case "none":
		return StatusNone, nil
	case "affirming":
		return StatusAffirming, nil
	case "warning":
		return StatusWarning, nil
	case "contraindicated":
		return StatusContraindicated, nil
	}
	return 0, fmt.Errorf("ear: unknown status %q (want affirming, warning or contraindicated)", trunc(s))
}

// TierOf returns the tier of a trust-vector claim value: none for -1..1,
// affirming for 2..31 and -32..-2, warning for 32..95 and -96..-33,
// contraindicated for 96..127 and -128..-97 (draft-ietf-rats-ear).
func TierOf(claim int8) Status {
	switch {
	case claim >= -1 && claim <= 1:
		return StatusNone
	case (claim >= 2 && claim <= 31) || (claim >= -32 && claim <= -2):
		return StatusAffirming
	case (claim >= 32 && claim <= 95) || (claim >= -96 && claim <= -33):
		return StatusWarning
	}
	return StatusContraindicated
}

// rank orders tiers from worst (none) to best (affirming).
func (s Status) rank() int {
	switch s {
	case StatusAffirming:
		return 3
	case StatusWarning:
		return 2
	case StatusContraindicated:
		return 1
	}
	return 0
}

// atLeast reports whether s is a real verdict at least as good as min.
func (s Status) atLeast(min Status) bool {
	return s.rank() > 0 && s.rank() >= min.rank()
}

// isPassportType reports whether t is MediaType: application/eat+jwt with
// eat_profile the EAR profile (parameters compared as media types do).
func isPassportType(t string) bool {
	mt, params, err := mime.ParseMediaType(t)
	if err != nil || mt != "application/eat+jwt" {
		return false
	}
	return params["eat_profile"] == Profile
}

// trunc shortens s for an error message.
func trunc(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// quoteName keeps a name usable in a violation token: names with
// characters other than letters, digits and -._~:/@+=,# are quoted.
func quoteName(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~:/@+=,#", r)) {
			return fmt.Sprintf("%q", trunc(s))
		}
	}
	return trunc(s)
}

// baseType is the media type without parameters, lower-cased, or "".
func baseType(t string) string {
	mt, _, err := mime.ParseMediaType(t)
	if err != nil || !strings.Contains(mt, "/") {
		return ""
	}
	return mt
}
