package tdx_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
)

// wantViolations fails unless err is a policy denial with reason whose
// Violations are want.
func wantViolations(t testing.TB, err error, reason postauth.Reason, want []string) {
	t.Helper()
	postauthtest.WantError(t, err, postauth.CodePolicyDenied, reason)
	var pe *postauth.Error
	if !errors.As(err, &pe) || !slices.Equal(pe.Violations, want) {
		t.Fatalf("violations of %v, want %q", err, want)
	}
}

// challenge returns a Challenge with a random binder of h's size.
func challenge(h crypto.Hash) postauth.Challenge {
	b := make([]byte, h.Size())
	_, _ = rand.Read(b)
	kh := h.New()
	kh.Write([]byte("spki"))
	return postauth.Challenge{Binder: b, KeyHash: kh.Sum(nil), Hash: h, Role: postauth.RoleClient}
}

// attest returns Evidence from att for ch, failing the test on error.
func attest(t testing.TB, att postauth.Attester, ch postauth.Challenge) postauth.Evidence {
	t.Helper()
	ev, err := att.Attest(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// evidenceOf wraps a raw quote (and optional posture log) as Evidence.
func evidenceOf(t testing.TB, quote []byte, log []byte) postauth.Evidence {
	t.Helper()
	e := &tdx.Evidence{Quote: quote}
	if log != nil {
		e.Posture = &tdx.PostureLog{RTMR: tdx.PostureRTMR, Log: log}
	}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return postauth.Evidence{Type: tdx.MediaType, Value: b}
}

// quoteFor mints a quote on p bound to ch's binder, with edit applied to
// the TD body (nil: none).
func quoteFor(t testing.TB, p *tdxtest.Platform, ch postauth.Challenge, edit func(*tdxtest.TD)) []byte {
	t.Helper()
	rd, err := tdx.ReportData(ch.Binder)
	if err != nil {
		t.Fatal(err)
	}
	q, err := p.QuoteWith(rd, edit)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// measurement returns the measurement called name.
func measurement(t testing.TB, ms []postauth.Measurement, name string) postauth.Measurement {
	t.Helper()
	i := slices.IndexFunc(ms, func(m postauth.Measurement) bool { return m.Name == name })
	if i < 0 {
		t.Fatalf("no measurement %q in %+v", name, ms)
	}
	return ms[i]
}

// fixedClock returns a clock stopped at t.
func fixedClock(t time.Time) func() time.Time { return postauthtest.NewClock(t).Now }

// fixedAttester returns the same Evidence whatever the Challenge (a relay).
type fixedAttester struct{ ev postauth.Evidence }

func (f fixedAttester) Attest(context.Context, postauth.Challenge) (postauth.Evidence, error) {
	return f.ev, nil
}

// conn is one real mutual TLS 1.3 connection on loopback
// (postauthtest.MutualTLS): the server's Requester, of a RelyingParty
// with the Verifier under test and no WithFormats (so it accepts exactly
// the Verifier's MediaTypes, tdx.MediaType), and the client's channel and
// authenticator identity, answering through a postauth.Responder.
type conn struct {
	tb       testing.TB
	clientCh *postauth.Channel
	clientID *postauth.Identity
	reqr     *postauth.Requester
	pending  *postauth.Request
}

func newConn(tb testing.TB, v postauth.Verifier) *conn {
	tb.Helper()
	ep := postauthtest.MutualTLS(tb)
	ccs, scs := ep.Client.ConnectionState(), ep.Server.ConnectionState()
	c := &conn{tb: tb}
	var err error
	if c.clientCh, err = postauth.NewChannel(&ccs); err != nil {
		tb.Fatal(err)
	}
	serverCh, err := postauth.NewChannel(&scs)
	if err != nil {
		tb.Fatal(err)
	}
	if c.clientID, err = postauth.IdentityFromTLS(&ep.ClientCert); err != nil {
		tb.Fatal(err)
	}
	if c.reqr, err = postauthtest.RelyingParty(tb, v).NewRequester(serverCh, postauth.RoleClient); err != nil {
		tb.Fatal(err)
	}
	return c
}

// challenge issues a request on c (answered by the next exchange) and
// returns the Challenge an honest attester on this connection binds
// Evidence to.
func (c *conn) challenge() postauth.Challenge {
	c.tb.Helper()
	req, err := c.reqr.NewRequest(nil)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.pending = req
	spki := c.clientID.SPKI()
	b, err := c.clientCh.Binder(spki, req.Context)
	if err != nil {
		c.tb.Fatal(err)
	}
	return postauth.Challenge{Binder: b, KeyHash: c.clientCh.KeyHash(spki), Hash: c.clientCh.Hash(), Context: req.Context, Role: postauth.RoleClient}
}

// exchange runs one attestation on c: a request from the server (the one
// issued by challenge, if any, else a new one), the client's answer with
// att's Evidence (Responder.Respond), and the server's verification
// (Requester.Verify: the authenticator, the Verifier's appraisal, the
// binder and key hash, and the replay of the posture log).
func (c *conn) exchange(att postauth.Attester) (*postauth.Result, error) {
	c.tb.Helper()
	req := c.pending
	c.pending = nil
	if req == nil {
		var err error
		if req, err = c.reqr.NewRequest(nil); err != nil {
			c.tb.Fatal(err)
		}
	}
	r, err := postauth.NewResponder(c.clientID, att)
	if err != nil {
		c.tb.Fatal(err)
	}
	raw, err := r.Respond(context.Background(), c.clientCh, postauth.RoleClient, req)
	if err != nil {
		c.tb.Fatalf("Respond: %v", err)
	}
	return c.reqr.Verify(context.Background(), raw, nil)
}

// keyHash is the key hash of c's authenticator key.
func (c *conn) keyHash() []byte { return c.clientCh.KeyHash(c.clientID.SPKI()) }
