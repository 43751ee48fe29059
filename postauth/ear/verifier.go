package ear

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"

	"github.com/reattest/reattest/postauth"
)

// Verifier appraises passports: EARs (EAT Attestation Results, JWT, ES256)
// that the attester obtained from a verifier service over Evidence bound to
// the connection's binder. The relying party never sees the Evidence. It is
// safe for concurrent use.
type Verifier struct {
	keys []*ecdsa.PublicKey
	a    *appraiser
}

var _ postauth.Verifier = (*Verifier)(nil)

// NewVerifier returns a passport Verifier trusting EARs signed by any of
// keys (ECDSA P-256 public keys of the verifier service; parse a JWK with
// [ParseJWK]). Pinning these keys is the trust decision: whoever holds
// one vouches for every attester.
func NewVerifier(keys []crypto.PublicKey, opts ...VerifierOption) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("ear: no EAR verification key")
	}
	v := &Verifier{}
	for _, k := range keys {
		pub, err := ES256Key(k)
		if err != nil {
			return nil, err
		}
		v.keys = append(v.keys, pub)
	}
	cfg, err := newVerifierConfig(opts)
	if err != nil {
		return nil, err
	}
	if v.a, err = newAppraiser(&cfg.appraisalConfig); err != nil {
		return nil, err
	}
	return v, nil
}

// MediaTypes returns the CMW media type the Verifier accepts: MediaType.
func (v *Verifier) MediaTypes() []string { return []string{MediaType} }

// Verify checks a passport in this order (docs/verification.md), each
// failure a CodeInvalid *postauth.Error with the reason shown unless said
// otherwise:
//
//  1. the media type is application/eat+jwt with eat_profile the EAR
//     profile: format_not_accepted;
//  2. the token is a compact JWS of at most MaxTokenLen bytes whose header
//     is exactly alg ES256 with optional typ and kid (no none, no HS256, no
//     other algorithm, no embedded key): ear_invalid;
//  3. the ES256 signature verifies with a pinned key: ear_signature_invalid;
//  4. the claims decode, eat_profile is the EAR profile, iat and eat_nonce
//     are present: ear_invalid;
//  5. eat_nonce equals the Challenge's binder: binder_mismatch;
//  6. iat is at most the skew in the future and at most the policy's max
//     age in the past, exp (if any) has not passed: ear_stale (CodeStale);
//  7. one key is attested (ear.veraison.key-attestation akpub):
//     ear_key_attestation_missing; Hash(akpub) with the Challenge's hash
//     equals the Challenge's key hash: key_hash_mismatch;
//  8. the reattest annotations are consistent: a reattest.key-hash of the
//     Challenge's hash equals Hash(akpub), a posture head comes with a log
//     (ear_invalid);
//  9. every submodule meets the policy's status and trust-vector
//     requirements: ear_policy_denied (CodePolicyDenied, Violations).
//
// Like every format Verifier, it reports the posture log without
// replaying it: the relying party replays it against the head, once
// (postauth.RelyingParty.Verify; posture_invalid). A caller that uses the
// Verifier on its own must call posture.Verify. The passport's Kind
// (postauth.KindAttestationResult, CMW indicator 8) is not required: the
// media type identifies an EAR.
//
// It reports Format "passport", Nonce = the EAR's eat_nonce, KeyHash =
// Hash(akpub), HardwareBacked (every submodule's hardware claim
// affirming), MachineID and the posture from the annotations, AttestedAt
// = the Evidence time (reattest.attested-at) or the EAR's iat, and Expiry
// = iat + max age (or exp if earlier).
func (v *Verifier) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !isPassportType(ev.Type) {
		return nil, invalid(postauth.ReasonFormatNotAccepted, fmt.Errorf("ear: media type %q is not an EAR passport", trunc(ev.Type)))
	}
	c, err := v.a.verifyToken(ev.Value, v.keys)
	if err != nil {
		return nil, err
	}
	if !equal(c.nonce, ch.Binder) { // mutation: passport binder
		return nil, invalid(postauth.ReasonBinderMismatch, postauth.ErrBinderMismatch)
	}
	if err := v.a.fresh(c); err != nil {
		return nil, err
	}
	ak, err := c.keyAttestation()
	if err != nil {
		return nil, invalid(postauth.ReasonEARKeyAttestationMissing, err)
	}
	if ak == nil { // mutation: passport key attestation required
		return nil, invalid(postauth.ReasonEARKeyAttestationMissing, ErrNoKeyAttestation)
	}
	keyHash, err := hashOf(ch.Hash, ak)
	if err != nil {
		return nil, invalid(postauth.ReasonKeyHashMismatch, err)
	}
	if !equal(keyHash, ch.KeyHash) { // mutation: passport key attestation
		return nil, invalid(postauth.ReasonKeyHashMismatch, postauth.ErrKeyHashMismatch)
	}
	ann, err := c.annotated()
	if err != nil {
		return nil, invalid(postauth.ReasonEARInvalid, err)
	}
	if kh := annotatedKeyHash(ann, ch.Hash); kh != nil && !equal(kh, keyHash) {
		return nil, invalid(postauth.ReasonEARInvalid, errors.New("ear: the annotated key hash is not the attested key's"))
	}
	app, err := v.a.report(c, ann)
	if err != nil {
		return nil, err
	}
	if err := v.a.deny(c); err != nil {
		return nil, err
	}
	app.Nonce = c.nonce
	app.KeyHash = keyHash
	return app, nil
}
