package quicstream_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/streams"
	"github.com/reattest/reattest/streams/quicstream"
)

// Two platforms over raw QUIC: both attest, and only then does the
// migration key travel, on an application stream.
func TestMutualQUIC(t *testing.T) {
	e := newEnv(t)
	client, server := pair(t, e,
		[]streams.Option{e.serverAttests(t), e.requireClient(t)},
		[]streams.Option{e.clientAttests(t), e.requireServer(t)})
	ready(t, client, server)
	ctx := context.Background()
	st, err := client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if client.Result() == nil || client.Result().Attester() != postauth.RoleServer {
		t.Fatal("stream opened without the server's verdict")
	}
	st.Write([]byte("migration key"))
	st.Close()
	in, err := server.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, in); got != "migration key" {
		t.Fatalf("got %q", got)
	}
	if r := server.Result(); r == nil || r.Subject() != "CN=platform-a" {
		t.Fatalf("server's verdict %+v", r)
	}
	if _, err := server.Reattest(ctx); err != nil {
		t.Fatal(err)
	}
}

// A refusal closes the QUIC connection with ATTESTATION_REQUIRED in
// CONNECTION_CLOSE; the peer's streams fail with the CloseError.
func TestQUICRefusal(t *testing.T) {
	e := newEnv(t)
	client, server := pair(t, e, []streams.Option{e.requireClient(t)}, nil)
	wantClosed(t, server, streams.AttestationRequired, postauth.ReasonAttestationRefused, false)
	wantClosed(t, client, streams.AttestationRequired, postauth.ReasonAttestationRefused, true)
	var ce *streams.CloseError
	if _, err := client.OpenStream(context.Background()); !errors.As(err, &ce) {
		t.Fatalf("OpenStream after the close: %v", err)
	}
}

// Relay over QUIC: an answer made on another QUIC connection fails.
func TestQUICRelay(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t))
	other, _ := rawClient(t, e) // a second connection of the same client
	req, _ := postauth.ParseRequest(raw.next(streams.FrameRequest, 0))
	relayed, err := e.clientResponder(t).Respond(context.Background(), other.ch, postauth.RoleClient, req)
	if err != nil {
		t.Fatal(err)
	}
	raw.send(streams.FrameAuthenticator, relayed)
	wantClosed(t, server, streams.AttestationInvalid, postauth.ReasonBadFinished, false)
	wantQUICClose(t, raw.qc, streams.AttestationInvalid, postauth.ReasonBadFinished)
}

// Replay over QUIC: the first answer sent again fails.
func TestQUICReplay(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t))
	first := raw.answer(e.clientResponder(t), raw.next(streams.FrameRequest, 0))
	raw.send(streams.FrameAuthenticator, first)
	raw.next(streams.FrameReady, 0)
	go server.Reattest(context.Background())
	raw.next(streams.FrameRequest, 1)
	raw.send(streams.FrameAuthenticator, first)
	wantClosed(t, server, streams.AttestationInvalid, postauth.ReasonContextReused, false)
}

// A late answer and a peer that stops answering both end in
// ATTESTATION_TIMEOUT.
func TestQUICPeerStopsAnswering(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t), streams.WithInterval(50*time.Millisecond), streams.WithAnswerDeadline(600*time.Millisecond))
	raw.send(streams.FrameAuthenticator, raw.answer(e.clientResponder(t), raw.next(streams.FrameRequest, 0)))
	raw.next(streams.FrameReady, 0)
	late := raw.next(streams.FrameRequest, 1)
	time.Sleep(time.Second)
	raw.send(streams.FrameAuthenticator, raw.answer(e.clientResponder(t), late))
	wantClosed(t, server, streams.AttestationTimeout, postauth.ReasonAnswerTimeout, false)
	wantQUICClose(t, raw.qc, streams.AttestationTimeout, postauth.ReasonAnswerTimeout)
}

// An application stream opened before the verdict is held: AcceptStream
// returns it only once the attestation passed.
func TestQUICUnverifiedStreamHeld(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t))
	req := raw.next(streams.FrameRequest, 0)
	st, err := raw.qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("early"))
	st.Close()
	accepted := make(chan *quicstream.Stream, 1)
	go func() {
		in, err := server.AcceptStream(context.Background())
		if err != nil {
			t.Error(err)
		}
		accepted <- in
	}()
	select {
	case <-accepted:
		t.Fatal("stream accepted before the verdict")
	case <-time.After(150 * time.Millisecond):
	}
	raw.send(streams.FrameAuthenticator, raw.answer(e.clientResponder(t), req))
	in := <-accepted
	if got := readAll(t, in); got != "early" {
		t.Fatalf("got %q", got)
	}
}

// With Refuse, a stream opened before the verdict closes the connection.
func TestQUICUnverifiedStreamRefused(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t), streams.WithUnverified(streams.Refuse))
	raw.next(streams.FrameRequest, 0)
	st, _ := raw.qc.OpenStream()
	st.Write([]byte("early"))
	wantClosed(t, server, streams.EarlyData, postauth.ReasonEarlyData, false)
	wantQUICClose(t, raw.qc, streams.EarlyData, postauth.ReasonEarlyData)
}

// No stream reaches a server whose attestation has not passed.
func TestQUICNoStreamToUnattestedPeer(t *testing.T) {
	e := newEnv(t)
	raw, client := rawServer(t, e, e.requireServer(t))
	raw.send(streams.FrameReady, nil)
	req := raw.next(streams.FrameRequest, 0)
	opened := make(chan error, 2)
	go func() {
		st, err := client.OpenStream(context.Background())
		opened <- err
		if err == nil {
			_, err = st.Write([]byte("secret"))
			opened <- err
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := raw.qc.AcceptStream(ctx); err == nil {
		t.Fatal("a stream reached the server before its attestation")
	}
	select {
	case err := <-opened:
		t.Fatalf("OpenStream returned before the server's attestation (%v)", err)
	default:
	}
	rogue := postauthtest.NewSoftwareKey(t)
	id, _ := postauth.IdentityFromTLS(&e.serverCert)
	resp, _ := postauth.NewResponder(id, rogue.Attester(t))
	raw.send(streams.FrameAuthenticator, raw.answer(resp, req))
	var ce *streams.CloseError
	if err := <-opened; !errors.As(err, &ce) || ce.Code != streams.AttestationInvalid {
		t.Fatalf("OpenStream: %v", err)
	}
}

// A posture announcement holds stream data until the new posture is
// attested.
func TestQUICPostureNoticeSuspends(t *testing.T) {
	e := newEnv(t)
	raw, server := rawClient(t, e, e.requireClient(t), streams.WithInterval(-1))
	resp := e.clientResponder(t)
	raw.send(streams.FrameAuthenticator, raw.answer(resp, raw.next(streams.FrameRequest, 0)))
	raw.next(streams.FrameReady, 0)
	out, _ := raw.qc.OpenStream()
	out.Write([]byte("a"))
	in, err := server.AcceptStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(in, b); err != nil || string(b) != "a" {
		t.Fatalf("read %q %v", b, err)
	}
	raw.send(streams.FramePosture, e.tracker.Head())
	req := raw.next(streams.FrameRequest, 1)
	out.Write([]byte("b"))
	got := make(chan string, 1)
	go func() {
		n, _ := in.Read(b)
		got <- string(b[:n])
	}()
	sent := make(chan string, 1)
	go func() {
		in.Write([]byte("c"))
		c := make([]byte, 1)
		n, _ := out.Read(c)
		sent <- string(c[:n])
	}()
	select {
	case g := <-got:
		t.Fatalf("read %q while the announced posture was not attested", g)
	case g := <-sent:
		t.Fatalf("sent %q while the peer's announced posture was not attested", g)
	case <-time.After(150 * time.Millisecond):
	}
	raw.send(streams.FrameAuthenticator, raw.answer(resp, req))
	if g := <-got; g != "b" {
		t.Fatalf("read %q", g)
	}
	if g := <-sent; g != "c" {
		t.Fatalf("peer read %q", g)
	}
}

// A forbidden posture change loses the QUIC connection: POLICY_DENIED in
// CONNECTION_CLOSE; the migration stream fails.
func TestQUICPostureChange(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	policy := &posture.Policy{Flags: map[string]string{"debug": "off"}}
	e.tracker.SetFlag(ctx, "debug", "off")
	client, server := pair(t, e,
		[]streams.Option{e.serverAttests(t), e.requireClient(t), streams.WithPosturePolicy(policy)},
		[]streams.Option{e.clientAttests(t), e.requireServer(t), streams.WithPosture(e.tracker)})
	st, err := client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("chunk 1"))
	in, err := server.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 7)
	if _, err := io.ReadFull(in, b); err != nil {
		t.Fatal(err)
	}
	e.tracker.SetFlag(ctx, "debug", "on")
	wantClosed(t, server, streams.PolicyDenied, postauth.ReasonPostureDenied, false)
	wantClosed(t, client, streams.PolicyDenied, postauth.ReasonPostureDenied, true)
	var ce *streams.CloseError
	if _, err := in.Read(b); !errors.As(err, &ce) {
		t.Fatalf("stream read after the denial: %v", err)
	}
	if _, err := st.Write([]byte("chunk 2")); !errors.As(err, &ce) {
		t.Fatalf("stream write after the denial: %v", err)
	}
}

// 0-RTT is never accepted. A listener of one's own that allows it (the
// binding's Listen never does) still gets the connection closed with
// EARLY_DATA by Server, before any stream is read.
func TestZeroRTTRefused(t *testing.T) {
	e := newEnv(t)
	stc := e.serverTLS()
	stc.NextProtos = []string{streams.ALPN}
	stc.SessionTicketsDisabled = false // unsafe on purpose
	ln, err := quic.ListenAddrEarly("127.0.0.1:0", stc, &quic.Config{Allow0RTT: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 2)
	go func() {
		for {
			qc, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_, err := quicstream.Server(ctx, qc, e.requireClient(t), streams.WithAnswerDeadline(time.Second))
				serverErr <- err
			}()
		}
	}()
	ctc := e.clientTLS()
	ctc.NextProtos = []string{streams.ALPN}
	cache := &signalCache{ClientSessionCache: tls.NewLRUClientSessionCache(4), put: make(chan struct{}, 1)}
	ctc.ClientSessionCache = cache
	ctx := context.Background()
	// A first connection to learn a session ticket.
	first, err := quic.DialAddr(ctx, ln.Addr().String(), ctc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	select { // the ticket arrives after the handshake
	case <-cache.put:
	case <-time.After(10 * time.Second):
		t.Fatal("no session ticket")
	}
	first.CloseWithError(0, "")
	<-serverErr
	// Then 0-RTT: a stream with data before the handshake completes.
	qc, err := quic.DialAddrEarly(ctx, ln.Addr().String(), ctc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("replayable"))
	select {
	case <-qc.HandshakeComplete():
	case <-qc.Context().Done():
	}
	if !qc.ConnectionState().Used0RTT {
		t.Fatal("the client did not use 0-RTT")
	}
	wantQUICClose(t, qc, streams.EarlyData, postauth.ReasonEarlyData)
	var ce *streams.CloseError
	if err := <-serverErr; !errors.As(err, &ce) || ce.Code != streams.EarlyData {
		t.Fatalf("Server: %v", err)
	}
}

// The binding's own listener and dialer never use 0-RTT.
func TestConfigTurnsOff0RTT(t *testing.T) {
	c := quicstream.Config(&quic.Config{Allow0RTT: true, EnableDatagrams: true})
	if c.Allow0RTT || c.EnableDatagrams || c.MaxIncomingUniStreams >= 0 {
		t.Fatalf("config %+v", c)
	}
	tc := streams.TLSConfig(&tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(1)})
	if !tc.SessionTicketsDisabled || tc.ClientSessionCache != nil || tc.MinVersion != tls.VersionTLS13 {
		t.Fatal("TLS config allows resumption")
	}
}

// Bulk data on an attested connection with re-attestation every 50 ms:
// every byte arrives, and the verdicts keep coming.
func TestQUICBulkWithReattestation(t *testing.T) {
	e := newEnv(t)
	var verdicts atomic.Int64
	done := make(chan struct{})
	client, server := pair(t, e,
		[]streams.Option{e.requireClient(t), streams.WithInterval(50 * time.Millisecond), streams.WithObserver(func(ev streams.Event) {
			if ev.Kind == streams.EventVerified {
				verdicts.Add(1)
			}
		})},
		[]streams.Option{e.clientAttests(t)})
	ctx := context.Background()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	go func() {
		defer close(done)
		st, err := client.OpenStream(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		for i := 0; i < 8; i++ {
			st.Write(payload)
			time.Sleep(20 * time.Millisecond)
		}
		st.Close()
	}()
	in, err := server.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, in)
	<-done
	if err != nil || n != 8<<20 {
		t.Fatalf("received %d bytes, %v", n, err)
	}
	if server.Err() != nil {
		t.Fatal(server.Err())
	}
	if verdicts.Load() < 2 {
		t.Fatalf("%d verdicts during the transfer", verdicts.Load())
	}
}

// signalCache reports every session ticket it stores.
type signalCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func (c *signalCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}
