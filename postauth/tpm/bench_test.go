//go:build cgo

package tpm_test

import (
	"context"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// BenchmarkTPMExchange is one attested exchange on a real TLS 1.3
// connection with TPM quote Evidence from the simulator: a request, the
// client's answer (CertificateVerify + TPM2_PCR_Read x2 + TPM2_Quote), the
// relying party's verification. Compare with BenchmarkSoftEATExchange in
// the same run. A hardware TPM quotes far more slowly than the simulator
// (tens to hundreds of milliseconds).
func BenchmarkTPMExchange(b *testing.B) {
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
	e := newTLSEnv(b, v)
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
