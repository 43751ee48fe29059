//go:build cgo

package tpm_test

import (
	"context"
	"crypto"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
)

// BenchmarkTPMExchange is one attested exchange on a real TLS 1.3
// connection with TPM quote Evidence from the simulator: a request, the
// client's answer (CertificateVerify + TPM2_PCR_Read x2 + TPM2_Quote), the
// relying party's verification. Compare with BenchmarkSoftEATExchange in
// the same run. A hardware TPM quotes far more slowly than the simulator
// (tens to hundreds of milliseconds).
func BenchmarkTPMExchange(b *testing.B) {
	att := newAttester(b, nil)
	benchExchange(b, att, newVerifier(b, nil, att.AKPublic()))
}

// BenchmarkSoftEATExchange is the same exchange with software EAT
// Evidence: the baseline.
func BenchmarkSoftEATExchange(b *testing.B) {
	key := postauthtest.NewKey(b)
	att, err := softeat.NewAttester(key, nil)
	if err != nil {
		b.Fatal(err)
	}
	v, err := softeat.NewVerifier([]crypto.PublicKey{key.Public()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchExchange(b, att, v)
}

func benchExchange(b *testing.B, att postauth.Attester, v postauth.Verifier) {
	e := newTLSEnv(b)
	ctx := context.Background()
	policy := &postauth.Policy{Verifier: v}
	b.ReportAllocs()
	for b.Loop() {
		req, err := e.reqr.NewRequest("pay", nil)
		if err != nil {
			b.Fatal(err)
		}
		raw, err := postauth.Respond(ctx, e.clientCh, postauth.RoleClient, req, e.clientID, att, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.reqr.Verify(ctx, raw, "pay", nil, policy); err != nil {
			b.Fatal(err)
		}
	}
}
