package tdx_test

import (
	"context"
	"crypto"
	"encoding/binary"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	tdxtesting "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
)

// The dates at which go-tdx-guest's Intel-signed samples and their
// recorded PCS collateral are valid.
var (
	sampleV4Time = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)
	sampleV5Time = time.Date(2026, time.February, 3, 1, 0, 0, 0, time.UTC)
)

// sampleQuote returns one of go-tdx-guest's Intel-signed sample quotes
// (a real production quote). The V4 sample has 39 bytes appended after
// its signed data ("extra bytes (only for testing purpose)"), which this
// profile refuses: they are cut off here.
func sampleQuote(t testing.TB, v5 bool) []byte {
	t.Helper()
	raw := testdata.RawQuote
	if v5 {
		raw = testdata.RawQuoteV5
	}
	if v5 {
		return slices.Clone(raw)
	}
	const msgLen = 48 + 584
	n := binary.LittleEndian.Uint32(raw[msgLen:])
	return slices.Clone(raw[:msgLen+4+int(n)])
}

// sampleCollateral is the PCS collateral go-tdx-guest recorded for its
// samples (2023; the V5 TCB info from 2026), as the PCS served it.
func sampleCollateral(t testing.TB, v5 bool) tdx.RawCollateral {
	t.Helper()
	chain := func(h map[string][]string, k string) []byte {
		s, err := url.QueryUnescape(h[k][0])
		if err != nil {
			t.Fatal(err)
		}
		return []byte(s)
	}
	raw := tdx.RawCollateral{
		CA:                    tdx.CAPlatform,
		TCBInfo:               testdata.TcbInfoBody,
		TCBInfoIssuerChain:    chain(tdxtesting.TcbInfoHeader, pcs.TcbInfoIssuerChainPhrase),
		QEIdentity:            testdata.QeIdentityBody,
		QEIdentityIssuerChain: chain(tdxtesting.QeIdentityHeader, pcs.SgxQeIdentityIssuerChainPhrase),
		PCKCRL:                testdata.PckCrlBody,
		RootCACRL:             testdata.RootCrlBody,
	}
	if v5 {
		raw.TCBInfo = testdata.TcbInfoBodyV5
	}
	return raw
}

// intelVerifier is a Verifier with the default trusted root (Intel's SGX
// Root CA) and a fixed clock, getting the recorded collateral through the
// PCS client from a local fake PCS, through a Cache.
func intelVerifier(t testing.TB, v5 bool, at time.Time, opts ...tdx.VerifierOption) *tdx.Verifier {
	t.Helper()
	fake := tdxtest.NewFakePCS(t, sampleCollateral(t, v5))
	p, err := tdx.NewPCS(fake.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := tdx.NewCache(p, tdx.WithClock(fixedClock(at)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := tdx.NewVerifier(cache, append([]tdx.VerifierOption{tdx.WithClock(fixedClock(at))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestIntelSampleBindingFailsClosed: Intel's real sample quote, against
// Intel's root at the sample's date, on a real connection. Its signatures
// and chain pass (the binder check comes after them; a changed body byte
// fails them instead), and its REPORTDATA, made for no connection of
// ours, fails the binding: binder_mismatch.
func TestIntelSampleBindingFailsClosed(t *testing.T) {
	for _, v5 := range []bool{false, true} {
		at := sampleV4Time
		if v5 {
			at = sampleV5Time
		}
		v := intelVerifier(t, v5, at)
		quote := sampleQuote(t, v5)
		ev := evidenceOf(t, quote, nil)
		c := newConn(t, v)
		_, err := c.exchange(fixedAttester{ev})
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)

		// The chain and signature checks really ran before: a quote with
		// one body byte changed fails them.
		bad := slices.Clone(quote)
		bad[48+200] ^= 1
		_, err = v.Verify(context.Background(), challenge(crypto.SHA256), evidenceOf(t, bad, nil))
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature)
	}
}

// sampleChallenge is a Challenge whose 64-byte "binder" is the sample's
// REPORTDATA: it lets the sample through the binding check so that the
// rest of the pipeline (collateral, TCB, policy) runs on real Intel data.
// No TLS 1.3 suite has a 64-byte hash; this is a test device only.
func sampleChallenge(t testing.TB, quote []byte) postauth.Challenge {
	t.Helper()
	q, err := tdx.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	return postauth.Challenge{Binder: slices.Clone(q.ReportData), KeyHash: []byte("k"), Hash: crypto.SHA512}
}

// TestIntelSampleFullPipeline: with the sample's own REPORTDATA as the
// binder, Intel's V4 sample goes through the whole pipeline against
// Intel's root and the recorded collateral: chain, signatures, binding,
// the collateral's Intel signatures (TCB info, QE identity, both CRLs),
// revocation, the TDX module and QE identity. It then fails closed on the
// TCB level: Intel's recorded TCB info requires higher SVNs than the
// sample platform has (go-tdx-guest's own tests zero the SVNs to pass),
// so no level matches: tcb_not_supported.
func TestIntelSampleFullPipeline(t *testing.T) {
	quote := sampleQuote(t, false)
	ch := sampleChallenge(t, quote)
	ev := evidenceOf(t, quote, nil)
	_, err := intelVerifier(t, false, sampleV4Time).Verify(context.Background(), ch, ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonTCBNotSupported)
	// Ten days later the recorded QE identity and PCK CRL (nextUpdate
	// 2023-07-08) have expired: without grace, collateral_expired before
	// the TCB is looked at; a grace that covers the gap gets to the TCB
	// again.
	late := sampleV4Time.Add(10 * 24 * time.Hour)
	_, err = intelVerifier(t, false, late).Verify(context.Background(), ch, ev)
	postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonCollateralExpired)
	_, err = intelVerifier(t, false, late, tdx.WithCollateralGrace(7*24*time.Hour)).Verify(context.Background(), ch, ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonTCBNotSupported)
	// Trusting only a test root, Intel's quote is untrusted.
	ca := tdxtest.NewCA(t)
	testOnly, err := tdx.NewVerifier(tdxtest.NewSource(t), tdx.WithTrustedRoots(ca.Roots()...), tdx.WithClock(fixedClock(sampleV4Time)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = testOnly.Verify(context.Background(), ch, ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUntrustedAttester)
}

// TestIntelSampleV5ExpiredCollateral: the V5 sample verifies up to the
// collateral, whose recorded QE identity (2023) is long expired on the V5
// sample's date (2026): collateral_expired, CodeUnavailable, never a pass.
func TestIntelSampleV5ExpiredCollateral(t *testing.T) {
	quote := sampleQuote(t, true)
	v := intelVerifier(t, true, sampleV5Time)
	_, err := v.Verify(context.Background(), sampleChallenge(t, quote), evidenceOf(t, quote, nil))
	postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonCollateralExpired)
}
