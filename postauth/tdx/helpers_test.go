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

// wantReason fails unless err is a *postauth.Error with code and reason.
func wantReason(t testing.TB, err error, code postauth.Code, reason string) *postauth.Error {
	t.Helper()
	var pe *postauth.Error
	if !errors.As(err, &pe) || pe.Code != code || pe.Reason != reason {
		t.Fatalf("want %v/%s, got %v", code, reason, err)
	}
	return pe
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
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// fixedAttester returns the same Evidence whatever the Challenge (a relay).
type fixedAttester struct{ ev postauth.Evidence }

func (f fixedAttester) Attest(context.Context, postauth.Challenge) (postauth.Evidence, error) {
	return f.ev, nil
}

// conn is one real mutual TLS 1.3 connection on loopback
// (postauthtest.MutualTLS) with the server's Requester, the client's
// channel and its authenticator identity.
//
// Every end-to-end use of the core API (postauth.NewChannel,
// IdentityFromTLS, NewRequester, Respond, Requester.Verify, Policy) is in
// newConn and conn.exchange: the core API is being reshaped, and this is
// the one place to follow it.
type conn struct {
	tb       testing.TB
	clientCh *postauth.Channel
	clientID *postauth.Identity
	reqr     *postauth.Requester
	pending  *postauth.Request
}

func newConn(tb testing.TB) *conn {
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
	if c.reqr, err = postauth.NewRequester(serverCh, postauth.RoleClient, nil); err != nil {
		tb.Fatal(err)
	}
	return c
}

// challenge issues a request on c (answered by the next exchange) and
// returns the Challenge an honest attester on this connection binds
// Evidence to.
func (c *conn) challenge() postauth.Challenge {
	c.tb.Helper()
	req, err := c.reqr.NewRequest("pay", nil)
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
// att's Evidence (postauth.Respond), and the server's verification with v
// (Requester.Verify, accepting only TDX Evidence).
func (c *conn) exchange(att postauth.Attester, v postauth.Verifier) (*postauth.Result, error) {
	c.tb.Helper()
	req := c.pending
	c.pending = nil
	if req == nil {
		var err error
		if req, err = c.reqr.NewRequest("pay", nil); err != nil {
			c.tb.Fatal(err)
		}
	}
	raw, err := postauth.Respond(context.Background(), c.clientCh, postauth.RoleClient, req, c.clientID, att, nil)
	if err != nil {
		c.tb.Fatalf("Respond: %v", err)
	}
	return c.reqr.Verify(context.Background(), raw, "pay", nil, &postauth.Policy{Verifier: v, Formats: []string{tdx.MediaType}})
}

// keyHash is the key hash of c's authenticator key.
func (c *conn) keyHash() []byte { return c.clientCh.KeyHash(c.clientID.SPKI()) }
