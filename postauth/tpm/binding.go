package tpm

import (
	"fmt"
	"slices"

	"github.com/reattest/reattest/postauth"
)

// Binding returns the freshness value a TPM quote Evidence carries, decoded
// with this format's own parsers, WITHOUT verifying the quote's signature
// or trusting its attestation key. It exists for remote verification
// (background check, package postauth/ear): the relying party forwards the
// Evidence to a remote verifier, which checks the signature, and checks
// the binding locally on the very bytes it forwarded, so that it does not
// have to trust the remote verifier for freshness.
//
// As in [Verifier.Verify], the quote's extraData matches the binder if it
// is the binder, or SHA-256 of a binder longer than 32 bytes; then nonce is
// ch.Binder and keyHash is ch.KeyHash (the format carries no key hash: the
// binder covers the authenticator key). Otherwise nonce is the extraData
// found, which the caller's comparison refuses. The signature of the
// function is the one ear.WithLocalBinding takes.
func Binding(ch postauth.Challenge, ev postauth.Evidence) (nonce, keyHash []byte, err error) {
	if postauth.BaseMediaType(ev.Type) != MediaType {
		return nil, nil, evidenceErr(postauth.ReasonFormatNotAccepted, fmt.Errorf("tpm: media type %q", ev.Type))
	}
	e, err := DecodeEvidence(ev.Value)
	if err != nil {
		return nil, nil, evidenceErr(postauth.ReasonEvidenceInvalid, err)
	}
	at, err := ParseAttest(e.Quote)
	if err != nil {
		return nil, nil, evidenceErr(postauth.ReasonEvidenceInvalid, err)
	}
	if !binderMatches(at.ExtraData, ch.Binder) {
		return slices.Clone(at.ExtraData), nil, nil
	}
	return slices.Clone(ch.Binder), slices.Clone(ch.KeyHash), nil
}
