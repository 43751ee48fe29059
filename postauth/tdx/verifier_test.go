package tdx_test

import (
	"bytes"
	"context"
	"crypto"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
	"github.com/reattest/reattest/posture"
)

// verifierFor returns a Verifier trusting ca's root, with collateral raw
// served from memory.
func verifierFor(t testing.TB, ca *tdxtest.CA, raw tdx.RawCollateral, opts ...tdx.VerifierOption) *tdx.Verifier {
	t.Helper()
	v, err := tdx.NewVerifier(tdxtest.NewSource(t, raw), append([]tdx.VerifierOption{tdx.WithTrustedRoots(ca.Roots()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// postureEvidence returns Evidence from a platform whose RTMR3 holds a
// posture log, and the log.
func postureEvidence(t testing.TB, p *tdxtest.Platform, ch postauth.Challenge) (postauth.Evidence, []byte) {
	t.Helper()
	tr, err := posture.NewTracker(posture.WithRegister(p.RTMR(tdx.PostureRTMR)))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.EnableTool(context.Background(), posture.Tool{Name: "search", Digest: posture.DigestOf([]byte("v1"))}); err != nil {
		t.Fatal(err)
	}
	att, err := tdx.NewAttester(p, tdx.WithPosture(tr))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return attest(t, att, ch), snap.Log
}

// otherLog returns a valid SHA-384 posture log that does not describe
// what was extended into any RTMR here.
func otherLog(t testing.TB, alg crypto.Hash) []byte {
	t.Helper()
	reg, err := posture.NewSoftwareRegister(alg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := posture.NewTracker(posture.WithRegister(reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.EnableTool(context.Background(), posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("x"))}); err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return snap.Log
}

// TestVerifierRejects: every attack and malformation of the issue, each
// with the check that stops it (docs/tdx.md section 5). Each case builds
// its own platform and verifier, so that no verified signer is
// remembered from another case.
func TestVerifierRejects(t *testing.T) {
	type setup struct {
		v  *tdx.Verifier
		ch postauth.Challenge
		ev postauth.Evidence
	}
	// std is a default platform with collateral cc under verifier options
	// opts, and its honest Evidence for a fresh challenge.
	std := func(t *testing.T, pc *tdxtest.PlatformConfig, cc *tdxtest.CollateralConfig, opts ...tdx.VerifierOption) (*tdxtest.CA, *tdxtest.Platform, setup) {
		ca := tdxtest.NewCA(t)
		p := ca.NewPlatform(t, pc)
		ch := challenge(crypto.SHA256)
		att, err := tdx.NewAttester(p)
		if err != nil {
			t.Fatal(err)
		}
		return ca, p, setup{verifierFor(t, ca, ca.Collateral(t, p, cc), opts...), ch, attest(t, att, ch)}
	}
	withQuote := func(t *testing.T, s setup, f func(q []byte) []byte) setup {
		e, err := tdx.DecodeEvidence(s.ev.Value)
		if err != nil {
			t.Fatal(err)
		}
		s.ev = evidenceOf(t, f(slices.Clone(e.Quote)), nil)
		return s
	}
	flip := func(i int) func([]byte) []byte {
		return func(q []byte) []byte {
			if i < 0 {
				i += len(q)
			}
			q[i] ^= 1
			return q
		}
	}
	policy := func(p *tdx.Policy) tdx.VerifierOption { return tdx.WithPolicy(p) }
	cases := []struct {
		name       string
		setup      func(t *testing.T) setup
		code       postauth.Code
		reason     postauth.Reason
		violations []string
	}{
		// Encoding.
		{"media-type", func(t *testing.T) setup {
			_, _, s := std(t, nil, nil)
			s.ev.Type = "application/eat+cwt"
			return s
		}, postauth.CodeInvalid, postauth.ReasonFormatNotAccepted, nil},
		{"garbage", func(t *testing.T) setup {
			_, _, s := std(t, nil, nil)
			s.ev.Value = []byte{0xa0}
			return s
		}, postauth.CodeInvalid, postauth.ReasonEvidenceInvalid, nil},
		{"quote-truncated", func(t *testing.T) setup {
			_, _, s := std(t, nil, nil)
			return withQuote(t, s, func(q []byte) []byte { return q[:len(q)-1] })
		}, postauth.CodeInvalid, postauth.ReasonEvidenceInvalid, nil},
		{"quote-trailing-bytes", func(t *testing.T) setup {
			_, _, s := std(t, nil, nil)
			return withQuote(t, s, func(q []byte) []byte { return append(q, 0) })
		}, postauth.CodeInvalid, postauth.ReasonEvidenceInvalid, nil},
		// Signatures and chain.
		{"body-byte-changed", func(t *testing.T) setup {
			_, _, s := std(t, nil, nil)
			return withQuote(t, s, flip(48+200))
		}, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature, nil},
		{"quote-signature-changed", func(t *testing.T) setup {
			_, _, s := std(t, nil, nil)
			return withQuote(t, s, flip(48+584+4+10))
		}, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature, nil},
		{"qe-report-changed", func(t *testing.T) setup {
			_, _, s := std(t, nil, nil)
			return withQuote(t, s, flip(48+584+4+128+6+20))
		}, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature, nil},
		{"qe-report-signature-changed", func(t *testing.T) setup {
			_, _, s := std(t, nil, nil)
			return withQuote(t, s, flip(48+584+4+128+6+384+5))
		}, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature, nil},
		{"chain-not-rooted-in-trusted-root", func(t *testing.T) setup {
			// An attacker's PKI with Intel's names: its quotes are
			// well-formed and correctly signed, its collateral too.
			ca, _, s := std(t, nil, nil)
			evil := tdxtest.NewCA(t)
			ep := evil.NewPlatform(t, nil)
			s.ev = evidenceOf(t, quoteFor(t, ep, s.ch, nil), nil)
			s.v = verifierFor(t, ca, evil.Collateral(t, ep, nil))
			return s
		}, postauth.CodeInvalid, postauth.ReasonUntrustedAttester, nil},
		{"pck-expired", func(t *testing.T) setup {
			_, _, s := std(t, nil, nil, tdx.WithClock(fixedClock(time.Now().Add(11*365*24*time.Hour))))
			return s
		}, postauth.CodeInvalid, postauth.ReasonUntrustedAttester, nil},
		{"qe-vendor", func(t *testing.T) setup {
			_, _, s := std(t, &tdxtest.PlatformConfig{QEVendorID: bytes.Repeat([]byte{1}, 16)}, nil)
			return s
		}, postauth.CodeInvalid, postauth.ReasonQEIdentityMismatch, nil},
		// Binding.
		{"other-binder", func(t *testing.T) setup {
			_, _, s := std(t, nil, nil)
			s.ch = challenge(crypto.SHA256)
			return s
		}, postauth.CodeInvalid, postauth.ReasonBinderMismatch, nil},
		{"padding-not-zero", func(t *testing.T) setup {
			_, p, s := std(t, nil, nil)
			rd, _ := tdx.ReportData(s.ch.Binder)
			rd[63] = 1
			q, err := p.QuoteWith(rd, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.ev = evidenceOf(t, q, nil)
			return s
		}, postauth.CodeInvalid, postauth.ReasonBinderMismatch, nil},
		// Collateral.
		{"collateral-expired", func(t *testing.T) setup {
			_, _, s := std(t, nil, &tdxtest.CollateralConfig{IssueDate: time.Now().Add(-40 * 24 * time.Hour), NextUpdate: time.Now().Add(-time.Minute)})
			return s
		}, postauth.CodeUnavailable, postauth.ReasonCollateralExpired, nil},
		{"collateral-missing", func(t *testing.T) setup {
			ca, _, s := std(t, nil, nil)
			other := ca.NewPlatform(t, &tdxtest.PlatformConfig{FMSPC: []byte{1, 2, 3, 4, 5, 6}})
			s.v = verifierFor(t, ca, ca.Collateral(t, other, nil))
			return s
		}, postauth.CodeUnavailable, postauth.ReasonCollateralUnavailable, nil},
		{"collateral-signed-by-another-root", func(t *testing.T) setup {
			// Both roots are trusted, but the collateral's signer is not
			// of the quote's root.
			ca, p, s := std(t, nil, nil)
			other := tdxtest.NewCA(t)
			op := other.NewPlatform(t, nil) // same FMSPC as p
			_ = p
			v, err := tdx.NewVerifier(tdxtest.NewSource(t, other.Collateral(t, op, nil)), tdx.WithTrustedRoots(ca.Root, other.Root))
			if err != nil {
				t.Fatal(err)
			}
			s.v = v
			return s
		}, postauth.CodeUnavailable, postauth.ReasonCollateralInvalid, nil},
		{"collateral-tcb-info-tampered", func(t *testing.T) setup {
			ca, p, s := std(t, nil, nil)
			raw := ca.Collateral(t, p, &tdxtest.CollateralConfig{TCBStatus: tdx.StatusOutOfDate})
			raw.TCBInfo = bytes.Replace(raw.TCBInfo, []byte(`"OutOfDate"`), []byte(`"UpToDate"`), 1)
			s.v = verifierFor(t, ca, raw)
			return s
		}, postauth.CodeUnavailable, postauth.ReasonCollateralInvalid, nil},
		{"collateral-qe-identity-tampered", func(t *testing.T) setup {
			ca, p, s := std(t, nil, nil)
			raw := ca.Collateral(t, p, &tdxtest.CollateralConfig{QEStatus: tdx.StatusOutOfDate})
			raw.QEIdentity = bytes.Replace(raw.QEIdentity, []byte(`"OutOfDate"`), []byte(`"UpToDate"`), 1)
			s.v = verifierFor(t, ca, raw)
			return s
		}, postauth.CodeUnavailable, postauth.ReasonCollateralInvalid, nil},
		{"tcb-signer-from-another-root", func(t *testing.T) setup {
			// The TCB info and QE identity of another PKI (same names,
			// same FMSPC), the CRLs of the quote's: only the signer's
			// issuer is wrong.
			ca, p, s := std(t, nil, nil)
			raw := ca.Collateral(t, p, nil)
			other := tdxtest.NewCA(t)
			oraw := other.Collateral(t, other.NewPlatform(t, nil), nil)
			raw.TCBInfo, raw.TCBInfoIssuerChain, raw.QEIdentity, raw.QEIdentityIssuerChain = oraw.TCBInfo, oraw.TCBInfoIssuerChain, oraw.QEIdentity, oraw.QEIdentityIssuerChain
			s.v = verifierFor(t, ca, raw)
			return s
		}, postauth.CodeUnavailable, postauth.ReasonCollateralInvalid, nil},
		{"collateral-for-another-platform", func(t *testing.T) setup {
			ca, _, s := std(t, nil, nil)
			other := ca.NewPlatform(t, &tdxtest.PlatformConfig{FMSPC: []byte{1, 2, 3, 4, 5, 6}})
			src := tdxtest.NewSource(t, ca.Collateral(t, other, nil))
			v, err := tdx.NewVerifier(sourceFunc(func(ctx context.Context, _, ca string) (*tdx.Collateral, error) {
				return src.Collateral(ctx, "010203040506", ca)
			}), tdx.WithTrustedRoots(ca.Roots()...))
			if err != nil {
				t.Fatal(err)
			}
			s.v = v
			return s
		}, postauth.CodeUnavailable, postauth.ReasonCollateralInvalid, nil},
		{"collateral-for-another-ca", func(t *testing.T) setup {
			// The right FMSPC, but collateral (PCK CRL) for the processor
			// CA while the PCK was issued by the platform CA.
			ca, p, s := std(t, nil, nil)
			raw := ca.Collateral(t, p, nil)
			raw.CA = tdx.CAProcessor
			src := tdxtest.NewSource(t, raw)
			v, err := tdx.NewVerifier(sourceFunc(func(ctx context.Context, fmspc, _ string) (*tdx.Collateral, error) {
				return src.Collateral(ctx, fmspc, tdx.CAProcessor)
			}), tdx.WithTrustedRoots(ca.Roots()...))
			if err != nil {
				t.Fatal(err)
			}
			s.v = v
			return s
		}, postauth.CodeUnavailable, postauth.ReasonCollateralInvalid, nil},
		{"tcb-info-other-pceid", func(t *testing.T) setup {
			_, _, s := std(t, nil, &tdxtest.CollateralConfig{PCEID: []byte{0, 1}})
			return s
		}, postauth.CodeUnavailable, postauth.ReasonCollateralInvalid, nil},
		{"pck-crl-from-another-ca", func(t *testing.T) setup {
			ca, p, s := std(t, nil, nil)
			raw := ca.Collateral(t, p, nil)
			other := tdxtest.NewCA(t)
			raw.PCKCRL = other.Collateral(t, other.NewPlatform(t, nil), &tdxtest.CollateralConfig{}).PCKCRL
			s.v = verifierFor(t, ca, raw)
			return s
		}, postauth.CodeUnavailable, postauth.ReasonCollateralInvalid, nil},
		// Revocation.
		{"pck-revoked", func(t *testing.T) setup {
			ca, p, s := std(t, nil, nil)
			s.v = verifierFor(t, ca, ca.Collateral(t, p, &tdxtest.CollateralConfig{RevokedPCKs: []*big.Int{p.Revoke()}}))
			return s
		}, postauth.CodeInvalid, postauth.ReasonPCKRevoked, nil},
		{"pck-ca-revoked", func(t *testing.T) setup {
			ca, p, s := std(t, nil, nil)
			s.v = verifierFor(t, ca, ca.Collateral(t, p, &tdxtest.CollateralConfig{RevokePlatformCA: true}))
			return s
		}, postauth.CodeInvalid, postauth.ReasonPCKRevoked, nil},
		// TCB matching.
		{"tcb-level-unmatched", func(t *testing.T) setup {
			_, _, s := std(t, nil, &tdxtest.CollateralConfig{UnmatchedLevel: true})
			return s
		}, postauth.CodeInvalid, postauth.ReasonTCBNotSupported, nil},
		{"tdx-module-signer", func(t *testing.T) setup {
			_, _, s := std(t, nil, &tdxtest.CollateralConfig{ModuleMRSIGNER: bytes.Repeat([]byte{9}, 48)})
			return s
		}, postauth.CodeInvalid, postauth.ReasonTDXModuleMismatch, nil},
		{"qe-identity-signer", func(t *testing.T) setup {
			_, _, s := std(t, nil, &tdxtest.CollateralConfig{QEMRSIGNER: bytes.Repeat([]byte{9}, 32)})
			return s
		}, postauth.CodeInvalid, postauth.ReasonQEIdentityMismatch, nil},
		// TCB status policy.
		{"tcb-out-of-date", func(t *testing.T) setup {
			_, _, s := std(t, nil, &tdxtest.CollateralConfig{TCBStatus: tdx.StatusOutOfDate})
			return s
		}, postauth.CodePolicyDenied, postauth.ReasonTCBStatusDenied, []string{"tcb:platform OutOfDate not allowed"}},
		{"tcb-revoked-even-if-allowed-otherwise", func(t *testing.T) setup {
			_, _, s := std(t, nil, &tdxtest.CollateralConfig{TCBStatus: tdx.StatusRevoked},
				policy(&tdx.Policy{TCB: tdx.TCBPolicy{Allow: []string{tdx.StatusOutOfDate}, Warn: []string{tdx.StatusSWHardeningNeeded}}}))
			return s
		}, postauth.CodePolicyDenied, postauth.ReasonTCBStatusDenied, []string{"tcb:platform Revoked not allowed"}},
		{"qe-out-of-date", func(t *testing.T) setup {
			_, _, s := std(t, nil, &tdxtest.CollateralConfig{QEStatus: tdx.StatusOutOfDate})
			return s
		}, postauth.CodePolicyDenied, postauth.ReasonTCBStatusDenied, []string{"tcb:qe OutOfDate not allowed"}},
		{"tdx-module-out-of-date", func(t *testing.T) setup {
			// TEE_TCB_SVN[1] = 3: the module identity TDX_03 decides, and
			// its OutOfDate makes the UpToDate platform level OutOfDate.
			_, _, s := std(t, &tdxtest.PlatformConfig{TD: tdxtest.TD{TEETCBSVN: []byte{5, 3, 4}}}, &tdxtest.CollateralConfig{ModuleStatus: tdx.StatusOutOfDate})
			return s
		}, postauth.CodePolicyDenied, postauth.ReasonTCBStatusDenied, []string{"tcb:platform OutOfDate not allowed"}},
		{"sw-hardening-needed-by-default", func(t *testing.T) setup {
			_, _, s := std(t, nil, &tdxtest.CollateralConfig{TCBStatus: tdx.StatusSWHardeningNeeded})
			return s
		}, postauth.CodePolicyDenied, postauth.ReasonTCBStatusDenied, []string{"tcb:platform SWHardeningNeeded not allowed"}},
		// Measurement policy.
		{"debug-td", func(t *testing.T) setup {
			_, _, s := std(t, &tdxtest.PlatformConfig{TD: tdxtest.TD{TDAttributes: []byte{1}}}, nil)
			return s
		}, postauth.CodePolicyDenied, postauth.ReasonTDXPolicyDenied, []string{"td_attributes:debug forbidden"}},
		{"wrong-mrtd", func(t *testing.T) setup {
			_, _, s := std(t, &tdxtest.PlatformConfig{TD: tdxtest.TD{MRTD: bytes.Repeat([]byte{1}, 48)}}, nil,
				policy(&tdx.Policy{MRTD: []string{strings.Repeat("02", 48), strings.Repeat("03", 48)}}))
			return s
		}, postauth.CodePolicyDenied, postauth.ReasonTDXPolicyDenied, []string{"mrtd not allowed"}},
		{"wrong-rtmr", func(t *testing.T) setup {
			_, _, s := std(t, &tdxtest.PlatformConfig{TD: tdxtest.TD{RTMRs: [4][]byte{nil, bytes.Repeat([]byte{7}, 48)}}}, nil,
				policy(&tdx.Policy{RTMR1: []string{strings.Repeat("00", 48)}, RTMR2: []string{strings.Repeat("00", 48)}}))
			return s
		}, postauth.CodePolicyDenied, postauth.ReasonTDXPolicyDenied, []string{"rtmr:1 not allowed"}},
		{"every-measurement-violation", func(t *testing.T) setup {
			_, _, s := std(t, &tdxtest.PlatformConfig{TD: tdxtest.TD{TDAttributes: []byte{1}, TEETCBSVN: []byte{3, 0, 4}}}, nil,
				policy(&tdx.Policy{
					MRTD: []string{strings.Repeat("ab", 48)}, RTMR0: []string{strings.Repeat("ab", 48)}, RTMR3: []string{strings.Repeat("ab", 48)},
					MRCONFIGID: []string{strings.Repeat("ab", 48)}, MROWNER: []string{strings.Repeat("ab", 48)}, MROWNERCONFIG: []string{strings.Repeat("ab", 48)},
					MRSEAM: []string{strings.Repeat("ab", 48)}, XFAM: []string{"0000000000000000"}, MinTEETCBSVN: "03000500000000000000000000000000",
				}))
			return s
		}, postauth.CodePolicyDenied, postauth.ReasonTDXPolicyDenied, []string{
			"td_attributes:debug forbidden", "mrtd not allowed", "rtmr:0 not allowed", "rtmr:3 not allowed", "mrconfigid not allowed",
			"mrowner not allowed", "mrownerconfig not allowed", "mrseam not allowed", "xfam not allowed", "tee_tcb_svn:2 below minimum",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.setup(t)
			_, err := s.v.Verify(context.Background(), s.ch, s.ev)
			postauthtest.WantError(t, err, tc.code, tc.reason)
			if tc.violations != nil {
				wantViolations(t, err, tc.reason, tc.violations)
			}
		})
	}
}

// TestKnownSignerStillChecked: after a signer's first quote verified, the
// Verifier remembers the signer, and still checks every later quote's own
// signature, and the chain's validity at the time of each quote.
func TestKnownSignerStillChecked(t *testing.T) {
	clk := postauthtest.NewClock(time.Now())
	env := tdxtest.NewEnv(t, nil, tdx.WithClock(clk.Now))
	ch := challenge(crypto.SHA256)
	ev := attest(t, env.Attester, ch)
	if _, err := env.Verifier.Verify(context.Background(), ch, ev); err != nil {
		t.Fatal(err)
	}
	e, _ := tdx.DecodeEvidence(ev.Value)
	for _, off := range []int{48 + 200, 48 + 584 + 4 + 3} { // a body byte; the quote signature
		q := slices.Clone(e.Quote)
		q[off] ^= 1
		_, err := env.Verifier.Verify(context.Background(), ch, evidenceOf(t, q, nil))
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature)
	}
	// Another, honest quote by the same signer passes.
	ch2 := challenge(crypto.SHA256)
	if _, err := env.Verifier.Verify(context.Background(), ch2, attest(t, env.Attester, ch2)); err != nil {
		t.Fatal(err)
	}
	if n := env.Verifier.FullVerifications(); n != 1 {
		t.Fatalf("%d full verifications, want 1: the later quotes were not checked as a known signer's", n)
	}
	// Once the PCK certificate expired, the known signer is refused.
	clk.Advance(env.Platform.PCK().NotAfter.Add(time.Second).Sub(clk.Now()))
	_, err := env.Verifier.Verify(context.Background(), ch, ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUntrustedAttester)
}

// TestTCBWarnings: a status on the policy's warn list passes, is reported
// as a "tcb_warning" measurement, and reaches the warning handler with the
// advisories; a status on the allow list passes silently.
func TestTCBWarnings(t *testing.T) {
	ca := tdxtest.NewCA(t)
	p := ca.NewPlatform(t, nil)
	raw := ca.Collateral(t, p, &tdxtest.CollateralConfig{TCBStatus: tdx.StatusSWHardeningNeeded, AdvisoryIDs: []string{"INTEL-SA-00837"}})
	var got []string
	v := verifierFor(t, ca, raw,
		tdx.WithPolicy(&tdx.Policy{TCB: tdx.TCBPolicy{Warn: []string{tdx.StatusSWHardeningNeeded}}}),
		tdx.WithWarningHandler(func(_ context.Context, w []string) { got = w }))
	att, _ := tdx.NewAttester(p)
	ch := challenge(crypto.SHA256)
	app, err := v.Verify(context.Background(), ch, attest(t, att, ch))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"tcb:platform SWHardeningNeeded", "advisory INTEL-SA-00837"}) {
		t.Fatalf("warnings %q", got)
	}
	if m := measurement(t, app.Measurements, "tcb_warning"); m.Version != "tcb:platform SWHardeningNeeded" {
		t.Fatalf("warning measurement %+v", m)
	}
	if m := measurement(t, app.Measurements, "tcb_advisory"); m.Version != "INTEL-SA-00837" {
		t.Fatalf("advisory measurement %+v", m)
	}
	got = nil
	v = verifierFor(t, ca, raw, tdx.WithPolicy(&tdx.Policy{TCB: tdx.TCBPolicy{Allow: []string{tdx.StatusSWHardeningNeeded}}}),
		tdx.WithWarningHandler(func(_ context.Context, w []string) { got = w }))
	app, err = v.Verify(context.Background(), ch, attest(t, att, ch))
	if err != nil || got != nil || slices.ContainsFunc(app.Measurements, func(m postauth.Measurement) bool { return m.Name == "tcb_warning" }) {
		t.Fatalf("allowed status: err %v, warnings %q", err, got)
	}
}

// TestPolicyPasses: a measurement policy that lists the TD's values
// passes; debug passes only with AllowDebug.
func TestPolicyPasses(t *testing.T) {
	mrtd := bytes.Repeat([]byte{0x5a}, 48)
	env := tdxtest.NewEnv(t, &tdxtest.PlatformConfig{TD: tdxtest.TD{MRTD: mrtd, TDAttributes: []byte{1}}}, tdx.WithPolicy(&tdx.Policy{
		MRTD: []string{strings.Repeat("00", 48), strings.ToUpper(strings.Repeat("5a", 48))}, AllowDebug: true,
		XFAM: []string{"e71a060000000000"}, MinTEETCBSVN: "03000400000000000000000000000000",
	}))
	ch := challenge(crypto.SHA256)
	if _, err := env.Verifier.Verify(context.Background(), ch, attest(t, env.Attester, ch)); err != nil {
		t.Fatal(err)
	}
}

// TestCollateralSourceErrors: a source failure is unavailable, a
// canceled caller is reported as such (not as a verifier failure).
func TestCollateralSourceErrors(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	ch := challenge(crypto.SHA256)
	ev := attest(t, env.Attester, ch)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := env.Verifier.Verify(ctx, ch, ev); err != context.Canceled {
		t.Fatalf("canceled: %v", err)
	}
	if _, err := tdx.NewVerifier(nil); err == nil {
		t.Fatal("nil source accepted")
	}
	if _, err := tdx.NewVerifier(env.Source, tdx.WithTrustedRoots()); err == nil {
		t.Fatal("no roots accepted")
	}
	if _, err := tdx.NewVerifier(env.Source, tdx.WithPolicy(&tdx.Policy{MRTD: []string{"zz"}})); err == nil {
		t.Fatal("invalid policy accepted")
	}
	if _, err := tdx.NewVerifier(env.Source, tdx.WithCollateralGrace(-time.Second)); err == nil {
		t.Fatal("negative grace accepted")
	}
	if got := env.Verifier.MediaTypes(); !slices.Equal(got, []string{tdx.MediaType}) {
		t.Fatalf("media types %q", got)
	}
}
