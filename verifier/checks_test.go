package verifier_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	vear "github.com/veraison/ear"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/verifier"
)

// editing is a format verifier that changes the appraisal of a real one:
// a careless or broken format Verifier.
type editing struct {
	inner postauth.Verifier
	edit  func(app *postauth.Appraisal)
}

func (e editing) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	app, err := e.inner.Verify(ctx, ch, ev)
	if err == nil {
		e.edit(app)
	}
	return app, err
}

// serviceWith runs a service whose software EAT verifier is v, and
// returns a fixture around it with att as the agent's attester.
func serviceWith(t *testing.T, att *softeat.Attester, v postauth.Verifier) *fixture {
	t.Helper()
	key, err := verifier.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := verifier.NewService(key, verifier.WithFormat(softeat.Format, softeat.MediaType, v, softeat.Binding))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := verifier.Start(nil, svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &fixture{key: key, svc: svc, srv: srv, att: att, auth: postauthtest.NewKey(t), hc: &http.Client{}}
}

// appraised submits Evidence for a fresh session and returns the EAR's
// submodule.
func (f *fixture) appraised(t *testing.T) *vear.Appraisal {
	t.Helper()
	path, nonce := f.open(t, nil)
	r := f.submit(t, path, f.evidence(t, f.challenge(t, nonce)), nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	return claimsOf(t, *decodeSession(t, r).Result, f.svc.PublicKey()).Submods[softeat.Format]
}

func wantContraindicated(t *testing.T, sub *vear.Appraisal, problem postauth.Reason) {
	t.Helper()
	if sub == nil || *sub.Status != vear.TrustTierContraindicated || sub.VeraisonAnnotatedEvidence != nil || sub.VeraisonPolicyClaims == nil ||
		(*sub.VeraisonPolicyClaims)["problem"] != string(problem) {
		t.Fatalf("want contraindicated (%s), got %+v", problem, sub)
	}
}

// The service calls format Verifiers directly, not through a relying
// party, so it replays the posture log itself before the EAR carries it:
// format Verifiers report the log without replaying it.
func TestServiceReplaysPosture(t *testing.T) {
	tr, err := posture.NewTracker()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.EnableTool(context.Background(), posture.Tool{Name: "search", Digest: posture.DigestOf([]byte("search"))}); err != nil {
		t.Fatal(err)
	}
	k := postauthtest.NewSoftwareKey(t)
	att := k.Attester(t, softeat.WithPosture(tr))

	t.Run("a log that replays", func(t *testing.T) {
		sub := serviceWith(t, att, k.Verifier(t)).appraised(t)
		ann := *sub.VeraisonAnnotatedEvidence
		head := posture.Digest{Alg: posture.AlgSHA256, Value: tr.Head()}.String()
		if *sub.Status != vear.TrustTierAffirming || ann[ear.AnnotationPostureHead] != head ||
			ann[ear.AnnotationPostureLog] == nil {
			t.Fatalf("submod %+v", sub)
		}
	})
	t.Run("a log that does not replay to the head", func(t *testing.T) {
		wrong := editing{k.Verifier(t), func(app *postauth.Appraisal) { app.PostureHead = bytes.Repeat([]byte{7}, len(app.PostureHead)) }}
		wantContraindicated(t, serviceWith(t, att, wrong).appraised(t), postauth.ReasonPostureInvalid)
	})
	t.Run("a head without a log", func(t *testing.T) {
		wrong := editing{k.Verifier(t), func(app *postauth.Appraisal) { app.PostureLog = nil }}
		wantContraindicated(t, serviceWith(t, att, wrong).appraised(t), postauth.ReasonPostureInvalid)
	})
}

// A careless format Verifier that reports a freshness value other than the
// session nonce does not get an affirming EAR: the service compares it, as
// a relying party does.
func TestServiceComparesReportedNonce(t *testing.T) {
	att, sv := postauthtest.Software(t)
	careless := editing{sv, func(app *postauth.Appraisal) { app.Nonce = bytes.Repeat([]byte{1}, len(app.Nonce)) }}
	wantContraindicated(t, serviceWith(t, att, careless).appraised(t), postauth.ReasonBinderMismatch)
}

// The service appraises Evidence: a CMW record that says it carries an
// Attestation Result (indicator 8) is not appraised.
func TestServiceRefusesAttestationResultCMW(t *testing.T) {
	f := newFixture(t)
	path, nonce := f.open(t, nil)
	ev := f.evidence(t, f.challenge(t, nonce))
	ev.Kind = postauth.KindAttestationResult
	rec, err := postauth.EncodeCMW(ev, postauth.CMWJSON)
	if err != nil {
		t.Fatal(err)
	}
	r := f.submit(t, path, postauth.Evidence{Type: "application/cmw+json", Value: rec}, nil)
	if r.status != http.StatusBadRequest {
		t.Fatalf("status %d (%s)", r.status, r.body)
	}
	wantProblem(t, r)
	// The session still waits for Evidence.
	ev.Kind = postauth.KindEvidence
	if rec, err = postauth.EncodeCMW(ev, postauth.CMWJSON); err != nil {
		t.Fatal(err)
	}
	if r := f.submit(t, path, postauth.Evidence{Type: "application/cmw+json", Value: rec}, nil); r.status != 200 {
		t.Fatalf("status %d (%s)", r.status, r.body)
	}
}
