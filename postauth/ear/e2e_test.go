package ear_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/verifier"
)

func TestPassportEndToEnd(t *testing.T) {
	w := newWorld(t)
	ep := postauthtest.MutualTLS(t)
	res, err := exchange(t, ep, w.passport(t, ep), w.passportVerifier(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Format() != "passport" || res.HardwareBacked() || !bytes.Equal(res.MachineID(), w.att.UEID()) ||
		!bytes.Equal(res.PostureHead(), w.tracker.Head()) || len(res.PostureLog()) == 0 {
		t.Fatalf("result: format %q hw %v machine %x posture %x", res.Format(), res.HardwareBacked(), res.MachineID(), res.PostureHead())
	}
	if !bytes.Equal(res.KeyHash(), spkiHash(t, clientKey(ep))) {
		t.Fatal("key hash")
	}
	if !bytes.Equal(res.AttestationKeyID(), w.kid) {
		t.Fatalf("attestation key id %x, want %x", res.AttestationKeyID(), w.kid)
	}
}

func TestBackgroundCheckEndToEnd(t *testing.T) {
	w := newWorld(t)
	ep := postauthtest.MutualTLS(t)
	res, err := exchange(t, ep, w.att, w.remote(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Format() != softeat.Format || !bytes.Equal(res.MachineID(), w.att.UEID()) || !bytes.Equal(res.PostureHead(), w.tracker.Head()) ||
		!bytes.Equal(res.AttestationKeyID(), w.kid) {
		t.Fatalf("result: format %q machine %x kid %x", res.Format(), res.MachineID(), res.AttestationKeyID())
	}
}

// goldenTPM is recorded TPM simulator Evidence (postauth/tpm/testdata).
type goldenTPM struct {
	binder, ak []byte
	ev         postauth.Evidence
}

func loadGoldenTPM(tb testing.TB) goldenTPM {
	tb.Helper()
	b, err := os.ReadFile("../tpm/testdata/golden.json")
	if err != nil {
		tb.Fatal(err)
	}
	var gs []struct{ Name, Binder, AK, Evidence string }
	if err := json.Unmarshal(b, &gs); err != nil {
		tb.Fatal(err)
	}
	for _, g := range gs {
		if g.Name != "posture" {
			continue
		}
		binder, _ := hex.DecodeString(g.Binder)
		ak, _ := hex.DecodeString(g.AK)
		ev, _ := hex.DecodeString(g.Evidence)
		return goldenTPM{binder: binder, ak: ak, ev: postauth.Evidence{Type: tpm.MediaType, Value: ev}}
	}
	tb.Fatal("no golden TPM Evidence")
	return goldenTPM{}
}

// fixedEvidence always answers with the same Evidence.
type fixedEvidence postauth.Evidence

func (f fixedEvidence) Attest(context.Context, postauth.Challenge) (postauth.Evidence, error) {
	return postauth.Evidence(f), nil
}

// TPM quote Evidence (hardware-backed) through both models: the EAR's
// hardware claim makes the relying party's Result hardware-backed.
func TestTPMEvidenceBothModels(t *testing.T) {
	g := loadGoldenTPM(t)
	// The recorded Evidence has a pinned AK and no certified key (the
	// authenticator key is implied by the binder); HardwareBacked needs a
	// boot-state policy (the simulator's PCR 0 is zero).
	tv, err := tpm.NewVerifier(tpm.WithPinnedAKs(g.ak), tpm.AllowSoftwareKey(), tpm.RequirePosture(),
		tpm.WithPCRPolicy(map[int][][]byte{0: {make([]byte, 32)}}))
	if err != nil {
		t.Fatal(err)
	}
	key, err := verifier.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := verifier.NewService(key, verifier.TPM(tv))
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, svc)
	authKey := postauthtest.NewKey(t)
	ch := postauth.Challenge{Binder: g.binder, KeyHash: spkiHash(t, authKey.Public()), Hash: crypto.SHA256, Role: postauth.RoleClient}
	ctx := context.Background()

	rv, err := ear.NewRemoteVerifier(srv.URL(), ear.WithVerifierKeys(svc.PublicKey()), ear.WithLocalBinding(tpm.MediaType, tpm.Binding),
		ear.WithPolicy(&ear.Policy{TrustVector: map[string]string{"hardware": "affirming"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer rv.Close()
	app, err := rv.Verify(ctx, ch, g.ev)
	if err != nil {
		t.Fatal(err)
	}
	if !app.HardwareBacked || app.Format != tpm.Format || len(app.PostureLog) == 0 || !bytes.Equal(app.KeyHash, ch.KeyHash) {
		t.Fatalf("background check: %+v", app)
	}
	// The same quote for another connection is refused locally.
	other := ch
	other.Binder = bytes.Repeat([]byte{7}, 32)
	_, err = rv.Verify(ctx, other, g.ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)

	pass, err := ear.NewAttester(fixedEvidence(g.ev), srv.URL(), authKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	defer pass.Close()
	ev, err := pass.Attest(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	pv, err := ear.NewVerifier([]crypto.PublicKey{svc.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	app, err = pv.Verify(ctx, ch, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !app.HardwareBacked || len(app.MachineID) != 34 || !bytes.Equal(app.KeyHash, ch.KeyHash) {
		t.Fatalf("passport: %+v", app)
	}
}

// TDX quote Evidence (a test-signed quote, verified by go-tdx-guest in the
// service) through both models, and the local binding check of the
// background check on the quote's REPORTDATA.
func TestTDXEvidenceBothModels(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	key, err := verifier.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := verifier.NewService(key, verifier.TDX(env.Verifier))
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, svc)
	authKey := postauthtest.NewKey(t)
	binder := bytes.Repeat([]byte{3}, 32)
	ch := postauth.Challenge{Binder: binder, KeyHash: spkiHash(t, authKey.Public()), Hash: crypto.SHA256, Role: postauth.RoleClient}
	ctx := context.Background()
	ev, err := env.Attester.Attest(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}

	rv, err := ear.NewRemoteVerifier(srv.URL(), ear.WithVerifierKeys(svc.PublicKey()), ear.WithLocalBinding(tdx.MediaType, tdx.Binding))
	if err != nil {
		t.Fatal(err)
	}
	defer rv.Close()
	app, err := rv.Verify(ctx, ch, ev)
	if err != nil {
		t.Fatal(err)
	}
	if app.Format != tdx.FormatTestRoot || app.HardwareBacked || !bytes.Equal(app.KeyHash, ch.KeyHash) || len(app.MachineID) == 0 {
		t.Fatalf("background check: %+v", app)
	}
	// The same quote for another connection is refused locally, before
	// any request to the service.
	other := ch
	other.Binder = bytes.Repeat([]byte{7}, 32)
	_, err = rv.Verify(ctx, other, ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)

	pass, err := ear.NewAttester(fixedEvidence(ev), srv.URL(), authKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	defer pass.Close()
	pev, err := pass.Attest(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	pv, err := ear.NewVerifier([]crypto.PublicKey{svc.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if app, err = pv.Verify(ctx, ch, pev); err != nil {
		t.Fatal(err)
	}
	if app.HardwareBacked || !bytes.Equal(app.KeyHash, ch.KeyHash) {
		t.Fatalf("passport: %+v", app)
	}
	// A passport for the quote over another binder: the service's
	// session nonce is that binder, the quote does not match it, and the
	// EAR it issues says so: contraindicated, and no key attestation (the
	// service attests only the key of Evidence it verified); the relying
	// party refuses it.
	pev, err = pass.Attest(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pv.Verify(ctx, other, pev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonEARKeyAttestationMissing)
}
