package quicstream_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/streams"
	"github.com/reattest/reattest/streams/quicstream"
)

type env struct {
	pki                    *postauthtest.PKI
	serverCert, clientCert tls.Certificate
	serverAtt, clientAtt   *postauthtest.SoftwareKey
	tracker                *posture.Tracker
}

func newEnv(t testing.TB) *env {
	t.Helper()
	p := postauthtest.New(t)
	tr, err := posture.NewTracker()
	if err != nil {
		t.Fatal(err)
	}
	return &env{
		pki:        p,
		serverCert: p.Issue(t, "localhost", postauthtest.ServerAuth()),
		clientCert: p.Issue(t, "platform-a"),
		serverAtt:  postauthtest.NewSoftwareKey(t),
		clientAtt:  postauthtest.NewSoftwareKey(t),
		tracker:    tr,
	}
}

func (e *env) serverTLS() *tls.Config {
	c := e.pki.ServerConfig(e.serverCert)
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c
}

func (e *env) clientTLS() *tls.Config { return e.pki.ClientConfig(&e.clientCert) }

func (e *env) serverAttests(t testing.TB) streams.Option {
	t.Helper()
	id, _ := postauth.IdentityFromTLS(&e.serverCert)
	return streams.WithAttester(id, e.serverAtt.Attester(t))
}

func (e *env) clientAttests(t testing.TB) streams.Option {
	t.Helper()
	return streams.WithAttester(e.clientIdentity(t), e.clientAtt.Attester(t, softeat.WithPosture(e.tracker)))
}

func (e *env) clientIdentity(t testing.TB) *postauth.Identity {
	t.Helper()
	id, err := postauth.IdentityFromTLS(&e.clientCert)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) requireServer(t testing.TB) streams.Option {
	return streams.WithRelyingParty(postauthtest.RelyingParty(t, e.serverAtt.Verifier(t)))
}

func (e *env) requireClient(t testing.TB) streams.Option {
	return streams.WithRelyingParty(postauthtest.RelyingParty(t, e.clientAtt.Verifier(t)))
}

func (e *env) clientResponder(t testing.TB) *postauth.Responder {
	t.Helper()
	r, err := postauth.NewResponder(e.clientIdentity(t), e.clientAtt.Attester(t, softeat.WithPosture(e.tracker)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func listen(t testing.TB, e *env, opts ...streams.Option) *quicstream.Listener {
	t.Helper()
	ln, err := quicstream.Listen("127.0.0.1:0", e.serverTLS(), nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair connects an attested QUIC client and server on loopback.
func pair(t testing.TB, e *env, serverOpts, clientOpts []streams.Option) (client, server *quicstream.Conn) {
	t.Helper()
	ln := listen(t, e, serverOpts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := quicstream.Dial(ctx, ln.Addr().String(), e.clientTLS(), nil, clientOpts...)
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func ready(t testing.TB, conns ...*quicstream.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range conns {
		if err := c.Ready(ctx); err != nil {
			t.Fatalf("Ready: %v", err)
		}
	}
}

func wantClosed(t testing.TB, c *quicstream.Conn, code streams.ErrorCode, reason postauth.Reason, remote bool) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("connection still open, want %v (%s)", code, reason)
	}
	var ce *streams.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != code || ce.Reason != reason || ce.Remote != remote {
		t.Fatalf("closed with %v, want %v (%s) remote=%v", c.Err(), code, reason, remote)
	}
}

// wantQUICClose waits for qc to end and checks the application error code
// and reason its peer sent.
func wantQUICClose(t testing.TB, qc *quic.Conn, code streams.ErrorCode, reason postauth.Reason) {
	t.Helper()
	select {
	case <-qc.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("QUIC connection still open, want %v", code)
	}
	var ae *quic.ApplicationError
	if err := context.Cause(qc.Context()); !errors.As(err, &ae) || !ae.Remote || streams.ErrorCode(ae.ErrorCode) != code || ae.ErrorMessage != string(reason) {
		t.Fatalf("QUIC close %v, want %v (%s)", err, code, reason)
	}
}

// rawQUIC speaks the binding by hand on a raw QUIC connection.
type rawQUIC struct {
	t    testing.TB
	qc   *quic.Conn
	ctrl *quic.Stream
	ch   *postauth.Channel
	role postauth.Role

	mu     sync.Mutex // guards frames, sig
	frames []rawFrame
	sig    chan struct{}
	done   chan struct{}
}

type rawFrame struct {
	t streams.FrameType
	p []byte
}

// rawClient dials a server made with serverOpts from a raw client, opens
// the control stream (sending FrameReady: the raw client requires
// nothing) and returns both ends.
func rawClient(t testing.TB, e *env, serverOpts ...streams.Option) (*rawQUIC, *quicstream.Conn) {
	t.Helper()
	ln := listen(t, e, serverOpts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, ln.Addr().String(), streams.TLSConfig(e.clientTLS()), quicstream.Config(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	ctrl, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := newRaw(t, qc, ctrl, postauth.RoleClient)
	r.send(streams.FrameReady, nil)
	server, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return r, server
}

// rawServer accepts a client made with clientOpts on a raw QUIC server.
func rawServer(t testing.TB, e *env, clientOpts ...streams.Option) (*rawQUIC, *quicstream.Conn) {
	t.Helper()
	ln, err := quic.ListenAddr("127.0.0.1:0", streams.TLSConfig(e.serverTLS()), quicstream.Config(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := quicstream.Dial(ctx, ln.Addr().String(), e.clientTLS(), nil, clientOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	qc, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := qc.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return newRaw(t, qc, ctrl, postauth.RoleServer), client
}

func newRaw(t testing.TB, qc *quic.Conn, ctrl *quic.Stream, role postauth.Role) *rawQUIC {
	ch, err := quicstream.Channel(context.Background(), qc)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawQUIC{t: t, qc: qc, ctrl: ctrl, ch: ch, role: role, sig: make(chan struct{}), done: make(chan struct{})}
	go r.read()
	return r
}

func (r *rawQUIC) read() {
	defer close(r.done)
	for {
		t, p, err := streams.ReadFrame(r.ctrl, nil)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.frames = append(r.frames, rawFrame{t, p})
		close(r.sig)
		r.sig = make(chan struct{})
		r.mu.Unlock()
	}
}

func (r *rawQUIC) send(t streams.FrameType, p []byte) {
	b, err := streams.AppendFrame(nil, t, p)
	if err != nil {
		r.t.Fatal(err)
	}
	r.ctrl.Write(b)
}

func (r *rawQUIC) next(t streams.FrameType, i int) []byte {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		n := 0
		for _, f := range r.frames {
			if f.t == t {
				if n == i {
					r.mu.Unlock()
					return f.p
				}
				n++
			}
		}
		sig := r.sig
		r.mu.Unlock()
		select {
		case <-sig:
		case <-r.done:
			r.t.Fatalf("raw: control stream ended before %v #%d", t, i)
		case <-deadline:
			r.t.Fatalf("raw: no %v #%d", t, i)
		}
	}
}

func (r *rawQUIC) answer(resp *postauth.Responder, reqBytes []byte) []byte {
	r.t.Helper()
	req, err := postauth.ParseRequest(reqBytes)
	if err != nil {
		r.t.Fatal(err)
	}
	if resp == nil {
		raw, err := r.ch.Refuse(r.role, req)
		if err != nil {
			r.t.Fatal(err)
		}
		return raw
	}
	raw, err := resp.Respond(context.Background(), r.ch, r.role, req)
	if err != nil {
		r.t.Fatal(err)
	}
	return raw
}

// readAll reads a whole stream with a timeout.
func readAll(t testing.TB, st io.Reader) string {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	c := make(chan res, 1)
	go func() {
		b, err := io.ReadAll(st)
		c <- res{b, err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("read: %v", r.err)
		}
		return string(r.b)
	case <-time.After(10 * time.Second):
		t.Fatal("read timed out")
	}
	return ""
}
