package main

// The physical limit of a re-attested request: one plain request plus the
// four ECDSA P-256 operations every re-attestation contains (the
// authenticator's CertificateVerify, signed by the client and verified by
// the server, and the Evidence's COSE_Sign1, signed by the attester and
// verified by the verifier), measured with the same keys and message
// sizes in the same run.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
)

// cvInputLen is the size of the CertificateVerify input of an Exported
// Authenticator with SHA-256 (RFC 8446 section 4.4.3, RFC 9261 section
// 5.2.2): 64 spaces, the context string, a zero byte and the transcript
// hash.
var cvInputLen = 64 + len("Exported Authenticator") + 1 + crypto.SHA256.Size()

// rawSignatures does the four signature operations of one
// re-attestation: a signature and a verification with the client's TLS key
// over a CertificateVerify-sized input, and a signature and a verification
// with the attestation key over an input the size of the EAT's
// Sig_structure. SHA-256 of each message is included (ES256 and
// ecdsa_secp256r1_sha256 hash the message).
type rawSignatures struct {
	eaKey, attKey     *ecdsa.PrivateKey
	cvInput, eatInput []byte
}

func (e *env) newRawSignatures() *rawSignatures {
	e.tb.Helper()
	eaKey, ok := e.clientCert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		e.tb.Fatalf("client key is %T, want ECDSA", e.clientCert.PrivateKey)
	}
	n, err := eatSigStructureLen(e.attester.Inner)
	if err != nil {
		e.tb.Fatal(err)
	}
	return newRawSignaturesWith(eaKey, e.attKey, n)
}

func newRawSignaturesWith(eaKey, attKey *ecdsa.PrivateKey, eatLen int) *rawSignatures {
	r := &rawSignatures{eaKey: eaKey, attKey: attKey,
		cvInput: make([]byte, cvInputLen), eatInput: make([]byte, eatLen)}
	rand.Read(r.cvInput)
	rand.Read(r.eatInput)
	return r
}

var errBadSignature = errors.New("raw signature does not verify")

// do is one round of the four operations (the scenario "(s)").
func (r *rawSignatures) do(context.Context) error {
	if err := signVerify(r.eaKey, r.cvInput); err != nil {
		return err
	}
	return signVerify(r.attKey, r.eatInput)
}

func signVerify(key *ecdsa.PrivateKey, msg []byte) error {
	d := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
	if err != nil {
		return err
	}
	d = sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(&key.PublicKey, d[:], sig) {
		return errBadSignature
	}
	return nil
}

// eatSigStructureLen returns the size of the Sig_structure that att's
// COSE_Sign1 signs, from real Evidence: ["Signature1", protected,
// external_aad (empty), payload] (RFC 9052 section 4.4).
func eatSigStructureLen(att postauth.Attester) (int, error) {
	binder := make([]byte, 32)
	ev, err := att.Attest(context.Background(), postauth.Challenge{
		Binder: binder, KeyHash: binder, Hash: crypto.SHA256, Role: postauth.RoleClient,
	})
	if err != nil {
		return 0, err
	}
	var tok struct {
		_           struct{} `cbor:",toarray"`
		Protected   []byte
		Unprotected cbor.RawMessage
		Payload     []byte
		Signature   []byte
	}
	if err := cbor.Unmarshal(ev.Value, &tok); err != nil {
		return 0, fmt.Errorf("software EAT Evidence is not a COSE_Sign1: %w", err)
	}
	return 1 + 1 + len("Signature1") + bstrLen(len(tok.Protected)) + bstrLen(0) + bstrLen(len(tok.Payload)), nil
}

// bstrLen is the encoded size of a CBOR byte string of n bytes.
func bstrLen(n int) int {
	switch {
	case n < 24:
		return 1 + n
	case n < 1<<8:
		return 2 + n
	case n < 1<<16:
		return 3 + n
	}
	return 5 + n
}

// coreBench is the protocol core without HTTP: postauth's
// BenchmarkExchange and BenchmarkRawSignatures (`go test ./postauth -run
// '^$' -bench 'Exchange|RawSignatures' -benchmem`), with the same bodies,
// so that the report states their ratio from the same run as the rest.
type coreBench struct {
	exchange, raw func(b *testing.B)
	eatLen        int // Sig_structure size used by raw
}

func newCoreBench(tb testing.TB) coreBench {
	tb.Helper()
	ep := postauthtest.MutualTLS(tb)
	ccs, scs := ep.Client.ConnectionState(), ep.Server.ConnectionState()
	clientCh, err := postauth.NewChannel(&ccs)
	if err != nil {
		tb.Fatal(err)
	}
	serverCh, err := postauth.NewChannel(&scs)
	if err != nil {
		tb.Fatal(err)
	}
	clientID, err := postauth.IdentityFromTLS(&ep.ClientCert)
	if err != nil {
		tb.Fatal(err)
	}
	attKey := postauthtest.NewSoftwareKey(tb)
	attester := attKey.Attester(tb)
	rp := postauthtest.RelyingParty(tb, attKey.Verifier(tb), postauth.WithFormats(softeat.MediaType))
	serverReqr, err := rp.NewRequester(serverCh, postauth.RoleClient)
	if err != nil {
		tb.Fatal(err)
	}
	eatLen, err := eatSigStructureLen(attester)
	if err != nil {
		tb.Fatal(err)
	}
	c := coreBench{eatLen: eatLen}
	// The body of postauth's BenchmarkExchange.
	c.exchange = func(b *testing.B) {
		ctx := context.Background()
		responder, err := postauth.NewResponder(clientID, attester)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			req, err := serverReqr.NewRequest(nil)
			if err != nil {
				b.Fatal(err)
			}
			raw, err := responder.Respond(ctx, clientCh, postauth.RoleClient, req)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := serverReqr.Verify(ctx, raw, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	// The body of postauth's BenchmarkRawSignatures, with the Sig_structure
	// size of this attester's Evidence.
	c.raw = func(b *testing.B) {
		r := newRawSignaturesWith(postauthtest.NewKey(b), postauthtest.NewKey(b), eatLen)
		b.ReportAllocs()
		for b.Loop() {
			if err := r.do(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	return c
}
