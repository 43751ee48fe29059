//go:build cgo

package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/posture"
)

// TestExchange is the round trip: a real TLS 1.3 connection, a request from
// the server, an answer carrying a quote from the simulator, and the
// server's verification through Requester.Verify.
func TestExchange(t *testing.T) {
	att := newAttester(t)
	v := newVerifier(t, [][]byte{att.AKPublic()})
	e := newTLSEnv(t, v)
	res, err := e.exchange(att)
	if err != nil {
		t.Fatal(err)
	}
	// Without a boot-state policy, the Result does not claim hardware
	// backing (see TestHardwareBackedNeedsBootPolicy).
	if res.HardwareBacked() || res.Format() != tpm.Format || res.MediaType() != tpm.MediaType {
		t.Fatalf("result %v %q %q", res.HardwareBacked(), res.Format(), res.MediaType())
	}
	if !bytes.Equal(res.MachineID(), att.AKName()) || len(res.MachineID()) != 34 {
		t.Fatalf("machine id %x, AK name %x", res.MachineID(), att.AKName())
	}
	spki := e.clientID.SPKI()
	if !bytes.Equal(res.KeyHash(), e.clientCh.KeyHash(spki)) {
		t.Fatal("key hash is not the authenticator key's")
	}
	ms := res.Measurements()
	if len(ms) != 8 || ms[0].Name != "pcr/0" || ms[7].Name != "pcr/7" || ms[0].Alg != crypto.SHA256 {
		t.Fatalf("measurements %+v", ms)
	}
	if res.PostureHead() != nil || res.PostureLog() != nil || res.Posture() != nil {
		t.Fatal("posture reported without posture")
	}
}

// TestRelay: Evidence made for connection A's binder, presented on
// connection B, is rejected.
func TestRelay(t *testing.T) {
	att := newAttester(t)
	v := newVerifier(t, [][]byte{att.AKPublic()})
	a, b := newTLSEnv(t, v), newTLSEnv(t, v)
	reqA, err := a.reqr.NewRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := att.Attest(context.Background(), a.challengeFor(reqA))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.exchange(fixedAttester{ev})
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
	// The same Evidence is good on A, for the request it was made for.
	raw := a.respond(fixedAttester{ev}, reqA)
	if _, err := a.reqr.Verify(context.Background(), raw, nil); err != nil {
		t.Fatalf("on A: %v", err)
	}
}

// attestDecoded returns fresh Evidence for ch and its decoding.
func attestDecoded(t *testing.T, att *tpm.Attester, ch postauth.Challenge) (postauth.Evidence, *tpm.Evidence) {
	t.Helper()
	ev, err := att.Attest(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	d, err := tpm.DecodeEvidence(ev.Value)
	if err != nil {
		t.Fatal(err)
	}
	return ev, d
}

func TestVerifierRejects(t *testing.T) {
	att := newAttester(t)
	v := newVerifier(t, [][]byte{att.AKPublic()})
	ch := challenge(crypto.SHA256)
	good, _ := attestDecoded(t, att, ch)
	if _, err := v.Verify(context.Background(), ch, good); err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(d *tpm.Evidence)) postauth.Evidence {
		d, err := tpm.DecodeEvidence(good.Value)
		if err != nil {
			t.Fatal(err)
		}
		f(d)
		return encode(t, d)
	}
	flip := func(b []byte, i int) []byte {
		b = slices.Clone(b)
		b[i] ^= 1
		return b
	}
	other := challenge(crypto.SHA256)
	cases := []struct {
		name   string
		ch     postauth.Challenge
		ev     postauth.Evidence
		reason postauth.Reason
	}{
		{"media-type", ch, postauth.Evidence{Type: "application/eat+cwt", Value: good.Value}, postauth.ReasonFormatNotAccepted},
		{"garbage", ch, postauth.Evidence{Type: tpm.MediaType, Value: []byte{0xa0}}, postauth.ReasonEvidenceInvalid},
		{"unknown-key", ch, postauth.Evidence{Type: tpm.MediaType, Value: append([]byte{0xa6}, append(good.Value[1:], 0x06, 0x00)...)}, postauth.ReasonEvidenceInvalid},
		{"other-binder", other, good, postauth.ReasonBinderMismatch},
		{"quote-magic", ch, mutate(func(d *tpm.Evidence) { d.Quote = flip(d.Quote, 0) }), postauth.ReasonBadEvidenceSignature},
		{"quote-extra-data", ch, mutate(func(d *tpm.Evidence) { d.Quote = flip(d.Quote, 6+2+34+2+5) }), postauth.ReasonBadEvidenceSignature},
		{"quote-clock", ch, mutate(func(d *tpm.Evidence) { d.Quote = flip(d.Quote, len(d.Quote)-60) }), postauth.ReasonBadEvidenceSignature},
		{"quote-digest", ch, mutate(func(d *tpm.Evidence) { d.Quote = flip(d.Quote, len(d.Quote)-1) }), postauth.ReasonBadEvidenceSignature},
		{"signature-r", ch, mutate(func(d *tpm.Evidence) { d.Signature = flip(d.Signature, 10) }), postauth.ReasonBadEvidenceSignature},
		{"signature-s", ch, mutate(func(d *tpm.Evidence) { d.Signature = flip(d.Signature, len(d.Signature)-1) }), postauth.ReasonBadEvidenceSignature},
		{"signature-truncated", ch, mutate(func(d *tpm.Evidence) { d.Signature = d.Signature[:len(d.Signature)-1] }), postauth.ReasonBadEvidenceSignature},
		{"signature-scheme", ch, mutate(func(d *tpm.Evidence) { d.Signature = flip(d.Signature, 1) }), postauth.ReasonBadEvidenceSignature},
		{"pcr-value", ch, mutate(func(d *tpm.Evidence) { d.PCRs[3] = flip(d.PCRs[3], 0) }), postauth.ReasonPCRDigestMismatch},
		{"pcr-dropped", ch, mutate(func(d *tpm.Evidence) { delete(d.PCRs, 7) }), postauth.ReasonPCRSelectionMismatch},
		{"pcr-added", ch, mutate(func(d *tpm.Evidence) { d.PCRs[8] = make([]byte, 32) }), postauth.ReasonPCRSelectionMismatch},
		{"ak-swapped", ch, mutate(func(d *tpm.Evidence) { d.AK = flip(d.AK, len(d.AK)-1) }), postauth.ReasonUntrustedAttester},
		{"posture-without-pcr", ch, mutate(func(d *tpm.Evidence) {
			d.Posture = &tpm.PostureLog{PCR: 23, Log: []byte{0xa2, 0x01, 0x01, 0x02, 0x80}}
		}), postauth.ReasonPostureInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.ch, tc.ev)
			postauthtest.WantError(t, err, postauth.CodeInvalid, tc.reason)
		})
	}
}

// TestUntrustedAK: Evidence from a real TPM whose AK the verifier does not
// pin, and a quote forged in software with a key shaped like an AK, are
// both refused before anything else is looked at.
func TestUntrustedAK(t *testing.T) {
	att := newAttester(t)
	key := postauthtest.NewKey(t)
	softAK := softwareAK(t, key)
	v := newVerifier(t, [][]byte{softAK})
	ch := challenge(crypto.SHA256)
	ev, d := attestDecoded(t, att, ch)
	_, err := v.Verify(context.Background(), ch, ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUntrustedAttester)

	// A forged quote over PCR values of our choice, signed by the software
	// key: refused by a verifier that pins the real AK ...
	forged := forgeQuote(t, key, ch.Binder, d.PCRs)
	vReal := newVerifier(t, [][]byte{att.AKPublic()})
	_, err = vReal.Verify(context.Background(), ch, forged)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUntrustedAttester)
	// ... and it claiming the real AK does not help: the signature fails.
	fd, _ := tpm.DecodeEvidence(forged.Value)
	fd.AK = att.AKPublic()
	_, err = vReal.Verify(context.Background(), ch, encode(t, fd))
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature)
	// Pinning is the trust decision: a verifier that pins the software key
	// accepts what it signs. The relying party must pin only AKs enrolled
	// from a real TPM.
	if _, err := v.Verify(context.Background(), ch, forged); err != nil {
		t.Fatalf("pinned software AK: %v", err)
	}
}

// TestNotAQuote: a TPMS_ATTEST of another type (TPM2_GetTime), genuinely
// signed by the pinned AK over the right binder, is not a quote.
func TestNotAQuote(t *testing.T) {
	att := newAttester(t)
	v := newVerifier(t, [][]byte{att.AKPublic()})
	ch := challenge(crypto.SHA256)
	_, d := attestDecoded(t, att, ch)
	dev := simTPM(t)
	h := akHandle(t, att)
	rsp, err := tpm2.GetTime{
		PrivacyAdminHandle: tpm2.TPMRHEndorsement,
		SignHandle:         tpm2.AuthHandle{Handle: h, Name: tpm2.TPM2BName{Buffer: att.AKName()}, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData:     tpm2.TPM2BData{Buffer: ch.Binder},
		InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
	}.Execute(dev)
	if err != nil {
		t.Fatal(err)
	}
	d.Quote = rsp.TimeInfo.Bytes()
	d.Signature = tpm2.Marshal(rsp.Signature)
	_, err = v.Verify(context.Background(), ch, encode(t, d))
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonEvidenceInvalid)
}

// akHandle finds the transient handle of att's AK (the only transient
// object the tests keep loaded while it runs).
func akHandle(t *testing.T, att *tpm.Attester) tpm2.TPMHandle {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: 0x80000000, PropertyCount: 8}.Execute(simTPM(t))
	if err != nil {
		t.Fatal(err)
	}
	hs, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs.Handle {
		pub, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(simTPM(t))
		if err == nil && bytes.Equal(pub.Name.Buffer, att.AKName()) {
			return h
		}
	}
	t.Fatal("AK not loaded")
	return 0
}

func TestPCRPolicy(t *testing.T) {
	att := newAttester(t)
	ch := challenge(crypto.SHA256)
	ev, d := attestDecoded(t, att, ch)
	allow := func(i int) [][]byte { return [][]byte{d.PCRs[i]} }
	v := newVerifier(t, [][]byte{att.AKPublic()}, tpm.WithPCRPolicy(map[int][][]byte{0: allow(0), 7: {make([]byte, 32), d.PCRs[7]}}))
	if _, err := v.Verify(context.Background(), ch, ev); err != nil {
		t.Fatalf("allowed values: %v", err)
	}
	bad := bytes.Repeat([]byte{0xee}, 32)
	v = newVerifier(t, [][]byte{att.AKPublic()}, tpm.WithPCRPolicy(map[int][][]byte{0: allow(0), 4: {bad}, 7: {bad}, 16: {bad}}))
	_, err := v.Verify(context.Background(), ch, ev)
	postauthtest.WantError(t, err, postauth.CodePolicyDenied, postauth.ReasonPCRPolicyDenied)
	var pe *postauth.Error
	errors.As(err, &pe)
	want := []string{"pcr:4 value not allowed", "pcr:7 value not allowed", "pcr:16 not quoted"}
	if !slices.Equal(pe.Violations, want) {
		t.Fatalf("violations %q, want %q", pe.Violations, want)
	}
	// Bad policies are configuration errors.
	for _, p := range []map[int][][]byte{{24: {bad}}, {-1: {bad}}, {3: nil}, {3: {bad[:20]}}} {
		if _, err := tpm.NewVerifier(tpm.WithPinnedAKs(att.AKPublic()), tpm.WithPCRPolicy(p)); err == nil {
			t.Fatalf("policy %v accepted", p)
		}
	}
}

// TestSHA384Binder: a 48-byte binder (SHA-384 suites) is the quote's
// extraData as is, since the TPM's largest digest is at least 48 bytes; a
// TPM whose largest digest is SHA-256 gets SHA-256(binder), which the
// verifier accepts too.
func TestSHA384Binder(t *testing.T) {
	att := newAttester(t)
	v := newVerifier(t, [][]byte{att.AKPublic()})
	ch := challenge(crypto.SHA384)
	ev, d := attestDecoded(t, att, ch)
	at, err := tpm.ParseAttest(d.Quote)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(at.ExtraData, ch.Binder) {
		t.Fatalf("extraData %x, binder %x", at.ExtraData, ch.Binder)
	}
	if app, err := v.Verify(context.Background(), ch, ev); err != nil || !bytes.Equal(app.Nonce, ch.Binder) || !bytes.Equal(app.KeyHash, ch.KeyHash) {
		t.Fatalf("verify: %v", err)
	}

	tpm.SetMaxData(att, 32)
	ev, d = attestDecoded(t, att, ch)
	at, _ = tpm.ParseAttest(d.Quote)
	sum := sha256.Sum256(ch.Binder)
	if !bytes.Equal(at.ExtraData, sum[:]) {
		t.Fatalf("extraData %x, want SHA-256(binder)", at.ExtraData)
	}
	if _, err := v.Verify(context.Background(), ch, ev); err != nil {
		t.Fatalf("hashed binder: %v", err)
	}
	// SHA-256 of a 32-byte binder is never accepted in its place.
	ch32 := challenge(crypto.SHA256)
	sum = sha256.Sum256(ch32.Binder)
	ev, _ = attestDecoded(t, att, postauth.Challenge{Binder: sum[:]})
	_, err = v.Verify(context.Background(), ch32, ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
}

// postureSetup returns a Tracker over a fresh PCRRegister (PCR 23) on the
// shared simulator.
func postureSetup(t *testing.T) (*tpm.PCRRegister, *posture.Tracker) {
	t.Helper()
	reg, err := tpm.NewPCRRegister(context.Background(), simTPM(t))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := posture.NewTracker(posture.WithRegister(reg))
	if err != nil {
		t.Fatal(err)
	}
	return reg, tr
}

func changePosture(t testing.TB, tr *posture.Tracker, n int) {
	t.Helper()
	ctx := context.Background()
	if err := tr.SetModel(ctx, posture.Model{Name: "m", Version: fmt.Sprint(n), Digest: posture.DigestOf([]byte{byte(n)})}); err != nil {
		t.Fatal(err)
	}
}

// tamperedAttester attests with inner and then rewrites the Evidence it
// got, which the quote signature does not cover entirely (the posture log
// rides next to the quoted PCR values): a lying agent runtime.
type tamperedAttester struct {
	inner  postauth.Attester
	mutate func(d *tpm.Evidence)
}

func (a tamperedAttester) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	ev, err := a.inner.Attest(ctx, ch)
	if err != nil {
		return ev, err
	}
	d, err := tpm.DecodeEvidence(ev.Value)
	if err != nil {
		return ev, err
	}
	a.mutate(d)
	b, err := d.Marshal()
	if err != nil {
		return ev, err
	}
	return postauth.Evidence{Type: ev.Type, Value: b}, nil
}

// TestPosture: the agent's posture log is extended into PCR 23, the quote
// covers PCR 23, and the relying party replays the log against the quoted
// value.
func TestPosture(t *testing.T) {
	ctx := context.Background()
	_, tr := postureSetup(t)
	if err := tr.EnableTool(ctx, posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))}); err != nil {
		t.Fatal(err)
	}
	changePosture(t, tr, 1)
	att := newAttester(t, tpm.WithPosture(tr))
	if !slices.Equal(att.PCRs(), []int{0, 1, 2, 3, 4, 5, 6, 7, 23}) {
		t.Fatalf("selection %v", att.PCRs())
	}
	v := newVerifier(t, [][]byte{att.AKPublic()}, tpm.RequirePosture())
	e := newTLSEnv(t, v)
	res, err := e.exchange(att)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.PostureHead(), tr.Head()) {
		t.Fatal("posture head is not the tracker's")
	}
	st := res.Posture()
	if st == nil || st.Model == nil || st.Model.Version != "1" || len(st.Tools) != 1 {
		t.Fatalf("state %+v", st)
	}

	// The posture changes: the next Evidence covers the new log.
	changePosture(t, tr, 2)
	res, err = e.exchange(att)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.PostureHead(), tr.Head()) || res.Posture().Model.Version != "2" {
		t.Fatal("posture not updated")
	}

	ch := challenge(crypto.SHA256)
	ev, d := attestDecoded(t, att, ch)
	// A log that does not reproduce the quoted PCR: the log of another
	// agent, an undecodable one. The relying party replays the log against
	// the quoted PCR value, so these run end to end.
	other, _ := posture.NewTracker()
	changePosture(t, other, 2)
	snap, _ := other.Snapshot()
	logs := map[string]func(d *tpm.Evidence){
		"other-log":   func(d *tpm.Evidence) { d.Posture.Log = snap.Log },
		"undecodable": func(d *tpm.Evidence) { d.Posture.Log = []byte{0xa0} },
	}
	for name, f := range logs {
		t.Run(name, func(t *testing.T) {
			res, err := e.exchange(tamperedAttester{att, f})
			if res != nil {
				t.Fatal("a posture log that does not replay passed")
			}
			postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonPostureInvalid)
		})
	}
	// The tampering is what fails: the same path, untouched, passes.
	if _, err := e.exchange(tamperedAttester{att, func(*tpm.Evidence) {}}); err != nil {
		t.Fatalf("untouched Evidence through the tampering path: %v", err)
	}
	// A log for another PCR index: the verifier accepts only its posture
	// PCR.
	t.Run("other-pcr", func(t *testing.T) {
		dd, _ := tpm.DecodeEvidence(ev.Value)
		dd.Posture.PCR = 7
		_, err := v.Verify(ctx, ch, encode(t, dd))
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonPostureInvalid)
	})
	t.Run("missing", func(t *testing.T) {
		d.Posture = nil
		_, err := v.Verify(ctx, ch, encode(t, d))
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonPostureMissing)
	})
}

// TestPostureDiverged: something else extends the posture PCR; the
// Attester refuses to produce Evidence whose log cannot reproduce it.
func TestPostureDiverged(t *testing.T) {
	ctx := context.Background()
	reg, tr := postureSetup(t)
	changePosture(t, tr, 1)
	att := newAttester(t, tpm.WithPosture(tr))
	if err := reg.Extend(ctx, make([]byte, 32)); err != nil { // behind the tracker's back
		t.Fatal(err)
	}
	if _, err := att.Attest(ctx, challenge(crypto.SHA256)); !errors.Is(err, tpm.ErrPostureMismatch) {
		t.Fatalf("want ErrPostureMismatch, got %v", err)
	}
}

func TestPCRRegister(t *testing.T) {
	ctx := context.Background()
	reg, err := tpm.NewPCRRegister(ctx, simTPM(t), tpm.WithPCR(16))
	if err != nil {
		t.Fatal(err)
	}
	if reg.PCR() != 16 || reg.Hash() != crypto.SHA256 {
		t.Fatal("wrong register")
	}
	d := sha256.Sum256([]byte("event"))
	if err := reg.Extend(ctx, d[:]); err != nil {
		t.Fatal(err)
	}
	got, err := reg.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := posture.Extend(crypto.SHA256, make([]byte, 32), d[:]); !bytes.Equal(got, want) {
		t.Fatalf("PCR %x, want %x", got, want)
	}
	if err := reg.Extend(ctx, d[:20]); err == nil {
		t.Fatal("short digest extended")
	}
	// A new register on the same PCR starts from zero again.
	reg, err = tpm.NewPCRRegister(ctx, simTPM(t), tpm.WithPCR(16))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := reg.Read(ctx); !bytes.Equal(got, make([]byte, 32)) {
		t.Fatal("PCR not reset")
	}
	// PCR 0 cannot be reset from locality 0; PCR 24 does not exist.
	for _, pcr := range []int{1, 24, -1} {
		if _, err := tpm.NewPCRRegister(ctx, simTPM(t), tpm.WithPCR(pcr)); err == nil {
			t.Fatalf("PCR %d accepted", pcr)
		}
	}
}

// TestSharedLock: an Attester and the posture PCRRegister must share one
// *tpm.SharedTPM; NewAttester refuses a register behind another lock.
func TestSharedLock(t *testing.T) {
	simTPM(t)
	reg, err := tpm.NewPCRRegister(context.Background(), tpm.Share(sim.raw))
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := posture.NewTracker(posture.WithRegister(reg))
	if a, err := tpm.NewAttester(context.Background(), simTPM(t), tpm.WithPosture(tr)); err == nil {
		a.Close()
		t.Fatal("attester accepted a register behind another lock")
	}
	if a, err := tpm.NewAttester(context.Background(), simTPM(t), tpm.WithPosture(tr), tpm.WithPosturePCR(16)); err == nil {
		a.Close()
		t.Fatal("attester accepted a PosturePCR that is not the register's")
	}
}

// TestConcurrent: several goroutines attest while the posture changes; every
// Evidence produced verifies, and the Attester retries rather than produce
// a quote whose log does not match.
func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	_, tr := postureSetup(t)
	att := newAttester(t, tpm.WithPosture(tr))
	v := newVerifier(t, [][]byte{att.AKPublic()}, tpm.RequirePosture())
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				ch := challenge(crypto.SHA256)
				ev, err := att.Attest(ctx, ch)
				if errors.Is(err, tpm.ErrPostureMismatch) {
					continue // the posture kept changing: allowed, never wrong Evidence
				}
				if err != nil {
					t.Error(err)
					return
				}
				app, err := v.Verify(ctx, ch, ev)
				if err != nil {
					t.Error(err)
					return
				}
				// The log reproduces the quoted PCR (what the relying
				// party checks).
				if _, err := posture.VerifyRegister(crypto.SHA256, app.PostureLog, app.PostureHead); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	for i := range 20 {
		changePosture(t, tr, i)
	}
	wg.Wait()
	t.Logf("%d of 20 attestations succeeded while the posture changed", ok)
	if ok == 0 {
		t.Fatal("no attestation succeeded")
	}
}

func TestContext(t *testing.T) {
	att := newAttester(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := att.Attest(ctx, challenge(crypto.SHA256)); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := att.Attest(ctx, challenge(crypto.SHA256)); err != nil {
		t.Fatal(err)
	}
}

func TestAttesterOptions(t *testing.T) {
	ctx := context.Background()
	att := newAttester(t, tpm.WithPCRs(9, 2, 2))
	if !slices.Equal(att.PCRs(), []int{2, 9}) {
		t.Fatalf("selection %v", att.PCRs())
	}
	// The AK is the primary key of AKTemplate under the endorsement
	// hierarchy: the same key every time on the same TPM.
	again := newAttester(t)
	if !bytes.Equal(att.AKPublic(), again.AKPublic()) {
		t.Fatal("AK differs between attesters")
	}
	if _, err := tpm.NewAttester(ctx, simTPM(t), tpm.WithPCRs(24)); err == nil {
		t.Fatal("PCR 24 accepted")
	}
	if _, err := tpm.NewAttester(ctx, simTPM(t), tpm.WithPCRs([]int{}...)); err == nil {
		t.Fatal("empty selection accepted")
	}
	if _, err := tpm.NewAttester(ctx, simTPM(t), tpm.WithAKHandle(0x81000123)); err == nil {
		t.Fatal("missing persistent AK accepted")
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	// All 24 PCRs: three TPM2_PCR_Read calls (at most eight values each).
	all := make([]int, tpm.NumPCRs)
	for i := range all {
		all[i] = i
	}
	wide := newAttester(t, tpm.WithPCRs(all...))
	ch := challenge(crypto.SHA256)
	ev, d := attestDecoded(t, wide, ch)
	if len(d.PCRs) != tpm.NumPCRs {
		t.Fatalf("%d PCR values", len(d.PCRs))
	}
	if _, err := newVerifier(t, [][]byte{wide.AKPublic()}).Verify(ctx, ch, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Attest(ctx, challenge(crypto.SHA256)); !errors.Is(err, tpm.ErrClosed) {
		t.Fatalf("want ErrClosed, got %v", err)
	}
	if _, err := att.Attest(ctx, postauth.Challenge{Binder: make([]byte, 65)}); err == nil {
		t.Fatal("65-byte binder accepted")
	}
}

// TestPersistentAK: an AK made persistent with EvictControl is used through
// tpm.WithAKHandle and yields the same Evidence key.
func TestPersistentAK(t *testing.T) {
	ctx := context.Background()
	dev := simTPM(t)
	created := newAttester(t)
	h := akHandle(t, created)
	const persistent = tpm2.TPMHandle(0x81000101)
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if _, err := (tpm2.EvictControl{Auth: owner, ObjectHandle: &tpm2.NamedHandle{Handle: h, Name: tpm2.TPM2BName{Buffer: created.AKName()}}, PersistentHandle: persistent}).Execute(dev); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tpm2.EvictControl{Auth: owner, ObjectHandle: &tpm2.NamedHandle{Handle: persistent, Name: tpm2.TPM2BName{Buffer: created.AKName()}}, PersistentHandle: persistent}.Execute(dev)
	})
	att := newAttester(t, tpm.WithAKHandle(persistent))
	if !bytes.Equal(att.AKName(), created.AKName()) {
		t.Fatal("persistent AK differs")
	}
	v := newVerifier(t, [][]byte{att.AKPublic()})
	ch := challenge(crypto.SHA256)
	ev, err := att.Attest(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, ch, ev); err != nil {
		t.Fatal(err)
	}
}
