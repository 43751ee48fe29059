package tdx

import (
	"crypto/subtle"
	"fmt"
	"slices"

	"github.com/reattest/reattest/postauth"
)

// Binding returns the freshness value a TDX quote Evidence carries, decoded
// with this format's own parsers, WITHOUT verifying the quote's signature,
// its PCK chain or any collateral. It exists for remote verification
// (background check, package postauth/ear): the relying party forwards the
// Evidence to a remote verifier, which checks the quote, and checks the
// binding locally on the very bytes it forwarded, so that it does not have
// to trust the remote verifier for freshness.
//
// As in [Verifier.Verify], REPORTDATA matches when it is the binder
// followed by zero bytes; then nonce is ch.Binder and keyHash is
// ch.KeyHash (the format carries no key hash: the binder covers the
// authenticator key). Otherwise nonce is the whole REPORTDATA, which the
// caller's comparison refuses. The signature of the function is the one
// ear.WithLocalBinding takes.
func Binding(ch postauth.Challenge, ev postauth.Evidence) (nonce, keyHash []byte, err error) {
	if postauth.BaseMediaType(ev.Type) != MediaType {
		return nil, nil, postauth.ErrorFor(postauth.ReasonFormatNotAccepted, fmt.Errorf("tdx: media type %q", ev.Type))
	}
	e, err := DecodeEvidence(ev.Value)
	if err != nil {
		return nil, nil, postauth.ErrorFor(postauth.ReasonEvidenceInvalid, err)
	}
	q, err := ParseQuote(e.Quote)
	if err != nil {
		return nil, nil, postauth.ErrorFor(postauth.ReasonEvidenceInvalid, err)
	}
	got := binderFromReportData(q.ReportData, len(ch.Binder))
	if got == nil || subtle.ConstantTimeCompare(got, ch.Binder) != 1 { // mutation: tdx local binding
		return slices.Clone(q.ReportData), nil, nil
	}
	return slices.Clone(ch.Binder), slices.Clone(ch.KeyHash), nil
}
