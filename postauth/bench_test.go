package postauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// BenchmarkExchange is one attested exchange on a real TLS 1.3 connection:
// the relying party issues a request, the client answers it with software
// EAT Evidence, and the relying party verifies the answer. That is two
// ECDSA P-256 signatures (CertificateVerify, COSE_Sign1) and two
// verifications, plus everything else: compare with BenchmarkRawSignatures.
func BenchmarkExchange(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	responder, err := postauth.NewResponder(e.clientID, e.attester)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		req, err := e.serverReqr.NewRequest(nil)
		if err != nil {
			b.Fatal(err)
		}
		raw, err := responder.Respond(ctx, e.clientCh, postauth.RoleClient, req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.serverReqr.Verify(ctx, raw, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawSignatures is the floor for BenchmarkExchange: exactly two
// ECDSA P-256 signatures and two verifications (SHA-256 included) of
// messages the size of a CertificateVerify input and of an EAT
// Sig_structure, with two keys.
func BenchmarkRawSignatures(b *testing.B) {
	eaKey, attKey := postauthtest.NewKey(b), postauthtest.NewKey(b)
	cvInput := make([]byte, 64+len("Exported Authenticator")+1+32)
	eatInput := make([]byte, 180)
	rand.Read(cvInput)
	rand.Read(eatInput)
	signVerify := func(key *ecdsa.PrivateKey, msg []byte) {
		d := sha256.Sum256(msg)
		sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
		if err != nil {
			b.Fatal(err)
		}
		d = sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(&key.PublicKey, d[:], sig) {
			b.Fatal("signature does not verify")
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		signVerify(eaKey, cvInput)
		signVerify(attKey, eatInput)
	}
}
