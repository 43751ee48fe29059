package streams

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/posture"
)

// Both endpoints attest and both require it; only then does data flow,
// both ways, and each side's Result names the other.
func TestMutualAttestation(t *testing.T) {
	e := newEnv(t)
	client, server := pair(t, e,
		[]Option{e.serverAttests(t, nil), e.requireClient(t)},
		[]Option{e.clientAttests(t, nil), e.requireServer(t)})
	ready(t, client, server)
	if r := server.Result(); r == nil || r.Attester() != postauth.RoleClient || r.Subject() != "CN=platform-a" {
		t.Fatalf("server's verdict %+v", r)
	}
	if r := client.Result(); r == nil || r.Attester() != postauth.RoleServer || r.Subject() != "CN=localhost" {
		t.Fatalf("client's verdict %+v", r)
	}
	echo(t, client, server, []byte("migration key"))
	echo(t, server, client, []byte("ack"))
}

// echo writes msg on a and reads it on b.
func echo(t testing.TB, a, b *Conn, msg []byte) {
	t.Helper()
	if _, err := a.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer b.SetReadDeadline(time.Time{})
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("read %q, want %q", got, msg)
	}
}

// Either side may require attestation alone: here only the server does,
// and the client (which verifies nothing) gets no Result.
func TestOneSidedAttestation(t *testing.T) {
	e := newEnv(t)
	client, server := pair(t, e, []Option{e.requireClient(t)}, []Option{e.clientAttests(t, nil)})
	ready(t, client, server)
	if server.Result() == nil || client.Result() != nil {
		t.Fatalf("verdicts: server %v, client %v", server.Result(), client.Result())
	}
	echo(t, client, server, []byte("hello"))
	if _, err := client.Reattest(context.Background()); err == nil {
		t.Fatal("Reattest on an endpoint that requires nothing")
	}
}

// A peer that declines (an authenticated refusal, here: it has no
// Attester) loses the connection: ATTESTATION_REQUIRED, attestation_refused,
// on both sides.
func TestRefusalClosesTheConnection(t *testing.T) {
	e := newEnv(t)
	client, server := pair(t, e, []Option{e.requireClient(t)}, nil)
	wantClosed(t, server, AttestationRequired, postauth.ReasonAttestationRefused, false)
	ce := wantClosed(t, client, AttestationRequired, postauth.ReasonAttestationRefused, true)
	if postauth.CodeOf(ce) != postauth.CodeRequired {
		t.Fatalf("remote close error's postauth code %v", postauth.CodeOf(ce))
	}
	if _, err := client.Write([]byte("x")); !errors.As(err, &ce) {
		t.Fatalf("write after the close: %v", err)
	}
	if _, err := server.Read(make([]byte, 1)); !errors.As(err, &ce) {
		t.Fatalf("read after the close: %v", err)
	}
}

// Periodic re-attestation runs while data flows; each one is a new
// verdict.
func TestPeriodicReattestation(t *testing.T) {
	e := newEnv(t)
	var verdicts atomic.Int64
	counting := &postauthtest.CountingAttester{Inner: e.clientAtt.Attester(t)}
	client, server := pair(t, e,
		[]Option{e.requireClient(t), WithInterval(50 * time.Millisecond), WithObserver(func(ev Event) {
			if ev.Kind == EventVerified {
				verdicts.Add(1)
			}
		})},
		[]Option{e.clientAttests(t, counting)})
	ready(t, client, server)
	deadline := time.Now().Add(5 * time.Second)
	for verdicts.Load() < 4 && time.Now().Before(deadline) {
		echo(t, client, server, []byte("tick"))
		time.Sleep(10 * time.Millisecond)
	}
	if verdicts.Load() < 4 || counting.Count() < 4 {
		t.Fatalf("%d verdicts, %d attestations in 5 s with a 50 ms interval", verdicts.Load(), counting.Count())
	}
}

// Either side can ask for a fresh attestation at any time.
func TestReattestOnDemand(t *testing.T) {
	e := newEnv(t)
	client, server := pair(t, e,
		[]Option{e.serverAttests(t, nil), e.requireClient(t)},
		[]Option{e.clientAttests(t, nil), e.requireServer(t)})
	ready(t, client, server)
	first := server.Result()
	res, err := server.Reattest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res == first || server.Result() != res {
		t.Fatal("Reattest did not give a new verdict")
	}
	if _, err := client.Reattest(context.Background()); err != nil {
		t.Fatal(err)
	}
	echo(t, client, server, []byte("still open"))
}

// An orderly close: the peer reads what was sent, then io.EOF.
func TestOrderlyClose(t *testing.T) {
	e := newEnv(t)
	client, server := pair(t, e, []Option{e.requireClient(t)}, []Option{e.clientAttests(t, nil)})
	ready(t, client, server)
	client.Write([]byte("last words"))
	client.Close()
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "last words" {
		t.Fatalf("read %q, %v", got, err)
	}
	if _, err := client.Write([]byte("x")); err == nil {
		t.Fatal("write after Close")
	}
}

// Posture changes mid-connection: the client announces it, the server
// asks again at once, and appraises the new posture. An allowed change
// gives a new verdict; a forbidden one (a shell tool) closes the
// connection with POLICY_DENIED on both sides.
func TestPostureChangeForcesReattestation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.tracker.SetModel(ctx, posture.Model{Name: "migtd", Version: "1", Digest: posture.DigestOf([]byte("migtd v1"))}); err != nil {
		t.Fatal(err)
	}
	policy := &posture.Policy{Tools: posture.ToolRules{Deny: []string{"shell"}}}
	var triggers []Trigger
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	client, server := pair(t, e,
		[]Option{e.requireClient(t), WithPosturePolicy(policy), WithInterval(-1), WithObserver(func(ev Event) {
			if ev.Kind == EventVerified {
				<-mu
				triggers = append(triggers, ev.Trigger)
				mu <- struct{}{}
			}
		})},
		[]Option{e.clientAttests(t, nil), WithPosture(e.tracker)})
	ready(t, client, server)
	head := server.Result().PostureHead()

	// An allowed change: a new verdict on the new head.
	if err := e.tracker.EnableTool(ctx, posture.Tool{Name: "search", Digest: posture.DigestOf([]byte("search"))}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if r := server.Result(); r != nil && !bytes.Equal(r.PostureHead(), head) {
			if !bytes.Equal(r.PostureHead(), e.tracker.Head()) {
				t.Fatal("new verdict is not on the new posture")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no re-attestation after a posture change")
		}
		time.Sleep(5 * time.Millisecond)
	}
	echo(t, client, server, []byte("after search"))
	// The observer runs after the verdict is set: wait for its call.
	var got []Trigger
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		<-mu
		got = append(got[:0], triggers...)
		mu <- struct{}{}
		if len(got) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(got) != 2 || got[1] != TriggerPosture {
		t.Fatalf("triggers %v", got)
	}

	// A forbidden change: the connection is lost.
	if err := e.tracker.EnableTool(ctx, posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))}); err != nil {
		t.Fatal(err)
	}
	ce := wantClosed(t, server, PolicyDenied, postauth.ReasonPostureDenied, false)
	var pe *postauth.Error
	if !errors.As(ce, &pe) || len(pe.Violations) != 1 || pe.Violations[0] != "tool:shell forbidden" {
		t.Fatalf("local cause %v", ce.Err)
	}
	wantClosed(t, client, PolicyDenied, postauth.ReasonPostureDenied, true)
	if _, err := server.Read(make([]byte, 1)); !errors.As(err, &ce) {
		t.Fatalf("read after the denial: %v", err)
	}
}
