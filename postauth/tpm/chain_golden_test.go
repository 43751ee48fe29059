package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tpm"
)

const chainGoldenPath = "testdata/chain.json"

// chainGolden is real Evidence of the whole trust chain, produced by the
// simulator (regenerate with go test -run TestChainGoldenUpdate -update):
// an AK certificate from a test enrollment CA, the EK certificate from a
// test manufacturer, a quote and a certification of an ECDSA P-256 key,
// bound to a fixed binder. It lets the verifier, its fuzz target and its
// benchmark run on genuine TPM structures without cgo.
type chainGolden struct {
	Time      time.Time `json:"time"`
	CARoot    string    `json:"ca_root"`
	EKRoot    string    `json:"ek_root"`
	Binder    string    `json:"binder"`
	MachineID string    `json:"machine_id"`
	KeyHash   string    `json:"key_hash"`
	Evidence  string    `json:"evidence"`
}

type chainCase struct {
	now       time.Time
	caRoot    *x509.Certificate
	ekRoot    *x509.Certificate
	ch        postauth.Challenge
	machineID []byte
	keyHash   []byte
	ev        postauth.Evidence
	decode    *tpm.Evidence
}

// chainBinder is the binder of the chain golden Evidence.
func chainBinder() []byte {
	s := sha256.Sum256([]byte("reattest tpm chain golden"))
	return s[:]
}

func loadChainGolden(tb testing.TB) *chainCase {
	tb.Helper()
	b, err := os.ReadFile(chainGoldenPath)
	if err != nil {
		tb.Fatal(err)
	}
	var g chainGolden
	if err := json.Unmarshal(b, &g); err != nil {
		tb.Fatal(err)
	}
	dec := func(s string) []byte {
		v, err := hex.DecodeString(s)
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
	c := &chainCase{now: g.Time, machineID: dec(g.MachineID), keyHash: dec(g.KeyHash)}
	if c.caRoot, err = x509.ParseCertificate(dec(g.CARoot)); err != nil {
		tb.Fatal(err)
	}
	if c.ekRoot, err = x509.ParseCertificate(dec(g.EKRoot)); err != nil {
		tb.Fatal(err)
	}
	c.ch = postauth.Challenge{Binder: dec(g.Binder), KeyHash: []byte("not used: the evidence certifies the key"), Hash: crypto.SHA256}
	c.ev = postauth.Evidence{Type: tpm.MediaType, Value: dec(g.Evidence)}
	if c.decode, err = tpm.DecodeEvidence(c.ev.Value); err != nil {
		tb.Fatal(err)
	}
	return c
}

// verifier returns the verifier of the golden case: the enrollment CA and
// the EK roots, the machine pinned, a clock at the recording time.
func (c *chainCase) verifier(tb testing.TB, opts ...tpm.VerifierOption) *tpm.Verifier {
	tb.Helper()
	v, err := tpm.NewVerifier(append([]tpm.VerifierOption{
		tpm.WithAKRoots(c.caRoot), tpm.WithEKRoots(c.ekRoot), tpm.WithMachineIDs(c.machineID),
		tpm.WithClock(func() time.Time { return c.now }),
	}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// TestChainGolden verifies the recorded trust-chain Evidence, without a
// TPM, and checks what the Appraisal reports.
func TestChainGolden(t *testing.T) {
	c := loadChainGolden(t)
	app, err := c.verifier(t).Verify(context.Background(), c.ch, c.ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(app.Nonce, c.ch.Binder) || !bytes.Equal(app.KeyHash, c.keyHash) || !bytes.Equal(app.MachineID, c.machineID) || app.HardwareBacked {
		t.Fatalf("appraisal %+v", app)
	}
	at, err := tpm.ParseCertification(c.decode.Certification.Attest)
	if err != nil || !bytes.Equal(at.ExtraData, c.ch.Binder) {
		t.Fatalf("certification: %v", err)
	}
	// After the AK certificate expired, the same Evidence is refused, also
	// by a verifier that accepted it before (and cached its decision).
	clock := postauthtest.NewClock(c.now)
	v := c.verifier(t, tpm.WithClock(clock.Now))
	if _, err := v.Verify(context.Background(), c.ch, c.ev); err != nil {
		t.Fatal(err)
	}
	ak, err := x509.ParseCertificate(c.decode.AKChain[0])
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(ak.NotAfter.Sub(c.now) + time.Second)
	if _, err := v.Verify(context.Background(), c.ch, c.ev); postauth.ReasonOf(err) != postauth.ReasonUntrustedAttester {
		t.Fatalf("after the AK certificate expired: %v", err)
	}
	re, err := c.decode.Marshal()
	if err != nil || !bytes.Equal(re, c.ev.Value) {
		t.Fatal("re-encoding differs")
	}
}

// BenchmarkVerifyChain is the relying party's cost for the golden
// trust-chain Evidence, sub-benchmark "cold": decoding, the AK certificate
// chain, the EK certificate chain, the quote and the certification (four
// ECDSA P-256 verifications), and the checks, as for the first Evidence of
// an agent; "warm": the same Evidence again, the AK trust decision and the
// certified key's hash cached (two ECDSA verifications: quote and
// certification). Compare with BenchmarkVerifyChainSignatures in the same
// run.
func BenchmarkVerifyChain(b *testing.B) {
	c := loadChainGolden(b)
	v := c.verifier(b)
	ctx := context.Background()
	for _, cold := range []bool{true, false} {
		name := map[bool]string{true: "cold", false: "warm"}[cold]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if cold {
					tpm.ClearCaches(v)
				}
				if _, err := v.Verify(ctx, c.ch, c.ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyChainSignatures is the baseline of BenchmarkVerifyChain:
// only the raw signature verifications it contains, on pre-parsed inputs:
// "all4" the AK certificate by the enrollment CA, the EK certificate by the
// manufacturer, the quote and the certification by the AK (the cold
// path's); "quote+certify" the last two (the warm path's).
func BenchmarkVerifyChainSignatures(b *testing.B) {
	c := loadChainGolden(b)
	ak, err := x509.ParseCertificate(c.decode.AKChain[0])
	if err != nil {
		b.Fatal(err)
	}
	ek, err := x509.ParseCertificate(c.decode.EKChain[0])
	if err != nil {
		b.Fatal(err)
	}
	type check struct {
		key    *ecdsa.PublicKey
		digest []byte
		r, s   *big.Int
		asn1   []byte
	}
	certCheck := func(cert, issuer *x509.Certificate) check {
		d := sha256.Sum256(cert.RawTBSCertificate)
		return check{key: issuer.PublicKey.(*ecdsa.PublicKey), digest: d[:], asn1: cert.Signature}
	}
	attCheck := func(attest, sig []byte) check {
		r, s := tpm.ECDSASignature(b, sig)
		d := sha256.Sum256(attest)
		return check{key: ak.PublicKey.(*ecdsa.PublicKey), digest: d[:], r: r, s: s}
	}
	checks := []check{
		certCheck(ak, c.caRoot), certCheck(ek, c.ekRoot),
		attCheck(c.decode.Quote, c.decode.Signature),
		attCheck(c.decode.Certification.Attest, c.decode.Certification.Signature),
	}
	for name, set := range map[string][]check{"all4": checks, "quote+certify": checks[2:]} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, k := range set {
					ok := false
					if k.asn1 != nil {
						ok = ecdsa.VerifyASN1(k.key, k.digest, k.asn1)
					} else {
						ok = ecdsa.Verify(k.key, k.digest, k.r, k.s)
					}
					if !ok {
						b.Fatal("signature")
					}
				}
			}
		})
	}
}
