package postauth_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

// mediaTyped is a Verifier that declares the media types it accepts
// ([postauth.MediaTyper]) and otherwise defers to inner.
type mediaTyped struct {
	postauth.Verifier
	types []string
}

func (m mediaTyped) MediaTypes() []string { return m.types }

// Without WithFormats, a RelyingParty accepts exactly the media types its
// Verifier declares, and refuses others before the Verifier sees them; an
// explicit WithFormats wins; a Verifier that declares nothing sees every
// type.
func TestFormatsFromVerifier(t *testing.T) {
	e := newEnv(t)
	verify := func(t *testing.T, rp *postauth.RelyingParty) error {
		t.Helper()
		req, _ := e.serverReqr.NewRequest(nil)
		_, err := e.serverReqr.VerifyWith(context.Background(), rp, e.clientAnswer(req), nil)
		return err
	}
	t.Run("declared", func(t *testing.T) {
		rp := newRelyingParty(t, e.verifier)
		if got := rp.Formats(); len(got) != 1 || got[0] != softeat.MediaType {
			t.Fatalf("formats %q, want the softeat verifier's", got)
		}
		if err := verify(t, rp); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("declared-other", func(t *testing.T) {
		rp := newRelyingParty(t, mediaTyped{carelessVerifier{}, []string{"application/vnd.example.tpm-quote+cbor"}})
		postauthtest.WantErrorIs(t, verify(t, rp), postauth.ErrFormatNotAccepted, postauth.CodeInvalid, postauth.ReasonFormatNotAccepted)
	})
	t.Run("explicit-wins", func(t *testing.T) {
		rp := newRelyingParty(t, e.verifier, postauth.WithFormats("application/vnd.example.tpm-quote+cbor"))
		postauthtest.WantErrorIs(t, verify(t, rp), postauth.ErrFormatNotAccepted, postauth.CodeInvalid, postauth.ReasonFormatNotAccepted)
		rp = newRelyingParty(t, mediaTyped{e.verifier, []string{"application/vnd.example.tpm-quote+cbor"}}, postauth.WithFormats(softeat.MediaType+"; profile=x"))
		if err := verify(t, rp); err != nil {
			t.Fatalf("explicit format with parameters: %v", err)
		}
	})
	t.Run("explicit-empty-accepts-nothing", func(t *testing.T) {
		rp := newRelyingParty(t, e.verifier, postauth.WithFormats([]string{}...))
		postauthtest.WantErrorIs(t, verify(t, rp), postauth.ErrFormatNotAccepted, postauth.CodeInvalid, postauth.ReasonFormatNotAccepted)
	})
	t.Run("undeclared-reaches-verifier", func(t *testing.T) {
		// The careless verifier passes anything but reports no binder: the
		// error comes from past the format check.
		rp := newRelyingParty(t, carelessVerifier{})
		if rp.Formats() != nil {
			t.Fatalf("formats %q, want nil (any)", rp.Formats())
		}
		postauthtest.WantErrorIs(t, verify(t, rp), postauth.ErrBinderMismatch, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
	})
	t.Run("bad-media-type", func(t *testing.T) {
		if _, err := postauth.NewRelyingParty(e.verifier, postauth.WithFormats("")); err == nil {
			t.Fatal("empty media type accepted")
		}
		if _, err := postauth.NewRelyingParty(nil); err == nil {
			t.Fatal("relying party without a verifier")
		}
	})
}

// lateVerifier waits until ctx ends and then returns what inner says: a
// verdict that arrives after the deadline.
type lateVerifier struct{ inner postauth.Verifier }

func (l lateVerifier) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	<-ctx.Done()
	return l.inner.Verify(context.WithoutCancel(ctx), ch, ev)
}

// A verdict that arrives after the caller's context ended is never a pass:
// a deadline gives verifier_timeout (unavailable), a cancellation canceled.
func TestLateVerdictIsNoPass(t *testing.T) {
	e := newEnv(t)
	rp := newRelyingParty(t, lateVerifier{e.verifier})
	t.Run("deadline", func(t *testing.T) {
		req, _ := e.serverReqr.NewRequest(nil)
		raw := e.clientAnswer(req)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		res, err := e.serverReqr.VerifyWith(ctx, rp, raw, nil)
		if res != nil {
			t.Fatal("late verdict returned a Result")
		}
		postauthtest.WantErrorIs(t, err, context.DeadlineExceeded, postauth.CodeUnavailable, postauth.ReasonVerifierTimeout)
	})
	t.Run("canceled", func(t *testing.T) {
		req, _ := e.serverReqr.NewRequest(nil)
		raw := e.clientAnswer(req)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(10*time.Millisecond, cancel)
		res, err := e.serverReqr.VerifyWith(ctx, rp, raw, nil)
		if res != nil {
			t.Fatal("late verdict returned a Result")
		}
		postauthtest.WantErrorIs(t, err, context.Canceled, postauth.CodeCanceled, postauth.ReasonCanceled)
	})
	t.Run("in-time", func(t *testing.T) {
		// The same verifier, answering in time, passes.
		req, _ := e.serverReqr.NewRequest(nil)
		if _, err := e.serverReqr.Verify(context.Background(), e.clientAnswer(req), nil); err != nil {
			t.Fatal(err)
		}
	})
}

// postureTamperer is a Verifier that lets inner verify, then changes what
// the appraisal reports about the posture: a verifier that passes on a
// posture log it did not check.
type postureTamperer struct {
	inner  postauth.Verifier
	mutate func(app *postauth.Appraisal)
}

func (p postureTamperer) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	app, err := p.inner.Verify(ctx, ch, ev)
	if err == nil {
		p.mutate(app)
	}
	return app, err
}

// The relying party replays the posture log against the attested register
// value itself, once, whatever the Verifier did: a Result's posture is
// always the one the log reproduces.
func TestPostureReplayedByRelyingParty(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tr, err := posture.NewTracker()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.EnableTool(ctx, posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))}); err != nil {
		t.Fatal(err)
	}
	att := e.attKey.Attester(t, softeat.WithPosture(tr))
	other, _ := posture.NewTracker()
	if err := other.EnableTool(ctx, posture.Tool{Name: "search", Digest: posture.DigestOf([]byte("s"))}); err != nil {
		t.Fatal(err)
	}
	otherSnap, err := other.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(t *testing.T, mutate func(app *postauth.Appraisal)) (*postauth.Result, error) {
		t.Helper()
		req, _ := e.serverReqr.NewRequest(nil)
		raw, err := respond(t, e.clientCh, postauth.RoleClient, req, e.clientID, att)
		if err != nil {
			t.Fatal(err)
		}
		rp := newRelyingParty(t, postureTamperer{e.verifier, mutate})
		return e.serverReqr.VerifyWith(ctx, rp, raw, nil)
	}

	res, err := exchange(t, func(*postauth.Appraisal) {})
	if err != nil {
		t.Fatal(err)
	}
	st := res.Posture()
	if st == nil || !reflect.DeepEqual(st, tr.State()) || !bytes.Equal(res.PostureHead(), tr.Head()) {
		t.Fatalf("posture %+v, want the tracker's %+v", st, tr.State())
	}
	// Posture returns a copy.
	st.Tools = nil
	if again := res.Posture(); len(again.Tools) != 1 {
		t.Fatal("Result.Posture shares its State")
	}

	for name, mutate := range map[string]func(app *postauth.Appraisal){
		"other-log":      func(app *postauth.Appraisal) { app.PostureLog = otherSnap.Log },
		"other-head":     func(app *postauth.Appraisal) { app.PostureHead = otherSnap.Head },
		"undecodable":    func(app *postauth.Appraisal) { app.PostureLog = []byte{0xa0} },
		"log-no-head":    func(app *postauth.Appraisal) { app.PostureHead = nil },
		"head-no-log":    func(app *postauth.Appraisal) { app.PostureLog = nil },
		"truncated-head": func(app *postauth.Appraisal) { app.PostureHead = app.PostureHead[:31] },
	} {
		t.Run(name, func(t *testing.T) {
			res, err := exchange(t, mutate)
			if res != nil {
				t.Fatal("Result with a posture that does not replay")
			}
			postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonPostureInvalid)
		})
	}
	t.Run("no-posture", func(t *testing.T) {
		res, err := exchange(t, func(app *postauth.Appraisal) { app.PostureHead, app.PostureLog = nil, nil })
		if err != nil {
			t.Fatal(err)
		}
		if res.Posture() != nil || res.PostureHead() != nil || res.PostureLog() != nil {
			t.Fatal("posture reported without posture")
		}
	})
}

// AppraisePosture judges the posture the relying party replayed.
func TestAppraisePosture(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tr, _ := posture.NewTracker()
	if err := tr.EnableTool(ctx, posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))}); err != nil {
		t.Fatal(err)
	}
	req, _ := e.serverReqr.NewRequest(nil)
	raw, err := respond(t, e.clientCh, postauth.RoleClient, req, e.clientID, e.attKey.Attester(t, softeat.WithPosture(tr)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.serverReqr.Verify(ctx, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	deny := &posture.Policy{Tools: posture.ToolRules{Deny: []string{"shell"}}}
	err = postauth.AppraisePosture(ctx, deny, res)
	postauthtest.WantErrorIs(t, err, postauth.ErrPostureDenied, postauth.CodePolicyDenied, postauth.ReasonPostureDenied)
	var pe *postauth.Error
	if !errors.As(err, &pe) || len(pe.Violations) != 1 || pe.Violations[0] != "tool:shell forbidden" {
		t.Fatalf("violations: %v", err)
	}
	if err := postauth.AppraisePosture(ctx, &posture.Policy{Tools: posture.ToolRules{Deny: []string{"browser"}}}, res); err != nil {
		t.Fatalf("passing posture: %v", err)
	}
	postauthtest.WantError(t, postauth.AppraisePosture(ctx, nil, res), postauth.CodeUnavailable, postauth.ReasonPolicyInvalid)
	postauthtest.WantError(t, postauth.AppraisePosture(ctx, deny, nil), postauth.CodeRequired, postauth.ReasonNoAttestation)
	bad := &posture.Policy{Templates: []string{"sha-256:00"}}
	postauthtest.WantError(t, postauth.AppraisePosture(ctx, bad, res), postauth.CodeUnavailable, postauth.ReasonPolicyInvalid)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := postauth.AppraisePosture(canceled, deny, res); !errors.Is(err, context.Canceled) || postauth.CodeOf(err) != postauth.CodeCanceled {
		t.Fatalf("canceled: %v", err)
	}
}

// Every listed reason has a code; ErrorFor uses it, and an unlisted reason
// (a format of one's own) is invalid, never a pass.
func TestReasons(t *testing.T) {
	rs := postauth.Reasons()
	if len(rs) == 0 {
		t.Fatal("no reasons")
	}
	seen := map[postauth.Reason]bool{}
	for _, r := range rs {
		if r == "" || seen[r] || !r.Known() || r.Code() == postauth.CodeUnknown {
			t.Errorf("reason %q: known %v code %v", r, r.Known(), r.Code())
		}
		seen[r] = true
		err := postauth.ErrorFor(r, errors.New("cause"))
		if err.Code != r.Code() || postauth.ReasonOf(err) != r {
			t.Errorf("ErrorFor(%q) = %v", r, err)
		}
	}
	for r, c := range map[postauth.Reason]postauth.Code{
		postauth.ReasonContextReused:       postauth.CodeInvalid,
		postauth.ReasonContextExpired:      postauth.CodeStale,
		postauth.ReasonAttestationRefused:  postauth.CodeRequired,
		postauth.ReasonVerifierTimeout:     postauth.CodeUnavailable,
		postauth.ReasonPostureDenied:       postauth.CodePolicyDenied,
		postauth.ReasonPostureInvalid:      postauth.CodeInvalid,
		postauth.ReasonCanceled:            postauth.CodeCanceled,
		postauth.ReasonPolicyInvalid:       postauth.CodeUnavailable,
		postauth.ReasonFormatNotAccepted:   postauth.CodeInvalid,
		postauth.ReasonNoAttestation:       postauth.CodeRequired,
		postauth.ReasonEvidenceStale:       postauth.CodeStale,
		postauth.ReasonPCRPolicyDenied:     postauth.CodePolicyDenied,
		postauth.ReasonAttestationRequired: postauth.CodeRequired,
	} {
		if r.Code() != c {
			t.Errorf("%q reported with %v, want %v", r, r.Code(), c)
		}
	}
	own := postauth.Reason("my_format_check")
	if own.Known() || own.Code() != postauth.CodeUnknown {
		t.Fatal("an unlisted reason is known")
	}
	postauthtest.WantError(t, postauth.ErrorFor(own, nil), postauth.CodeInvalid, own)
	if postauth.ReasonOf(errors.New("plain")) != "" || postauth.ReasonOf(nil) != "" {
		t.Fatal("reason of an uncoded error")
	}
}
