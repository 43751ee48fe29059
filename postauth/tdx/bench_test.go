package tdx_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
)

// The benchmarks of quote verification run beside BenchmarkRawECDSA, the
// six ECDSA P-256 verifications a DCAP quote verification contains (the
// quote, the QE report, the PCK certificate, the PCK Platform CA
// certificate, the TCB info and the QE identity), in the same run:
//
//	go test -run '^$' -bench . -benchmem ./postauth/tdx
//
// Collateral is cached in every case (a tdxtest.Source: parsed once, its
// signatures verified once per trusted root and PCK CA, then remembered).

// benchEnv returns a test platform, its verifier and an honest Evidence.
func benchEnv(b *testing.B) (*tdxtest.Env, postauth.Challenge, postauth.Evidence) {
	env := tdxtest.NewEnv(b, nil)
	ch := challenge(crypto.SHA256)
	ev := attest(b, env.Attester, ch)
	if _, err := env.Verifier.Verify(context.Background(), ch, ev); err != nil {
		b.Fatal(err)
	}
	return env, ch, ev
}

// BenchmarkVerify is Verifier.Verify of a quote whose signer (the
// platform's QE attestation key, QE report and PCK chain) the Verifier
// verified before: the time checks of the chain, the quote's own
// signature, binding, collateral checks, TCB, policy. This is the steady
// state of re-attestation, where one TD quotes again and again.
func BenchmarkVerify(b *testing.B) {
	env, ch, ev := benchEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := env.Verifier.Verify(ctx, ch, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyFirstQuote is Verifier.Verify of a platform's first
// quote: go-tdx-guest's verify.TdxQuote in full (PCK chain, quote
// signature, QE report signature and data), then the rest as above.
func BenchmarkVerifyFirstQuote(b *testing.B) {
	env, ch, ev := benchEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		env.Verifier.ForgetSigners()
		if _, err := env.Verifier.Verify(ctx, ch, ev); err != nil {
			b.Fatal(err)
		}
	}
}

type rawSig struct {
	pub  *ecdsa.PublicKey
	msg  []byte
	r, s *big.Int
	der  []byte // for certificates: the ASN.1 signature
}

// BenchmarkRawECDSA is the baseline: SHA-256 and ECDSA P-256 verification
// of the six signatures of a quote and its collateral, nothing else.
func BenchmarkRawECDSA(b *testing.B) {
	env, _, ev := benchEnv(b)
	verifyAll := rawVerifications(b, env, ev)
	b.ReportAllocs()
	for b.Loop() {
		verifyAll()
	}
}

// BenchmarkRatio interleaves, in each iteration, the baseline, a first
// quote and a known signer's quote, and reports the ratios of their total
// times (first/raw, known/raw): on a shared, noisy machine the ratio of
// interleaved runs is steadier than the ratio of separate benchmarks.
func BenchmarkRatio(b *testing.B) {
	env, ch, ev := benchEnv(b)
	verifyAll := rawVerifications(b, env, ev)
	ctx := context.Background()
	var raw, first, known time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		verifyAll()
		t1 := time.Now()
		env.Verifier.ForgetSigners()
		if _, err := env.Verifier.Verify(ctx, ch, ev); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := env.Verifier.Verify(ctx, ch, ev); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		raw, first, known = raw+t1.Sub(t0), first+t2.Sub(t1), known+t3.Sub(t2)
	}
	b.ReportMetric(float64(first)/float64(raw), "first/raw")
	b.ReportMetric(float64(known)/float64(raw), "known/raw")
	b.ReportMetric(float64(raw.Microseconds())/float64(b.N), "raw-us/op")
}

// rawVerifications returns a function that verifies the six signatures
// of ev's quote and of env's collateral.
func rawVerifications(b *testing.B, env *tdxtest.Env, ev postauth.Evidence) func() {
	e, err := tdx.DecodeEvidence(ev.Value)
	if err != nil {
		b.Fatal(err)
	}
	q := e.Quote
	const msgLen = 48 + 584
	sd := q[msgLen+4:]
	ak, err := ecdsa.ParseUncompressedPublicKey(ecdsaP256(), append([]byte{4}, sd[64:128]...))
	if err != nil {
		b.Fatal(err)
	}
	qe := sd[128+6:]
	pck, pca, root := env.Platform.PCK(), env.CA.PlatformCA, env.CA.Root
	split := func(sig []byte) (*big.Int, *big.Int) {
		return new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:64])
	}
	doc := func(body []byte, field string) ([]byte, []byte) {
		var top map[string]json.RawMessage
		if err := json.Unmarshal(body, &top); err != nil {
			b.Fatal(err)
		}
		var h string
		_ = json.Unmarshal(top["signature"], &h)
		sig, _ := hex.DecodeString(h)
		return top[field], sig
	}
	tcbBody, tcbSig := doc(env.Collateral.TCBInfo, "tcbInfo")
	qeBody, qeSig := doc(env.Collateral.QEIdentity, "enclaveIdentity")
	blk, _ := pem.Decode(env.Collateral.TCBInfoIssuerChain)
	signer, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	sigs := []rawSig{
		{pub: ak, msg: q[:msgLen], der: nil},
		{pub: pck.PublicKey.(*ecdsa.PublicKey), msg: qe[:384]},
		{pub: pca.PublicKey.(*ecdsa.PublicKey), msg: pck.RawTBSCertificate, der: pck.Signature},
		{pub: root.PublicKey.(*ecdsa.PublicKey), msg: pca.RawTBSCertificate, der: pca.Signature},
		{pub: signer.PublicKey.(*ecdsa.PublicKey), msg: tcbBody},
		{pub: signer.PublicKey.(*ecdsa.PublicKey), msg: qeBody},
	}
	sigs[0].r, sigs[0].s = split(sd[:64])
	sigs[1].r, sigs[1].s = split(qe[384:448])
	sigs[4].r, sigs[4].s = split(tcbSig)
	sigs[5].r, sigs[5].s = split(qeSig)
	if binary.LittleEndian.Uint32(q[msgLen:]) != uint32(len(sd)) {
		b.Fatal("layout")
	}
	verifyAll := func() {
		for i, s := range sigs {
			d := sha256.Sum256(s.msg)
			var ok bool
			if s.der != nil {
				ok = ecdsa.VerifyASN1(s.pub, d[:], s.der)
			} else {
				ok = ecdsa.Verify(s.pub, d[:], s.r, s.s)
			}
			if !ok {
				b.Fatalf("signature %d does not verify", i)
			}
		}
	}
	verifyAll()
	return verifyAll
}

func ecdsaP256() elliptic.Curve { return elliptic.P256() }
