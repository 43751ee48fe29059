package tdx_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/binary"
	"testing"

	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
)

// FuzzDecodeEvidence: no panic, bounds respected, and a decoded value
// re-encodes to the same bytes (the encoding is canonical).
func FuzzDecodeEvidence(f *testing.F) {
	env := tdxtest.NewEnv(f, nil)
	ch := challenge(crypto.SHA256)
	f.Add(attest(f, env.Attester, ch).Value)
	ev, _ := postureEvidence(f, env.CA.NewPlatform(f, nil), ch)
	f.Add(ev.Value)
	f.Add([]byte{0xa1, 0x01, 0x41, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := tdx.DecodeEvidence(b)
		if err != nil {
			return
		}
		if len(e.Quote) == 0 || len(e.Quote) > tdx.MaxQuoteLen {
			t.Fatal("quote out of bounds")
		}
		enc, err := e.Marshal()
		if err != nil {
			t.Fatalf("decoded evidence does not encode: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("not canonical: %x re-encodes to %x", b, enc)
		}
	})
}

// FuzzParseQuote: go-tdx-guest's ABI parser behind ParseQuote never
// panics on peer input, and a parsed quote has fields of the right sizes.
func FuzzParseQuote(f *testing.F) {
	env := tdxtest.NewEnv(f, nil)
	v5 := env.CA.NewPlatform(f, &tdxtest.PlatformConfig{Version: 5})
	f.Add(quoteFor(f, env.Platform, challenge(crypto.SHA256), nil))
	f.Add(quoteFor(f, v5, challenge(crypto.SHA256), nil))
	f.Add(sampleQuote(f, false))
	f.Add(testdata.RawQuoteV5)
	f.Fuzz(func(t *testing.T, raw []byte) {
		q, err := tdx.ParseQuote(raw)
		if err != nil {
			return
		}
		if len(q.MRTD) != 48 || len(q.ReportData) != 64 || len(q.RTMRs[3]) != 48 || (q.Version != 4 && q.Version != 5) {
			t.Fatalf("parsed quote with bad fields: %+v", q)
		}
	})
}

// FuzzVerify: the whole Verifier on fuzzed Evidence never panics and never
// passes Evidence that is not the honest quote's bytes.
func FuzzVerify(f *testing.F) {
	env := tdxtest.NewEnv(f, nil)
	ch := challenge(crypto.SHA256)
	good := attest(f, env.Attester, ch)
	f.Add(good.Value)
	f.Fuzz(func(t *testing.T, b []byte) {
		app, err := env.Verifier.Verify(context.Background(), ch, postauth.Evidence{Type: tdx.MediaType, Value: b})
		if err == nil && (app == nil || !bytes.Equal(app.Nonce, ch.Binder)) {
			t.Fatal("passed without the binder")
		}
	})
}

// FuzzParseCollateral: the collateral parser (JSON documents, PEM chains,
// DER CRLs) never panics.
func FuzzParseCollateral(f *testing.F) {
	env := tdxtest.NewEnv(f, nil)
	raw := env.Collateral
	f.Add(raw.TCBInfo, raw.QEIdentity, raw.TCBInfoIssuerChain, raw.PCKCRL)
	in := sampleCollateral(f, false)
	f.Add(in.TCBInfo, in.QEIdentity, in.TCBInfoIssuerChain, in.PCKCRL)
	f.Fuzz(func(t *testing.T, tcb, qe, chain, crl []byte) {
		r := raw
		r.TCBInfo, r.QEIdentity, r.TCBInfoIssuerChain, r.PCKCRL = tcb, qe, chain, crl
		c, err := tdx.ParseCollateral(r)
		if err == nil && (c.FMSPC() == "" || c.NextUpdate().IsZero()) {
			t.Fatal("parsed collateral without FMSPC or nextUpdate")
		}
	})
}

// FuzzParsePolicy: the policy parser (JSON and YAML) never panics, and a
// parsed policy validates.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(`{"tcb": {"allow": ["SWHardeningNeeded"]}, "mrtd": ["`+string(bytes.Repeat([]byte("ab"), 48))+`"]}`), true)
	f.Add([]byte("tcb:\n  warn: [OutOfDate]\nallow_debug: true\n"), false)
	f.Fuzz(func(t *testing.T, doc []byte, json bool) {
		format := "yaml"
		if json {
			format = "json"
		}
		p, err := tdx.ParsePolicy(doc, format)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed policy does not validate: %v", err)
		}
	})
}

// TestParseQuoteSurvivesParserPanic: go-tdx-guest's V5 parser slices with
// a signed-data size read as int32; a size of 2^31 or more is negative
// and the parser panics. ParseQuote turns that into an error.
func TestParseQuoteSurvivesParserPanic(t *testing.T) {
	env := tdxtest.NewEnv(t, &tdxtest.PlatformConfig{Version: 5})
	q := quoteFor(t, env.Platform, challenge(crypto.SHA256), nil)
	const sizeAt = 48 + 6 + 648
	binary.LittleEndian.PutUint32(q[sizeAt:], 0x80000000)
	if _, err := tdx.ParseQuote(q); err == nil {
		t.Fatal("quote with a negative signed-data size parsed")
	}
}
