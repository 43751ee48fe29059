package postauth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// newClockedRequester returns a Requester of the server (it asks the
// client) whose RelyingParty runs on a fake clock, with opts.
func newClockedRequester(t *testing.T, e *env, opts ...postauth.Option) (*postauth.Requester, *postauthtest.Clock) {
	t.Helper()
	clk := postauthtest.NewClock(time.Now())
	r, err := e.relyingParty(append([]postauth.Option{postauth.WithClock(clk.Now)}, opts...)...).NewRequester(e.serverCh, postauth.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	return r, clk
}

func TestContextExpires(t *testing.T) {
	e := newEnv(t)
	r, clk := newClockedRequester(t, e, postauth.WithContextTTL(10*time.Second))
	req, _ := r.NewRequest(nil)
	raw := e.clientAnswer(req)
	clk.Advance(11 * time.Second)
	_, err := r.Verify(context.Background(), raw, nil)
	postauthtest.WantErrorIs(t, err, postauth.ErrContextExpired, postauth.CodeStale, postauth.ReasonContextExpired)
}

func TestContextsUnpredictableAndDistinct(t *testing.T) {
	e := newEnv(t)
	seen := map[string]bool{}
	for range 100 {
		req, err := e.serverReqr.NewRequest(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(req.Context) != 32 {
			t.Fatalf("context length %d", len(req.Context))
		}
		if seen[string(req.Context)] {
			t.Fatal("context issued twice")
		}
		seen[string(req.Context)] = true
	}
}

// A flood of unanswered challenges costs bounded memory: the oldest are
// forgotten, the newest still work.
func TestPendingBounded(t *testing.T) {
	e := newEnv(t)
	r, _ := newClockedRequester(t, e, postauth.WithMaxPending(4))
	var reqs []*postauth.Request
	for range 10_000 {
		req, err := r.NewRequest(nil)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, req)
	}
	if n := r.Pending(); n != 4 {
		t.Fatalf("pending = %d, want 4", n)
	}
	_, err := r.Verify(context.Background(), e.clientAnswer(reqs[0]), nil)
	postauthtest.WantErrorIs(t, err, postauth.ErrUnknownContext, postauth.CodeInvalid, postauth.ReasonUnknownContext)
	if _, err := r.Verify(context.Background(), e.clientAnswer(reqs[len(reqs)-1]), nil); err != nil {
		t.Fatalf("newest request: %v", err)
	}
}

func TestExpiredPendingDropped(t *testing.T) {
	e := newEnv(t)
	r, clk := newClockedRequester(t, e, postauth.WithContextTTL(time.Second))
	for range 5 {
		r.NewRequest(nil)
	}
	clk.Advance(2 * time.Second)
	if n := r.Pending(); n != 0 {
		t.Fatalf("pending = %d after expiry, want 0", n)
	}
}

func opDigest(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:16]
}

// Operation swap at the core: a context bound to one operation does not
// verify for another.
func TestAttackOperationSwap(t *testing.T) {
	e := newEnv(t)
	pay1, pay1000 := opDigest("POST /pay amount=1"), opDigest("POST /pay amount=1000")
	req, _ := e.serverReqr.NewRequest(pay1)
	if !bytes.Equal(req.Context[postauth.NonceLen:], pay1) {
		t.Fatal("context does not end with the binding")
	}
	raw := e.clientAnswer(req)
	_, err := e.serverReqr.Verify(context.Background(), raw, pay1000)
	postauthtest.WantErrorIs(t, err, postauth.ErrOperationMismatch, postauth.CodeInvalid, postauth.ReasonOperationMismatch)

	req, _ = e.serverReqr.NewRequest(pay1)
	if _, err := e.serverReqr.Verify(context.Background(), e.clientAnswer(req), pay1); err != nil {
		t.Fatalf("matching operation rejected: %v", err)
	}
}

// A context issued for one mode (connection or operation freshness, or a
// template) is not accepted in another.
func TestModeMismatch(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name             string
		issueBinding     []byte
		verifyBinding    []byte
		issueAsTemplate  bool
		templateComplete []byte
	}{
		{name: "connection-context-for-operation", verifyBinding: opDigest("x")},
		{name: "operation-context-without-operation", issueBinding: opDigest("x")},
		{name: "template-without-operation", issueAsTemplate: true, templateComplete: opDigest("x")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var req *postauth.Request
			if tc.issueAsTemplate {
				req, _ = e.serverReqr.NewTemplate()
				req = &postauth.Request{Type: req.Type, Context: append(bytes.Clone(req.Context), tc.templateComplete...), Extensions: req.Extensions}
			} else {
				req, _ = e.serverReqr.NewRequest(tc.issueBinding)
			}
			_, err := e.serverReqr.Verify(context.Background(), e.clientAnswer(req), tc.verifyBinding)
			postauthtest.WantErrorIs(t, err, postauth.ErrContextMismatch, postauth.CodeInvalid, postauth.ReasonContextMismatch)
		})
	}
}

// Pre-armed operation freshness: the server issues a bare nonce, the
// client completes the context with the digest of the operation it performs.
func TestTemplate(t *testing.T) {
	e := newEnv(t)
	tmpl, err := e.serverReqr.NewTemplate()
	if err != nil {
		t.Fatal(err)
	}
	if len(tmpl.Context) != postauth.NonceLen {
		t.Fatalf("template context is %d bytes", len(tmpl.Context))
	}
	complete := func(op []byte) *postauth.Request {
		return &postauth.Request{Type: tmpl.Type, Context: append(bytes.Clone(tmpl.Context), op...), Extensions: tmpl.Extensions}
	}
	raw := e.clientAnswer(complete(opDigest("POST /pay amount=1")))
	if _, err := e.serverReqr.Verify(context.Background(), raw, opDigest("POST /pay amount=1")); err != nil {
		t.Fatalf("completed template: %v", err)
	}
	// Swap: completed for one operation, presented with another.
	tmpl, _ = e.serverReqr.NewTemplate()
	raw = e.clientAnswer(&postauth.Request{Type: tmpl.Type, Context: append(bytes.Clone(tmpl.Context), opDigest("POST /pay amount=1")...), Extensions: tmpl.Extensions})
	_, err = e.serverReqr.Verify(context.Background(), raw, opDigest("POST /pay amount=1000"))
	postauthtest.WantErrorIs(t, err, postauth.ErrOperationMismatch, postauth.CodeInvalid, postauth.ReasonOperationMismatch)
}

func TestConcurrentRequesterUse(t *testing.T) {
	e := newEnv(t)
	type answer struct {
		raw []byte
	}
	const n = 16
	answers := make(chan answer, n)
	for range n {
		go func() {
			req, err := e.serverReqr.NewRequest(nil)
			if err != nil {
				answers <- answer{}
				return
			}
			raw, err := respond(t, e.clientCh, postauth.RoleClient, req, e.clientID, e.attester)
			if err != nil {
				answers <- answer{}
				return
			}
			answers <- answer{raw}
		}()
	}
	errs := make(chan error, n)
	for range n {
		a := <-answers
		go func() {
			_, err := e.serverReqr.Verify(context.Background(), a.raw, nil)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
