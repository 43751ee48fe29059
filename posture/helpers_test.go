package posture_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/reattest/reattest/internal/detcbor"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

// env is one real mutual TLS 1.3 connection on loopback: the server asks,
// the client attests with software EAT Evidence carrying its posture, and
// the server verifies.
type env struct {
	t        testing.TB
	clientCh *postauth.Channel
	clientID *postauth.Identity
	attKey   *postauthtest.SoftwareKey
	reqr     *postauth.Requester // the server's requester (it asks the client)
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ep := postauthtest.MutualTLS(t)
	ccs, scs := ep.Client.ConnectionState(), ep.Server.ConnectionState()
	clientCh, err := postauth.NewChannel(&ccs)
	if err != nil {
		t.Fatal(err)
	}
	serverCh, err := postauth.NewChannel(&scs)
	if err != nil {
		t.Fatal(err)
	}
	clientID, err := postauth.IdentityFromTLS(&ep.ClientCert)
	if err != nil {
		t.Fatal(err)
	}
	attKey := postauthtest.NewSoftwareKey(t)
	rp, err := postauth.NewRelyingParty(attKey.Verifier(t), postauth.WithFormats(softeat.MediaType))
	if err != nil {
		t.Fatal(err)
	}
	reqr, err := rp.NewRequester(serverCh, postauth.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, clientCh: clientCh, clientID: clientID, attKey: attKey, reqr: reqr}
}

// attest runs one exchange: a fresh request from the server, an answer from
// the client with Evidence whose posture comes from src (nil: no posture),
// and the server's verification.
func (e *env) attest(src posture.Source) (*postauth.Result, error) {
	e.t.Helper()
	responder, err := postauth.NewResponder(e.clientID, e.attKey.Attester(e.t, softeat.WithPosture(src)))
	if err != nil {
		e.t.Fatal(err)
	}
	req, err := e.reqr.NewRequest(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	raw, err := responder.Respond(context.Background(), e.clientCh, postauth.RoleClient, req)
	if err != nil {
		e.t.Fatalf("Respond: %v", err)
	}
	return e.reqr.Verify(context.Background(), raw, nil)
}

// mustAttest is attest that must succeed.
func (e *env) mustAttest(src posture.Source) *postauth.Result {
	e.t.Helper()
	res, err := e.attest(src)
	if err != nil {
		e.t.Fatalf("attestation failed: %v", err)
	}
	return res
}

// fixedSource is a posture.Source that hands out a prepared Snapshot: the
// way a lying agent runtime would put a manipulated log, or a register value
// that does not match it, into Evidence it signs.
type fixedSource struct{ snap *posture.Snapshot }

func (f fixedSource) Snapshot() (*posture.Snapshot, error)   { return f.snap, nil }
func (f fixedSource) Head() []byte                           { return bytes.Clone(f.snap.Head) }
func (f fixedSource) Subscribe(func([]byte)) (cancel func()) { return func() {} }

// wantError is postauthtest.WantError that also returns the *postauth.Error,
// for its Violations and cause.
func wantError(t *testing.T, err error, code postauth.Code, reason postauth.Reason) *postauth.Error {
	t.Helper()
	postauthtest.WantError(t, err, code, reason)
	var pe *postauth.Error
	if !errors.As(err, &pe) {
		t.Fatalf("%v is not a *postauth.Error", err)
	}
	return pe
}

// encodeLog builds a log encoding by hand, {1: alg, 2: [events...]},
// independently of the package's encoder, so tests can make logs the
// package would refuse to produce.
func encodeLog(t testing.TB, alg int, events ...[]byte) []byte {
	t.Helper()
	raws := make([]cbor.RawMessage, len(events))
	for i, e := range events {
		raws[i] = e
	}
	b, err := detcbor.Enc.Marshal(map[int]any{1: alg, 2: raws})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// headOf computes the register value for encoded events with SHA-256,
// written out from the extend rule rather than with the package's helpers:
// head_0 = 0^32, head_i = SHA-256(head_{i-1} || SHA-256(event_i)).
func headOf(events ...[]byte) []byte {
	head := make([]byte, sha256.Size)
	for _, e := range events {
		m := sha256.Sum256(e)
		h := sha256.Sum256(append(bytes.Clone(head), m[:]...))
		head = h[:]
	}
	return head
}

// digest returns the SHA-256 digest of s.
func digest(s string) posture.Digest { return posture.DigestOf([]byte(s)) }

// mustEncode encodes e or fails.
func mustEncode(t testing.TB, e posture.Event) []byte {
	t.Helper()
	b, err := e.Encode()
	if err != nil {
		t.Fatalf("encoding %v: %v", e.Op, err)
	}
	return b
}

// Event constructors for hand-built logs.
func evModel(name string, d posture.Digest) posture.Event {
	return posture.Event{Op: posture.OpSetModel, Component: posture.Component{ID: posture.ComponentID{Name: name}, Digest: &d}}
}

func evTool(op posture.Op, name string, d posture.Digest) posture.Event {
	return posture.Event{Op: op, Component: posture.Component{ID: posture.ComponentID{Name: name}, Digest: &d}}
}

func evFlag(name, value string) posture.Event {
	raw := []byte(value)
	return posture.Event{Op: posture.OpSetFlag, Component: posture.Component{ID: posture.ComponentID{Name: name}, Raw: &raw}}
}

func evRevoke(name string) posture.Event {
	raw := []byte{}
	return posture.Event{Op: posture.OpRevoke, Component: posture.Component{ID: posture.ComponentID{Name: name}, Raw: &raw}}
}

// agentTracker returns a Tracker with a typical posture: a model, two
// tools, a template, a permission and a flag.
func agentTracker(t testing.TB) *posture.Tracker {
	t.Helper()
	tr, err := posture.NewTracker()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []error{
		tr.SetModel(ctx, posture.Model{Name: "gpt-x", Version: "2025-06", Digest: digest("weights")}),
		tr.EnableTool(ctx, posture.Tool{Name: "search", Digest: digest("search")}),
		tr.EnableTool(ctx, posture.Tool{Name: "shell", Version: "1.2", Digest: digest("shell")}),
		tr.SetTemplate(ctx, posture.Template{Name: "support", Digest: digest("template")}),
		tr.Grant(ctx, "payments", "read", "write"),
		tr.SetFlag(ctx, "fips_mode", "on"),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	return tr
}

// rawEvents returns the encoded events of a snapshot's log.
func rawEvents(t testing.TB, snap *posture.Snapshot) [][]byte {
	t.Helper()
	l, err := posture.DecodeLog(snap.Log)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, e := range l.Events() {
		out = append(out, mustEncode(t, e))
	}
	return out
}
