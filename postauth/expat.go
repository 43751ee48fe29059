package postauth

import (
	"context"
	"crypto"
	"time"
)

// Exporter label of the attestation binder (draft-fossati-seat-expat).
const (
	// BinderLabel is the exporter label of the attestation binder,
	// TLS-Exporter("Attestation", certificate_request_context, 32), as in
	// draft-fossati-seat-expat-02.
	BinderLabel = "Attestation"
	// binderExportLen is the length of the exported value in the binder.
	binderExportLen = 32
)

// Binder returns the attestation binder for an authenticator with the given
// end-entity key (DER SubjectPublicKeyInfo) answering a request with the
// given certificate_request_context:
//
//	Hash(spki || TLS-Exporter("Attestation", context, 32))
//
// Evidence carries it as its freshness value (EAT eat_nonce, TPM extraData,
// TDX REPORTDATA), which binds the Evidence to this connection, this request
// and this key.
func (c *Channel) Binder(spki, context []byte) ([]byte, error) {
	ev, err := c.export(BinderLabel, context, binderExportLen)
	if err != nil {
		return nil, invalid(ReasonExporterFailed, err)
	}
	h := c.newHash()
	h.Write(spki)
	h.Write(ev)
	return h.Sum(nil), nil
}

// KeyHash returns Hash(spki) with the connection's hash: the value Evidence
// carries to vouch for the authenticator key (expat's AIK_pub_hash).
func (c *Channel) KeyHash(spki []byte) []byte {
	h := c.newHash()
	h.Write(spki)
	return h.Sum(nil)
}

// Challenge is what fresh Evidence must be bound to. The Attester receives
// it from [Responder.Respond]; the Verifier receives the same values, recomputed by
// the relying party from its own view of the connection.
type Challenge struct {
	// Binder is Hash(SPKI || TLS-Exporter("Attestation", context, 32)): the
	// Evidence's freshness value (EAT eat_nonce, TPM extraData, TDX
	// REPORTDATA).
	Binder []byte
	// KeyHash is Hash(SPKI) of the authenticator's end-entity key, which
	// the Evidence must carry (key binding).
	KeyHash []byte
	// Hash is the hash function of Binder and KeyHash (the cipher suite's).
	Hash crypto.Hash
	// Context is the certificate_request_context being answered.
	Context []byte
	// Role is the attesting endpoint's role.
	Role Role
}

// Attester produces fresh Evidence bound to a Challenge. Implementations
// live in the format packages (postauth/softeat, ...).
type Attester interface {
	Attest(ctx context.Context, ch Challenge) (Evidence, error)
}

// Verifier appraises Evidence against a Challenge. It returns an Appraisal
// only if the Evidence is authentic (signed by a trusted key or platform),
// well formed and acceptable under the verifier's own policy. It must report
// the freshness value and key hash it found inside the signed Evidence:
// [RelyingParty.Verify] compares them with the Challenge itself, so a verifier that
// forgets to check them still cannot pass unbound Evidence.
//
// A verifier that cannot reach a verdict (remote verifier down, timeout)
// must return an error with CodeUnavailable; it must never return an
// Appraisal. A result that arrives after ctx ended is not used.
type Verifier interface {
	Verify(ctx context.Context, ch Challenge, ev Evidence) (*Appraisal, error)
}

// MediaTyper is implemented by Verifiers that accept a fixed set of
// Evidence media types. A [RelyingParty] without [WithFormats] accepts
// exactly those, and refuses Evidence of any other type before the
// Verifier sees it.
type MediaTyper interface {
	MediaTypes() []string
}

// Measurement is a measured component (draft-ietf-rats-eat-measured-component):
// an identifier and a digest.
type Measurement struct {
	Name    string
	Version string
	// Alg is the digest's hash algorithm.
	Alg    crypto.Hash
	Digest []byte
}

// Appraisal is what a Verifier extracted from Evidence it accepted. Only
// [RelyingParty.Verify] turns it into a [Result], after its own binding checks.
type Appraisal struct {
	// Format names the Evidence format, for example "software-eat".
	Format string
	// HardwareBacked says whether a hardware root of trust signed the
	// Evidence (and, for formats that appraise it, whether the platform's
	// state met the verifier's reference values: the TPM format sets it
	// only with a boot-state policy). The software EAT format sets it to
	// false.
	HardwareBacked bool
	// Nonce is the freshness value signed in the Evidence.
	Nonce []byte
	// KeyHash is the authenticator key hash signed in the Evidence.
	KeyHash []byte
	// MachineID identifies the attesting machine or instance (EAT ueid,
	// SHA-256 of a TPM's EK public key, TDX MRCONFIGID, ...). The relying
	// party should check it against the peer it meant to reach.
	MachineID []byte
	// AttestationKeyID identifies the key that signed the Evidence (the
	// attestation key), if the format has one: the first 16 bytes of
	// SHA-256 over its DER SubjectPublicKeyInfo (software EAT: the COSE
	// kid; TPM: of the AK; an EAR: the one its verifier reports). nil if
	// the format has none (TDX). Revocation by "kid" (package middleware)
	// uses it.
	AttestationKeyID []byte
	// AttestedAt is when the Evidence was produced (EAT iat). Zero means
	// unknown; the relying party then uses the verification time.
	AttestedAt time.Time
	// Expiry, if set, is the latest time the appraisal may be relied on.
	Expiry time.Time
	// Measurements are platform or software measurements.
	Measurements []Measurement
	// PostureHead is the agent posture register value the signed Evidence
	// covers, and PostureLog the encoded posture log it carries (see
	// package posture). Both nil if the Evidence carries no posture. The
	// relying party replays the log against the head itself, once
	// ([RelyingParty.Verify]): a Verifier need not.
	PostureHead []byte
	PostureLog  []byte
}
