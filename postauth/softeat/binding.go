package softeat

import (
	"errors"
	"fmt"
	"slices"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// Binding returns the freshness value (eat_nonce) and the authenticator key
// hash that a software EAT token carries, decoded with this format's own
// strict parser, WITHOUT verifying the token's signature or trusting its
// attestation key. It exists for remote verification (background check,
// package postauth/ear): the relying party forwards the Evidence to a
// remote verifier, which checks the signature, and checks the binding
// locally on the very bytes it forwarded, so that it does not have to trust
// the remote verifier for freshness.
//
// It reads the token as the Verifier does up to the signature (the same
// shape and canonical claims checks, the same reasons), and reports the
// nonce only if it has ch.Hash's size and the key hash only if its
// algorithm is ch.Hash (a key hash of another algorithm is an error:
// key_hash_mismatch); it compares no value with ch. The signature of the function is the one
// ear.WithLocalBinding takes. Never use the values on their own: they mean
// something only once a verifier accepted the same token.
func Binding(ch postauth.Challenge, ev postauth.Evidence) (nonce, keyHash []byte, err error) {
	if postauth.BaseMediaType(ev.Type) != MediaType {
		return nil, nil, evidenceErr(postauth.ReasonFormatNotAccepted, fmt.Errorf("softeat: media type %q", ev.Type))
	}
	// The Verifier's parser, up to the signature: the same token shape and
	// the same canonical claims, so that the verifier that checks the
	// signature and this reader cannot read the bytes differently.
	t, err := parseToken(ev.Value)
	if err != nil {
		return nil, nil, err
	}
	c, err := decodeClaims(t.payload)
	if err != nil {
		return nil, nil, err
	}
	if c.Profile != Profile {
		return nil, nil, evidenceErr(postauth.ReasonEvidenceInvalid, errors.New("softeat: wrong eat_profile"))
	}
	if ch.Hash == 0 || len(c.Nonce) != ch.Hash.Size() {
		return nil, nil, evidenceErr(postauth.ReasonEvidenceInvalid, fmt.Errorf("softeat: eat_nonce of %d bytes, want the challenge hash's size", len(c.Nonce)))
	}
	if posture.AlgHash(c.KeyHash.Alg) != ch.Hash {
		return nil, nil, evidenceErr(postauth.ReasonKeyHashMismatch, postauth.ErrKeyHashMismatch)
	}
	return slices.Clone(c.Nonce), slices.Clone(c.KeyHash.Value), nil
}
