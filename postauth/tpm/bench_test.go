//go:build cgo

package tpm_test

import (
	"context"
	"crypto"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// BenchmarkTPMExchange is one attested exchange on a real TLS 1.3
// connection with the whole TPM trust chain on the simulator: a request;
// the client's answer, whose CertificateVerify the TPM-resident key signs
// (TPM2_Sign) and whose Evidence is TPM2_PCR_Read, TPM2_Quote and
// TPM2_Certify of that key, with the AK certificate; the relying party's
// verification (AK chain cached after the first exchange; quote and
// certification signatures). Compare with BenchmarkSoftEATExchange in the
// same run. A hardware TPM signs and quotes far more slowly than the
// simulator (tens to hundreds of milliseconds each).
func BenchmarkTPMExchange(b *testing.B) {
	key := newKey(b)
	att := enrolledAttester(b, key)
	benchExchangeKey(b, att, chainVerifier(b), key)
}

// BenchmarkTPMQuoteExchange is the exchange with quote-only Evidence from
// a pinned AK and a software authenticator key (the profile's earlier
// trust model).
func BenchmarkTPMQuoteExchange(b *testing.B) {
	att := newAttester(b)
	benchExchange(b, att, newVerifier(b, [][]byte{att.AKPublic()}))
}

// BenchmarkSoftEATExchange is the same exchange with software EAT
// Evidence: the baseline.
func BenchmarkSoftEATExchange(b *testing.B) {
	att, v := postauthtest.Software(b)
	benchExchange(b, att, v)
}

func benchExchange(b *testing.B, att postauth.Attester, v postauth.Verifier) {
	benchExchangeKey(b, att, v, nil)
}

func benchExchangeKey(b *testing.B, att postauth.Attester, v postauth.Verifier, key crypto.Signer) {
	e := newTLSEnvKey(b, v, key)
	ctx := context.Background()
	responder, err := postauth.NewResponder(e.clientID, att)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		req, err := e.reqr.NewRequest(nil)
		if err != nil {
			b.Fatal(err)
		}
		raw, err := responder.Respond(ctx, e.clientCh, postauth.RoleClient, req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.reqr.Verify(ctx, raw, nil); err != nil {
			b.Fatal(err)
		}
	}
}
