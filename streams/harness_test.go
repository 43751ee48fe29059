package streams

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

// env is a PKI with a server and a client certificate, and one software
// attestation key per side.
type env struct {
	pki                    *postauthtest.PKI
	serverCert, clientCert tls.Certificate
	serverAtt, clientAtt   *postauthtest.SoftwareKey
	tracker                *posture.Tracker // the client's posture
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

// serverAttests: the server answers with its TLS key and attestation key.
func (e *env) serverAttests(t testing.TB, att postauth.Attester) Option {
	t.Helper()
	id, err := postauth.IdentityFromTLS(&e.serverCert)
	if err != nil {
		t.Fatal(err)
	}
	if att == nil {
		att = e.serverAtt.Attester(t)
	}
	return WithAttester(id, att)
}

// clientAttests: the client answers, with its posture.
func (e *env) clientAttests(t testing.TB, att postauth.Attester) Option {
	t.Helper()
	id, err := postauth.IdentityFromTLS(&e.clientCert)
	if err != nil {
		t.Fatal(err)
	}
	if att == nil {
		att = e.clientAtt.Attester(t, softeat.WithPosture(e.tracker))
	}
	return WithAttester(id, att)
}

// requireServer: the client verifies the server's attestation.
func (e *env) requireServer(t testing.TB) Option {
	return WithRelyingParty(postauthtest.RelyingParty(t, e.serverAtt.Verifier(t)))
}

// requireClient: the server verifies the client's attestation.
func (e *env) requireClient(t testing.TB) Option {
	return WithRelyingParty(postauthtest.RelyingParty(t, e.clientAtt.Verifier(t)))
}

// pair connects a client and a server Conn over loopback TCP.
func pair(t testing.TB, e *env, serverOpts, clientOpts []Option) (client, server *Conn) {
	t.Helper()
	ln, err := Listen("tcp", "127.0.0.1:0", e.serverTLS(), serverOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := ln.AcceptConn()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = Dial(context.Background(), "tcp", ln.Addr().String(), e.clientTLS(), clientOpts...)
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func ready(t testing.TB, conns ...*Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range conns {
		if err := c.Ready(ctx); err != nil {
			t.Fatalf("Ready: %v", err)
		}
	}
}

// wantClosed waits for c to end and checks its error code and reason,
// and whether the peer closed it.
func wantClosed(t testing.TB, c *Conn, code ErrorCode, reason postauth.Reason, remote bool) *CloseError {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("connection still open, want %v (%s)", code, reason)
	}
	var ce *CloseError
	if !errors.As(c.Err(), &ce) {
		t.Fatalf("connection error %v, want a CloseError %v (%s)", c.Err(), code, reason)
	}
	if ce.Code != code || ce.Reason != reason || ce.Remote != remote {
		t.Fatalf("closed with %v (%s) remote=%v, want %v (%s) remote=%v: %v", ce.Code, ce.Reason, ce.Remote, code, reason, remote, ce)
	}
	return ce
}

// rawPeer speaks the stream binding by hand, over TLS: tests use it to
// play a peer that misbehaves.
type rawPeer struct {
	t    testing.TB
	tc   *tls.Conn
	role postauth.Role
	ch   *postauth.Channel

	mu     sync.Mutex // guards frames
	frames []rawFrame
	sig    chan struct{}
	done   chan struct{}
}

type rawFrame struct {
	t       FrameType
	payload []byte
	at      time.Time
}

// rawClient connects a raw client to a server Conn made with serverOpts.
func rawClient(t testing.TB, e *env, serverOpts ...Option) (*rawPeer, *Conn) {
	t.Helper()
	ln, err := Listen("tcp", "127.0.0.1:0", e.serverTLS(), serverOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *Conn, 1)
	go func() {
		c, _ := ln.AcceptConn()
		accepted <- c
	}()
	tc, err := tls.Dial("tcp", ln.Addr().String(), TLSConfig(e.clientTLS()))
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	t.Cleanup(func() { server.Close() })
	return newRawPeer(t, tc, postauth.RoleClient), server
}

// rawServer accepts a client Conn made with clientOpts on a raw server.
func rawServer(t testing.TB, e *env, clientOpts ...Option) (*rawPeer, *Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *tls.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		tc := tls.Server(nc, TLSConfig(e.serverTLS()))
		if tc.Handshake() != nil {
			accepted <- nil
			return
		}
		accepted <- tc
	}()
	client, err := Dial(context.Background(), "tcp", ln.Addr().String(), e.clientTLS(), clientOpts...)
	if err != nil {
		t.Fatal(err)
	}
	tc := <-accepted
	if tc == nil {
		t.Fatal("raw server handshake failed")
	}
	t.Cleanup(func() { client.Close() })
	return newRawPeer(t, tc, postauth.RoleServer), client
}

func newRawPeer(t testing.TB, tc *tls.Conn, role postauth.Role) *rawPeer {
	t.Helper()
	st := tc.ConnectionState()
	ch, err := postauth.NewChannel(&st)
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{t: t, tc: tc, role: role, ch: ch, sig: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { tc.Close() })
	go p.read()
	return p
}

func (p *rawPeer) read() {
	defer close(p.done)
	for {
		t, payload, err := ReadFrame(p.tc, nil)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.frames = append(p.frames, rawFrame{t, payload, time.Now()})
		close(p.sig)
		p.sig = make(chan struct{})
		p.mu.Unlock()
	}
}

func (p *rawPeer) send(t FrameType, payload []byte) {
	p.t.Helper()
	b, err := AppendFrame(nil, t, payload)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.tc.Write(b); err != nil {
		p.t.Logf("raw send %v: %v", t, err)
	}
}

// next waits for the i-th frame of type t (0-based, counting only that
// type) and returns its payload.
func (p *rawPeer) next(t FrameType, i int) []byte {
	p.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		p.mu.Lock()
		n := 0
		for _, f := range p.frames {
			if f.t == t {
				if n == i {
					p.mu.Unlock()
					return f.payload
				}
				n++
			}
		}
		sig := p.sig
		p.mu.Unlock()
		select {
		case <-sig:
		case <-p.done:
			p.mu.Lock()
			fs := p.frames
			p.mu.Unlock()
			p.t.Fatalf("raw peer: connection ended before %v #%d (frames: %v)", t, i, kinds(fs))
		case <-deadline:
			p.t.Fatalf("raw peer: no %v #%d", t, i)
		}
	}
}

// count is the number of frames of type t received so far.
func (p *rawPeer) count(t FrameType) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.frames {
		if f.t == t {
			n++
		}
	}
	return n
}

// closeFrame waits for the connection to end and returns the code and
// reason of the FrameClose received.
func (p *rawPeer) closeFrame() (ErrorCode, postauth.Reason) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Fatal("raw peer: connection still open")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.frames {
		if f.t == FrameClose {
			code, reason, err := ParseClose(f.payload)
			if err != nil {
				p.t.Fatal(err)
			}
			return code, reason
		}
	}
	p.t.Fatalf("raw peer: no FrameClose (frames: %v)", kinds(p.frames))
	return 0, ""
}

func kinds(fs []rawFrame) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.t.String())
	}
	return out
}

// answer answers a request payload with resp (or refuses if resp is nil).
func (p *rawPeer) answer(resp *postauth.Responder, reqBytes []byte) []byte {
	p.t.Helper()
	req, err := postauth.ParseRequest(reqBytes)
	if err != nil {
		p.t.Fatal(err)
	}
	if resp == nil {
		raw, err := p.ch.Refuse(p.role, req)
		if err != nil {
			p.t.Fatal(err)
		}
		return raw
	}
	raw, err := resp.Respond(context.Background(), p.ch, p.role, req)
	if err != nil {
		p.t.Fatal(err)
	}
	return raw
}

// clientResponder is the client's genuine Responder (its TLS key, its
// attestation key).
func (e *env) clientResponder(t testing.TB) *postauth.Responder {
	t.Helper()
	id, err := postauth.IdentityFromTLS(&e.clientCert)
	if err != nil {
		t.Fatal(err)
	}
	r, err := postauth.NewResponder(id, e.clientAtt.Attester(t, softeat.WithPosture(e.tracker)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tlsServer(c net.Conn, config *tls.Config) *tls.Conn { return tls.Server(c, config) }

func tlsDial(addr string, config *tls.Config) (*tls.Conn, error) {
	return tls.Dial("tcp", addr, config)
}
