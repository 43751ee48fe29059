package softeat

import (
	"errors"
	"fmt"
	"slices"

	cose "github.com/veraison/go-cose"

	"github.com/reattest/reattest/internal/detcbor"
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
// It reports the key hash only if its algorithm is ch.Hash (a key hash of
// another algorithm is an error: key_hash_mismatch); it compares nothing
// with ch. The signature of the function is the one
// ear.WithLocalBinding takes. Never use the values on their own: they mean
// something only once a verifier accepted the same token.
func Binding(ch postauth.Challenge, ev postauth.Evidence) (nonce, keyHash []byte, err error) {
	if postauth.BaseMediaType(ev.Type) != MediaType {
		return nil, nil, evidenceErr(postauth.ReasonFormatNotAccepted, fmt.Errorf("softeat: media type %q", ev.Type))
	}
	if len(ev.Value) == 0 || len(ev.Value) > MaxTokenLen {
		return nil, nil, evidenceErr(postauth.ReasonEvidenceInvalid, errors.New("softeat: token size out of range"))
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(ev.Value); err != nil {
		return nil, nil, evidenceErr(postauth.ReasonEvidenceInvalid, fmt.Errorf("softeat: COSE_Sign1: %w", err))
	}
	var c claims
	if err := detcbor.DecNoTags.Unmarshal(msg.Payload, &c); err != nil {
		return nil, nil, evidenceErr(postauth.ReasonEvidenceInvalid, fmt.Errorf("softeat: claims: %w", err))
	}
	if c.Profile != Profile {
		return nil, nil, evidenceErr(postauth.ReasonEvidenceInvalid, errors.New("softeat: wrong eat_profile"))
	}
	if c.Nonce.Len() != 1 {
		return nil, nil, evidenceErr(postauth.ReasonEvidenceInvalid, errors.New("softeat: want exactly one eat_nonce"))
	}
	if ch.Hash == 0 || posture.AlgHash(c.KeyHash.Alg) != ch.Hash {
		return nil, nil, evidenceErr(postauth.ReasonKeyHashMismatch, postauth.ErrKeyHashMismatch)
	}
	return slices.Clone(c.Nonce.GetI(0)), slices.Clone(c.KeyHash.Value), nil
}
