package tdx_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
	"github.com/reattest/reattest/posture"
)

// TestExchange is the round trip on a real TLS 1.3 connection: a request
// from the server, an answer carrying a test-signed TDX quote (V4 and V5),
// and the server's verification through Requester.Verify.
func TestExchange(t *testing.T) {
	for _, version := range []int{4, 5} {
		t.Run(map[int]string{4: "v4", 5: "v5"}[version], func(t *testing.T) {
			mrtd := bytes.Repeat([]byte{0xa1}, 48)
			cfgID := bytes.Repeat([]byte{0xc0}, 48)
			env := tdxtest.NewEnv(t, &tdxtest.PlatformConfig{Version: version, TD: tdxtest.TD{MRTD: mrtd, MRCONFIGID: cfgID}})
			c := newConn(t, env.Verifier)
			res, err := c.exchange(env.Attester)
			if err != nil {
				t.Fatal(err)
			}
			if res.Format() != tdx.FormatTestRoot || res.HardwareBacked() || res.MediaType() != tdx.MediaType {
				t.Fatalf("result %q hardware=%v %q", res.Format(), res.HardwareBacked(), res.MediaType())
			}
			if !bytes.Equal(res.KeyHash(), c.keyHash()) {
				t.Fatal("key hash is not the authenticator key's")
			}
			want := sha256.Sum256(slices.Concat(mrtd, cfgID, make([]byte, 96)))
			if !bytes.Equal(res.MachineID(), want[:]) {
				t.Fatalf("machine id %x, want SHA-256(MRTD||MRCONFIGID||MROWNER||MROWNERCONFIG) %x", res.MachineID(), want)
			}
			ms := res.Measurements()
			if m := measurement(t, ms, "mrtd"); !bytes.Equal(m.Digest, mrtd) || m.Alg != crypto.SHA384 {
				t.Fatalf("mrtd measurement %+v", m)
			}
			if m := measurement(t, ms, "tcb_status"); m.Version != tdx.StatusUpToDate {
				t.Fatalf("tcb status %+v", m)
			}
			if m := measurement(t, ms, "pck_fmspc"); !bytes.Equal(m.Digest, []byte{0x50, 0x80, 0x6f, 0, 0, 0}) {
				t.Fatalf("fmspc %+v", m)
			}
			if res.Expiry().IsZero() || res.PostureHead() != nil {
				t.Fatalf("expiry %v, posture %x", res.Expiry(), res.PostureHead())
			}
		})
	}
}

// TestRelay: a quote made for connection A's binder (REPORTDATA of another
// connection), presented on connection B, is refused; on A, for the
// request it was made for, it passes.
func TestRelay(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	a, b := newConn(t, env.Verifier), newConn(t, env.Verifier)
	ev := attest(t, env.Attester, a.challenge())
	_, err := b.exchange(fixedAttester{ev})
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
	if _, err := a.exchange(fixedAttester{ev}); err != nil {
		t.Fatalf("on A: %v", err)
	}
	// Replayed on A for a new request, it is stale: the binder covers
	// the request's context.
	_, err = a.exchange(fixedAttester{ev})
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
}

// TestBinderLayout: REPORTDATA is binder || zero padding for SHA-256 and
// SHA-384 binders; the Verifier reports the binder it found as Nonce.
func TestBinderLayout(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		ch := challenge(h)
		ev := attest(t, env.Attester, ch)
		e, err := tdx.DecodeEvidence(ev.Value)
		if err != nil {
			t.Fatal(err)
		}
		q, err := tdx.ParseQuote(e.Quote)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(q.ReportData, append(slices.Clone(ch.Binder), make([]byte, 64-h.Size())...)) {
			t.Fatalf("%v: REPORTDATA %x", h, q.ReportData)
		}
		app, err := env.Verifier.Verify(context.Background(), ch, ev)
		if err != nil {
			t.Fatalf("%v: %v", h, err)
		}
		if !bytes.Equal(app.Nonce, ch.Binder) || !bytes.Equal(app.KeyHash, ch.KeyHash) {
			t.Fatalf("%v: nonce %x key hash %x", h, app.Nonce, app.KeyHash)
		}
	}
	// The same quote does not pass for a SHA-256 challenge whose binder is
	// its first 32 bytes: the padding must be zero.
	ch := challenge(crypto.SHA384)
	ev := attest(t, env.Attester, ch)
	short := postauth.Challenge{Binder: ch.Binder[:32], KeyHash: ch.KeyHash[:32], Hash: crypto.SHA256}
	_, err := env.Verifier.Verify(context.Background(), short, ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
	if _, err := tdx.ReportData(make([]byte, 65)); err == nil {
		t.Fatal("a 65-byte binder was accepted")
	}
}

// TestTestRootRefusedByIntelRoot: a test-signed quote verifies against the
// test root only; a Verifier with the default roots (Intel's) refuses it.
func TestTestRootRefusedByIntelRoot(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	ch := challenge(crypto.SHA256)
	ev := attest(t, env.Attester, ch)
	intel, err := tdx.NewVerifier(env.Source)
	if err != nil {
		t.Fatal(err)
	}
	_, err = intel.Verify(context.Background(), ch, ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUntrustedAttester)
	app, err := env.Verifier.Verify(context.Background(), ch, ev)
	if err != nil {
		t.Fatal(err)
	}
	if app.HardwareBacked || app.Format != tdx.FormatTestRoot {
		t.Fatalf("test root result: hardware=%v format %q", app.HardwareBacked, app.Format)
	}
}

// TestPostureInRTMR3: the agent's posture is extended into the simulated
// RTMR3; the Evidence carries the log, the quote covers RTMR3, and the
// relying party replays the log to it.
func TestPostureInRTMR3(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	tr, err := posture.NewTracker(posture.WithRegister(env.Platform.RTMR(tdx.PostureRTMR)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := tr.SetModel(ctx, posture.Model{Name: "m", Digest: posture.DigestOf([]byte("weights"))}); err != nil {
		t.Fatal(err)
	}
	if err := tr.EnableTool(ctx, posture.Tool{Name: "search", Digest: posture.DigestOf([]byte("code"))}); err != nil {
		t.Fatal(err)
	}
	att, err := tdx.NewAttester(env.Platform, tdx.WithPosture(tr))
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(t, env.Verifier)
	res, err := c.exchange(att)
	if err != nil {
		t.Fatal(err)
	}
	rtmr3, _ := env.Platform.RTMR(3).Read(ctx)
	if !bytes.Equal(res.PostureHead(), rtmr3) || !bytes.Equal(res.PostureHead(), tr.Head()) || len(rtmr3) != 48 {
		t.Fatalf("posture head %x, RTMR3 %x, tracker %x", res.PostureHead(), rtmr3, tr.Head())
	}
	st := res.Posture()
	if st == nil {
		t.Fatal("no replayed posture in the result")
	}
	if _, ok := st.Tool("search"); !ok || st.Model == nil || st.Model.Name != "m" {
		t.Fatalf("state %+v", st)
	}
	// RTMR extend semantics: new = SHA-384(old || digest).
	before, _ := env.Platform.RTMR(3).Read(ctx)
	d := bytes.Repeat([]byte{7}, 48)
	if err := env.Platform.RTMR(3).Extend(ctx, d); err != nil {
		t.Fatal(err)
	}
	after, _ := env.Platform.RTMR(3).Read(ctx)
	if !bytes.Equal(after, posture.Extend(crypto.SHA384, before, d)) {
		t.Fatal("RTMR extend is not SHA-384(old || digest)")
	}
	// Something other than the Tracker extended RTMR3: the Attester
	// refuses to quote a register its log does not explain.
	_, err = att.Attest(ctx, challenge(crypto.SHA256))
	if err != tdx.ErrPostureMismatch {
		t.Fatalf("attest after a foreign extend: %v", err)
	}
}

// TestRequirePosture: a Verifier that requires posture refuses Evidence
// without it.
func TestRequirePosture(t *testing.T) {
	env := tdxtest.NewEnv(t, nil, tdx.WithRequirePosture(true))
	ch := challenge(crypto.SHA256)
	_, err := env.Verifier.Verify(context.Background(), ch, attest(t, env.Attester, ch))
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonPostureMissing)
}

// TestAttesterChecksItsProvider: an Attester refuses an empty quote and a
// quote with other REPORTDATA (a broken or lying provider).
func TestAttesterChecksItsProvider(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	other := quoteFor(t, env.Platform, challenge(crypto.SHA256), nil)
	for name, qp := range map[string]tdx.QuoteProvider{
		"empty": providerFunc(func([64]byte) ([]byte, error) { return nil, nil }),
		"other": providerFunc(func([64]byte) ([]byte, error) { return other, nil }),
		"junk":  providerFunc(func([64]byte) ([]byte, error) { return []byte{4, 0, 2, 0}, nil }),
	} {
		att, err := tdx.NewAttester(qp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := att.Attest(context.Background(), challenge(crypto.SHA256)); err == nil {
			t.Errorf("%s: Attest succeeded", name)
		}
	}
	if _, err := tdx.NewAttester(nil); err == nil {
		t.Error("nil provider accepted")
	}
}

type providerFunc func([64]byte) ([]byte, error)

func (f providerFunc) Quote(_ context.Context, rd [64]byte) ([]byte, error) { return f(rd) }

// TestTCBMeasurements: the TCB date and evaluation data number of the
// matching collateral are reported.
func TestTCBMeasurements(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	ch := challenge(crypto.SHA256)
	app, err := env.Verifier.Verify(context.Background(), ch, attest(t, env.Attester, ch))
	if err != nil {
		t.Fatal(err)
	}
	if m := measurement(t, app.Measurements, "tcb_evaluation_data_number"); m.Version != "17" {
		t.Fatalf("evaluation data number %q", m.Version)
	}
	if m := measurement(t, app.Measurements, "tcb_date"); len(m.Version) < 10 {
		t.Fatalf("tcb date %q", m.Version)
	}
}

// TestPostureReplayedByRelyingParty: the Verifier reports the posture log
// with the quoted RTMR3 as its head and leaves the replay to the relying
// party, which refuses a log that does not replay to RTMR3 (another log,
// or one measured with SHA-256): posture_invalid, end to end.
func TestPostureReplayedByRelyingParty(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	// The Verifier alone reports what the Evidence carries.
	ch := challenge(crypto.SHA256)
	ev, log := postureEvidence(t, env.Platform, ch)
	app, err := env.Verifier.Verify(context.Background(), ch, ev)
	if err != nil {
		t.Fatal(err)
	}
	rtmr3, _ := env.Platform.RTMR(tdx.PostureRTMR).Read(context.Background())
	if !bytes.Equal(app.PostureHead, rtmr3) || !bytes.Equal(app.PostureLog, log) {
		t.Fatalf("appraisal posture head %x log %d bytes, want RTMR3 %x and the log", app.PostureHead, len(app.PostureLog), rtmr3)
	}
	for _, tc := range []struct {
		name string
		log  []byte
	}{
		{"honest", log},
		{"does-not-replay", otherLog(t, crypto.SHA384)},
		{"sha256-log", otherLog(t, crypto.SHA256)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConn(t, env.Verifier)
			ch := c.challenge()
			e, err := tdx.DecodeEvidence(attest(t, env.Attester, ch).Value)
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.exchange(fixedAttester{evidenceOf(t, e.Quote, tc.log)})
			if tc.name == "honest" {
				if err != nil || res.Posture() == nil {
					t.Fatalf("honest log: %v", err)
				}
				return
			}
			postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonPostureInvalid)
		})
	}
}

// countingVerifier counts the Evidence that reaches a tdx.Verifier; it
// keeps its MediaTypes.
type countingVerifier struct {
	*tdx.Verifier
	n atomic.Int64
}

func (c *countingVerifier) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	c.n.Add(1)
	return c.Verifier.Verify(ctx, ch, ev)
}

// TestFormatsFromVerifier: a RelyingParty built on a tdx.Verifier without
// WithFormats accepts exactly the Verifier's MediaTypes: TDX Evidence
// passes, software Evidence is refused by the relying party
// (format_not_accepted) before it reaches the Verifier.
func TestFormatsFromVerifier(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	v := &countingVerifier{Verifier: env.Verifier}
	if got := postauthtest.RelyingParty(t, v).Formats(); !slices.Equal(got, []string{tdx.MediaType}) {
		t.Fatalf("formats %q, want the tdx Verifier's", got)
	}
	if _, err := newConn(t, v).exchange(env.Attester); err != nil {
		t.Fatal(err)
	}
	soft, _ := postauthtest.Software(t)
	_, err := newConn(t, v).exchange(soft)
	postauthtest.WantErrorIs(t, err, postauth.ErrFormatNotAccepted, postauth.CodeInvalid, postauth.ReasonFormatNotAccepted)
	if n := v.n.Load(); n != 1 {
		t.Fatalf("the Verifier saw %d Evidence, want 1 (the TDX one)", n)
	}
}

// Binding (the background check's local reader) finds the binder in
// REPORTDATA without verifying the quote, and reports anything else so
// that the caller's comparison refuses it.
func TestBinding(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	ch := challenge(crypto.SHA256)
	ev := attest(t, env.Attester, ch)
	nonce, kh, err := tdx.Binding(ch, ev)
	if err != nil || !bytes.Equal(nonce, ch.Binder) || !bytes.Equal(kh, ch.KeyHash) {
		t.Fatalf("Binding = %x, %x, %v", nonce, kh, err)
	}
	other := challenge(crypto.SHA256)
	nonce, kh, err = tdx.Binding(other, ev)
	if err != nil || bytes.Equal(nonce, other.Binder) || kh != nil {
		t.Fatalf("Binding for another binder = %x, %x, %v", nonce, kh, err)
	}
	longer := challenge(crypto.SHA384) // the binder followed by non-zero bytes
	copy(longer.Binder, ch.Binder)
	if nonce, _, _ = tdx.Binding(longer, ev); bytes.Equal(nonce, longer.Binder) {
		t.Fatal("a binder that REPORTDATA only starts with matched")
	}
	_, _, err = tdx.Binding(ch, postauth.Evidence{Type: "application/eat+cwt", Value: ev.Value})
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonFormatNotAccepted)
	_, _, err = tdx.Binding(ch, postauth.Evidence{Type: tdx.MediaType, Value: []byte{0xa0}})
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonEvidenceInvalid)
}
