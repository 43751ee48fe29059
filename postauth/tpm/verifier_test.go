package tpm_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-tpm/tpm2"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tpm"
)

// fixedKey is a software "AK" with a fixed scalar, so that fuzz corpus
// entries signed by it stay valid across runs.
func fixedKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	d := sha256.Sum256([]byte("reattest tpm fuzz key"))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// TestForgedStructure drives the checks that come after the signature with
// TPMS_ATTEST structures that a pinned (software) key signed: a TPM would
// never sign these, but the parser must refuse them on its own.
func TestForgedStructure(t *testing.T) {
	key := postauthtest.NewKey(t)
	v, err := tpm.NewVerifier(tpm.WithPinnedAKs(softwareAK(t, key)), tpm.AllowSoftwareKey())
	if err != nil {
		t.Fatal(err)
	}
	binder := bytes.Repeat([]byte{7}, 32)
	ch := postauth.Challenge{Binder: binder, KeyHash: []byte("kh")}
	pcrs := zeroPCRs(0, 1, 7)
	mod := func(f func(q *attestFields)) postauth.Evidence {
		q := quoteFields(binder, pcrs)
		f(&q)
		return forge(t, key, q, pcrs)
	}
	if _, err := v.Verify(context.Background(), ch, mod(func(*attestFields) {})); err != nil {
		t.Fatalf("well-formed forged quote: %v", err)
	}
	sum := sha256.Sum256(binder)
	cases := []struct {
		name   string
		ev     postauth.Evidence
		reason postauth.Reason
	}{
		{"magic", mod(func(q *attestFields) { q.magic = 0xff544348 }), postauth.ReasonEvidenceInvalid},
		{"type-certify", mod(func(q *attestFields) { q.typ = 0x8017 }), postauth.ReasonEvidenceInvalid},
		{"two-banks", mod(func(q *attestFields) { q.banks = []uint16{0x000B, 0x000B} }), postauth.ReasonEvidenceInvalid},
		{"no-bank", mod(func(q *attestFields) { q.banks = nil }), postauth.ReasonEvidenceInvalid},
		{"sha1-bank", mod(func(q *attestFields) { q.banks = []uint16{0x0004} }), postauth.ReasonEvidenceInvalid},
		{"pcr-24", mod(func(q *attestFields) { q.sel = []byte{0x83, 0, 0, 1} }), postauth.ReasonEvidenceInvalid},
		{"empty-selection", mod(func(q *attestFields) { q.sel = []byte{0, 0, 0} }), postauth.ReasonEvidenceInvalid},
		{"short-digest", mod(func(q *attestFields) { q.digest = q.digest[:20] }), postauth.ReasonEvidenceInvalid},
		{"trailer", mod(func(q *attestFields) { q.trailer = []byte{0} }), postauth.ReasonEvidenceInvalid},
		{"extra-data", mod(func(q *attestFields) { q.extra = bytes.Repeat([]byte{8}, 32) }), postauth.ReasonBinderMismatch},
		{"hashed-short-binder", mod(func(q *attestFields) { q.extra = sum[:] }), postauth.ReasonBinderMismatch},
		{"empty-extra-data", mod(func(q *attestFields) { q.extra = nil }), postauth.ReasonBinderMismatch},
		{"selection-differs", mod(func(q *attestFields) { q.sel = []byte{0x83, 1, 0} }), postauth.ReasonPCRSelectionMismatch},
		{"digest-differs", mod(func(q *attestFields) { q.digest = make([]byte, 32) }), postauth.ReasonPCRDigestMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), ch, tc.ev)
			postauthtest.WantError(t, err, postauth.CodeInvalid, tc.reason)
		})
	}
	t.Run("empty-binder", func(t *testing.T) {
		q := quoteFields(nil, pcrs)
		_, err := v.Verify(context.Background(), postauth.Challenge{}, forge(t, key, q, pcrs))
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
	})
	t.Run("rsa-signature", func(t *testing.T) {
		ev := forgeQuote(t, key, binder, pcrs)
		d, _ := tpm.DecodeEvidence(ev.Value)
		d.Signature[1] = 0x14 // TPM_ALG_RSASSA
		b, _ := d.Marshal()
		_, err := v.Verify(context.Background(), ch, postauth.Evidence{Type: tpm.MediaType, Value: b})
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature)
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := v.Verify(ctx, ch, forgeQuote(t, key, binder, pcrs)); err != context.Canceled {
			t.Fatalf("got %v", err)
		}
	})
}

func TestNewVerifierRejects(t *testing.T) {
	key := postauthtest.NewKey(t)
	good := softwareAK(t, key)
	edit := func(f func(p *tpm2.TPMTPublic)) []byte {
		p, err := tpm2.Unmarshal[tpm2.TPMTPublic](good)
		if err != nil {
			t.Fatal(err)
		}
		f(p)
		return tpm2.Marshal(*p)
	}
	cases := map[string][]byte{
		"garbage":        {1, 2, 3},
		"empty":          nil,
		"trailing":       append(bytes.Clone(good), 0),
		"not-restricted": edit(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false }),
		"decrypt":        edit(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Decrypt = true }),
		"not-fixed-tpm":  edit(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false }),
		"sha1-name":      edit(func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 }),
		"p384": edit(func(p *tpm2.TPMTPublic) {
			parms, _ := p.Parameters.ECCDetail()
			parms.CurveID = tpm2.TPMECCNistP384
		}),
		"off-curve": edit(func(p *tpm2.TPMTPublic) {
			pt, _ := p.Unique.ECC()
			pt.Y.Buffer = bytes.Repeat([]byte{1}, 32)
		}),
		"ecdsa-sha384": edit(func(p *tpm2.TPMTPublic) {
			parms, _ := p.Parameters.ECCDetail()
			parms.Scheme.Details = tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA384})
		}),
	}
	for name, ak := range cases {
		if _, err := tpm.NewVerifier(tpm.WithPinnedAKs(ak)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := tpm.NewVerifier(); err == nil {
		t.Error("no AKs accepted")
	}
	if _, err := tpm.NewVerifier(tpm.WithPinnedAKs(good), tpm.WithPosturePCR(24)); err == nil {
		t.Error("posture PCR 24 accepted")
	}
	nullScheme := edit(func(p *tpm2.TPMTPublic) {
		parms, _ := p.Parameters.ECCDetail()
		parms.Scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}
	})
	if _, err := tpm.NewVerifier(tpm.WithPinnedAKs(nullScheme)); err != nil {
		t.Errorf("AK with a NULL scheme: %v", err)
	}
}

func TestDecodeEvidenceBounds(t *testing.T) {
	base := func() *tpm.Evidence {
		return &tpm.Evidence{Quote: []byte{1}, Signature: []byte{2}, AK: []byte{3}, PCRs: zeroPCRs(0)}
	}
	good, err := base().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.DecodeEvidence(good); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(e *tpm.Evidence){
		"no-quote":          func(e *tpm.Evidence) { e.Quote = nil },
		"big-quote":         func(e *tpm.Evidence) { e.Quote = make([]byte, tpm.MaxQuoteLen+1) },
		"no-signature":      func(e *tpm.Evidence) { e.Signature = nil },
		"big-signature":     func(e *tpm.Evidence) { e.Signature = make([]byte, tpm.MaxSignatureLen+1) },
		"no-ak":             func(e *tpm.Evidence) { e.AK = nil },
		"big-ak":            func(e *tpm.Evidence) { e.AK = make([]byte, tpm.MaxAKLen+1) },
		"no-pcrs":           func(e *tpm.Evidence) { e.PCRs = nil },
		"pcr-24":            func(e *tpm.Evidence) { e.PCRs[24] = make([]byte, 32) },
		"pcr-negative":      func(e *tpm.Evidence) { e.PCRs[-1] = make([]byte, 32) },
		"short-pcr":         func(e *tpm.Evidence) { e.PCRs[0] = make([]byte, 20) },
		"empty-posture-log": func(e *tpm.Evidence) { e.Posture = &tpm.PostureLog{PCR: 23} },
		"posture-log-array": func(e *tpm.Evidence) { e.Posture = &tpm.PostureLog{PCR: 23, Log: []byte{0x80}} },
		"posture-pcr-24":    func(e *tpm.Evidence) { e.Posture = &tpm.PostureLog{PCR: 24, Log: []byte{0xa0}} },
	}
	for name, f := range bad {
		e := base()
		f(e)
		if _, err := e.Marshal(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	raw := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The base value, written by hand, decodes: the cases below differ
	// from it in one thing.
	if _, err := tpm.DecodeEvidence(raw(map[int]any{1: []byte{1}, 2: []byte{2}, 3: []byte{3}, 4: map[int][]byte{0: make([]byte, 32)}})); err != nil {
		t.Fatal(err)
	}
	// Hand-made encodings the encoder refuses to write.
	for name, b := range map[string][]byte{
		"empty":         nil,
		"not-a-map":     {0x80},
		"duplicate-key": append([]byte{0xa5, 0x01, 0x41, 0x01}, good[1:]...),
		"pcr-24":        raw(map[int]any{1: []byte{1}, 2: []byte{2}, 3: []byte{3}, 4: map[int][]byte{24: make([]byte, 32)}}),
		"pcr-negative":  raw(map[int]any{1: []byte{1}, 2: []byte{2}, 3: []byte{3}, 4: map[int][]byte{-1: make([]byte, 32)}}),
		"pcr-text-key":  raw(map[int]any{1: []byte{1}, 2: []byte{2}, 3: []byte{3}, 4: map[string][]byte{"0": make([]byte, 32)}}),
		"unknown-key":   raw(map[int]any{1: []byte{1}, 2: []byte{2}, 3: []byte{3}, 4: map[int][]byte{0: make([]byte, 32)}, 6: 0}),
		"posture-text":  raw(map[int]any{1: []byte{1}, 2: []byte{2}, 3: []byte{3}, 4: map[int][]byte{0: make([]byte, 32)}, 5: map[int]any{1: 23, 2: "log"}}),
		"indefinite":    {0xbf, 0xff},
		"too-large":     make([]byte, postauth.MaxEvidenceLen+1),
	} {
		if _, err := tpm.DecodeEvidence(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// FuzzVerify feeds arbitrary Evidence and binders to a verifier that pins
// the golden simulator AKs and a software key: no panic, decoding is
// stable, and nothing verifies unless its quote is one of the genuinely
// signed seeds.
func FuzzVerify(f *testing.F) {
	key := fixedKey(f)
	aks := [][]byte{softwareAK(f, key)}
	signed := map[string]bool{}
	for _, g := range loadGolden(f) {
		aks = append(aks, g.ak)
		f.Add(g.ch.Binder, g.ev.Value)
		signed[string(g.decode.Quote)] = true
	}
	binder := bytes.Repeat([]byte{7}, 48)
	forged := forgeQuote(f, key, binder, zeroPCRs(0, 7, 23))
	f.Add(binder, forged.Value)
	fd, _ := tpm.DecodeEvidence(forged.Value)
	signed[string(fd.Quote)] = true
	v, err := tpm.NewVerifier(tpm.WithPinnedAKs(aks...), tpm.AllowSoftwareKey(), tpm.WithPCRPolicy(map[int][][]byte{0: {make([]byte, 32)}}))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, binder, b []byte) {
		if d, err := tpm.DecodeEvidence(b); err == nil {
			re, err := d.Marshal()
			if err != nil {
				t.Fatalf("decoded evidence does not encode: %v", err)
			}
			d2, err := tpm.DecodeEvidence(re)
			if err != nil || !reflect.DeepEqual(d, d2) {
				t.Fatalf("decode(encode(x)) != x: %v", err)
			}
			_, _ = tpm.ParseAttest(d.Quote)
		}
		app, err := v.Verify(context.Background(), postauth.Challenge{Binder: binder}, postauth.Evidence{Type: tpm.MediaType, Value: b})
		if err != nil {
			if postauth.CodeOf(err) != postauth.CodeInvalid && postauth.CodeOf(err) != postauth.CodePolicyDenied {
				t.Fatalf("uncoded error %v", err)
			}
			return
		}
		d, _ := tpm.DecodeEvidence(b)
		if !signed[string(d.Quote)] || !bytes.Equal(app.Nonce, binder) {
			t.Fatal("verified a quote nobody signed")
		}
	})
}

// BenchmarkVerify is the relying party's cost for one golden simulator
// quote: decoding, the AK lookup, ECDSA P-256 verification and the checks.
func BenchmarkVerify(b *testing.B) {
	g := loadGolden(b)[0]
	v, err := tpm.NewVerifier(tpm.WithPinnedAKs(g.ak), tpm.AllowSoftwareKey())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, g.ch, g.ev); err != nil {
			b.Fatal(err)
		}
	}
}
