package streams

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// Relay: the peer forwards the request to a genuine attester on another
// connection and relays its answer back. The answer is bound to the other
// connection's exporter: ATTESTATION_INVALID.
func TestAttackRelay(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t))
	// The genuine platform, on its own TLS connection (same certificates).
	other, _ := postauthtest.Pair(t, TLSConfig(e.clientTLS()), TLSConfig(e.serverTLS()))
	st := other.ConnectionState()
	otherCh, err := postauth.NewChannel(&st)
	if err != nil {
		t.Fatal(err)
	}
	req, err := postauth.ParseRequest(raw.next(FrameRequest, 0))
	if err != nil {
		t.Fatal(err)
	}
	relayed, err := e.clientResponder(t).Respond(context.Background(), otherCh, postauth.RoleClient, req)
	if err != nil {
		t.Fatal(err)
	}
	raw.send(FrameData, []byte("payload riding on a relayed attestation"))
	raw.send(FrameAuthenticator, relayed)
	ce := wantClosed(t, server, AttestationInvalid, postauth.ReasonBadFinished, false)
	if code, reason := raw.closeFrame(); code != AttestationInvalid || reason != postauth.ReasonBadFinished {
		t.Fatalf("peer told %v (%s)", code, reason)
	}
	if n, err := server.Read(make([]byte, 64)); n != 0 || !errors.As(err, &ce) {
		t.Fatalf("held data delivered after a failed attestation: %d, %v", n, err)
	}
}

// Replay: the peer answers a later request with its earlier, genuine
// answer. The context was consumed: ATTESTATION_INVALID, context_reused.
func TestAttackReplay(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t))
	resp := e.clientResponder(t)
	first := raw.answer(resp, raw.next(FrameRequest, 0))
	raw.send(FrameAuthenticator, first)
	raw.next(FrameReady, 0)
	go server.Reattest(context.Background())
	raw.next(FrameRequest, 1)
	raw.send(FrameAuthenticator, first)
	wantClosed(t, server, AttestationInvalid, postauth.ReasonContextReused, false)
}

// A late answer: the deadline passed first, so the connection is already
// closed (ATTESTATION_TIMEOUT) and the answer is never verified.
func TestLateAnswer(t *testing.T) {
	e := newEnv(t)
	var verified atomic.Int64
	raw, server := rawClient(t, e, e.requireClient(t), WithAnswerDeadline(150*time.Millisecond),
		WithObserver(func(ev Event) {
			if ev.Kind == EventVerified {
				verified.Add(1)
			}
		}))
	req := raw.next(FrameRequest, 0)
	time.Sleep(time.Second)
	raw.send(FrameAuthenticator, raw.answer(e.clientResponder(t), req))
	wantClosed(t, server, AttestationTimeout, postauth.ReasonAnswerTimeout, false)
	if code, reason := raw.closeFrame(); code != AttestationTimeout || reason != postauth.ReasonAnswerTimeout {
		t.Fatalf("peer told %v (%s)", code, reason)
	}
	if verified.Load() != 0 {
		t.Fatal("a late answer was verified")
	}
}

// A peer that answers at first, then stops answering the periodic
// requests, loses the connection at the deadline.
func TestPeerStopsAnswering(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t), WithInterval(50*time.Millisecond), WithAnswerDeadline(600*time.Millisecond))
	raw.send(FrameReady, nil)
	raw.send(FrameAuthenticator, raw.answer(e.clientResponder(t), raw.next(FrameRequest, 0)))
	raw.next(FrameReady, 0)
	raw.send(FrameData, []byte("before"))
	buf := make([]byte, 6)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "before" {
		t.Fatalf("read %q, %v", buf, err)
	}
	raw.next(FrameRequest, 1) // periodic: never answered
	start := time.Now()
	wantClosed(t, server, AttestationTimeout, postauth.ReasonAnswerTimeout, false)
	if time.Since(start) > 2*time.Second {
		t.Fatal("closed long after the deadline")
	}
	if _, err := server.Read(buf); err == nil {
		t.Fatal("read after the lapse")
	}
}

// Data sent before the verdict is held, never delivered unverified: Read
// waits for the verdict, and if the attestation fails the data is dropped
// with the connection.
func TestUnverifiedDataHeld(t *testing.T) {
	e := newEnv(t)
	t.Run("then verified", func(t *testing.T) {
		raw, server := rawClient(t, e, e.requireClient(t))
		req := raw.next(FrameRequest, 0)
		raw.send(FrameData, []byte("early"))
		got := make(chan string, 1)
		go func() {
			b := make([]byte, 5)
			_, err := io.ReadFull(server, b)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(b)
		}()
		select {
		case g := <-got:
			t.Fatalf("read %q before the verdict", g)
		case <-time.After(100 * time.Millisecond):
		}
		raw.send(FrameAuthenticator, raw.answer(e.clientResponder(t), req))
		if g := <-got; g != "early" {
			t.Fatalf("read %q", g)
		}
	})
	t.Run("then refused", func(t *testing.T) {
		raw, server := rawClient(t, e, e.requireClient(t))
		req := raw.next(FrameRequest, 0)
		raw.send(FrameData, []byte("early"))
		got := make(chan error, 1)
		go func() {
			_, err := server.Read(make([]byte, 5))
			got <- err
		}()
		time.Sleep(50 * time.Millisecond)
		raw.send(FrameAuthenticator, raw.answer(nil, req))
		var ce *CloseError
		if err := <-got; !errors.As(err, &ce) || ce.Code != AttestationRequired {
			t.Fatalf("read: %v", err)
		}
	})
}

// With Refuse, data before the verdict closes the connection: EARLY_DATA.
func TestUnverifiedDataRefused(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t), WithUnverified(Refuse))
	raw.next(FrameRequest, 0)
	raw.send(FrameData, []byte("too early"))
	wantClosed(t, server, EarlyData, postauth.ReasonEarlyData, false)
}

// No byte reaches a peer whose attestation has not passed: the client's
// Write waits, and when the server's attestation fails, fails.
func TestNoDataToUnattestedPeer(t *testing.T) {
	e := newEnv(t)
	raw, client := rawServer(t, e, e.requireServer(t))
	raw.send(FrameReady, nil) // the raw server claims to be ready at once
	req := raw.next(FrameRequest, 0)
	wrote := make(chan error, 1)
	go func() {
		_, err := client.Write([]byte("secret migration key"))
		wrote <- err
	}()
	time.Sleep(150 * time.Millisecond)
	if n := raw.count(FrameData); n != 0 {
		t.Fatalf("%d data frames reached the server before its attestation", n)
	}
	// An answer from the wrong attestation key.
	rogue := postauthtest.NewSoftwareKey(t)
	id, _ := postauth.IdentityFromTLS(&e.serverCert)
	resp, _ := postauth.NewResponder(id, rogue.Attester(t))
	raw.send(FrameAuthenticator, raw.answer(resp, req))
	var ce *CloseError
	if err := <-wrote; !errors.As(err, &ce) || ce.Code != AttestationInvalid {
		t.Fatalf("write: %v", err)
	}
	raw.closeFrame()
	if n := raw.count(FrameData); n != 0 {
		t.Fatalf("%d data frames reached an unattested server", n)
	}
}

// A posture announcement suspends the verdict: no data is delivered to or
// sent by the relying party until the new posture is attested.
func TestPostureNoticeSuspends(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t), WithInterval(-1))
	resp := e.clientResponder(t)
	raw.send(FrameReady, nil)
	raw.send(FrameAuthenticator, raw.answer(resp, raw.next(FrameRequest, 0)))
	raw.next(FrameReady, 0)
	if _, err := server.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	raw.next(FrameData, 0)

	raw.send(FramePosture, e.tracker.Head())
	req := raw.next(FrameRequest, 1)
	if server.Result() != nil {
		t.Fatal("a verdict while an announced posture change is not attested")
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := server.Write([]byte("during"))
		wrote <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if n := raw.count(FrameData); n != 1 {
		t.Fatal("data sent while the peer's posture change was not attested")
	}
	raw.send(FrameAuthenticator, raw.answer(resp, req))
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if got := raw.next(FrameData, 1); string(got) != "during" {
		t.Fatalf("got %q", got)
	}
	if server.Result() == nil {
		t.Fatal("no verdict after the new attestation")
	}
}

// A frame header announcing more than the type's limit closes the
// connection before anything is allocated: FRAME_TOO_LARGE.
func TestOversizedFrame(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t))
	raw.tc.Write([]byte{byte(FrameAuthenticator), 0xff, 0xff, 0xff})
	wantClosed(t, server, FrameTooLarge, postauth.ReasonFrameTooLarge, false)
}

// Bounded memory: a peer that sends more than the flow-control window
// allows is closed (PROTOCOL_ERROR), and held data never exceeds the
// window.
func TestFlowControl(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t))
	raw.next(FrameRequest, 0)
	chunk := bytes.Repeat([]byte{'x'}, MaxDataLen)
	for sent := 0; sent < InitialWindow; sent += MaxDataLen {
		raw.send(FrameData, chunk)
	}
	deadline := time.Now().Add(5 * time.Second)
	for server.held() < InitialWindow && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h := server.held(); h != InitialWindow {
		t.Fatalf("held %d bytes, want the window, %d", h, InitialWindow)
	}
	raw.send(FrameData, []byte("one byte too many"))
	wantClosed(t, server, ProtocolError, postauth.ReasonProtocolViolation, false)
	if h := server.held(); h > InitialWindow {
		t.Fatalf("held %d bytes, over the window", h)
	}
}

// A flood of requests (each costs the attester Evidence and a signature)
// closes the connection once more than MaxQueuedRequests wait.
func TestRequestFlood(t *testing.T) {
	e := newEnv(t)
	raw, client := rawServer(t, e, e.clientAttests(t, nil))
	raw.next(FrameReady, 0) // the client requires nothing
	rp := postauthtest.RelyingParty(t, e.clientAtt.Verifier(t))
	reqr, err := rp.NewRequester(raw.ch, postauth.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	var flood []byte
	for i := 0; i < 64; i++ {
		r, _ := reqr.NewRequest(nil)
		b, _ := r.Marshal()
		flood, _ = AppendFrame(flood, FrameRequest, b)
	}
	raw.tc.Write(flood)
	wantClosed(t, client, ProtocolError, postauth.ReasonProtocolViolation, false)
}

// A request of the type the endpoint sends itself (reflection) closes the
// connection.
func TestReflectedRequest(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t), e.serverAttests(t, nil))
	// Reflect the server's own request (a CertificateRequest) back at it.
	raw.send(FrameRequest, raw.next(FrameRequest, 0))
	wantClosed(t, server, ProtocolError, postauth.ReasonWrongRequestType, false)
}

// An authenticator nobody asked for closes the connection.
func TestUnsolicitedAuthenticator(t *testing.T) {
	e := newEnv(t)
	raw, client := rawServer(t, e, e.clientAttests(t, nil))
	raw.next(FrameReady, 0)
	raw.send(FrameAuthenticator, []byte{20, 0, 0, 32})
	wantClosed(t, client, ProtocolError, postauth.ReasonProtocolViolation, false)
}

// A peer that did not negotiate the binding's ALPN is not spoken to.
func TestALPNRequired(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		sc := e.serverTLS()
		sc.NextProtos = nil // a plain TLS server
		tc := tls.Server(nc, sc)
		defer tc.Close()
		n, _ := io.Copy(io.Discard, tc)
		got <- int(n)
	}()
	client, err := Dial(context.Background(), "tcp", ln.Addr().String(), e.clientTLS(), e.requireServer(t))
	if err != nil {
		t.Fatal(err)
	}
	err = client.Ready(context.Background())
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != ProtocolError || ce.Reason != postauth.ReasonProtocolViolation {
		t.Fatalf("Ready: %v", err)
	}
	if n := <-got; n != 0 {
		t.Fatalf("%d bytes sent to a peer without the binding", n)
	}
}
