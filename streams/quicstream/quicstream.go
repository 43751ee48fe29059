package quicstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/streams"
)

// Conn is an attested QUIC connection. Its first bidirectional stream
// (stream 0, opened by the client) is the control stream of the
// attestation protocol; application streams are opened and accepted with
// [Conn.OpenStream] and [Conn.AcceptStream] and carry the application's
// bytes untouched. Streams open, accept, read and write only while the
// peer's attestation holds (the same gates as [streams.Conn]); once it
// lapses, the connection is closed with the error code as its QUIC
// application error code, and every stream fails with a
// *[streams.CloseError].
//
// A Conn is safe for concurrent use.
type Conn struct {
	qc   *quic.Conn
	s    *streams.Session
	ctrl *quic.Stream

	wmu sync.Mutex // serializes control frames

	accepted chan *quic.Stream // application streams the peer opened
}

// DefaultKeepAlive is the keep-alive period [Config] sets when base sets
// none: an attested connection re-attests only every interval (5 minutes
// by default), longer than QUIC's idle timeout (30 seconds by default).
const DefaultKeepAlive = 15 * time.Second

// Config returns a copy of base (nil: the defaults) set up for the
// binding: 0-RTT off, no unidirectional streams or datagrams from the peer
// (version 1 gates bidirectional streams only), and keep-alives
// ([DefaultKeepAlive] unless base sets a period).
func Config(base *quic.Config) *quic.Config {
	c := &quic.Config{}
	if base != nil {
		c = base.Clone()
	}
	c.Allow0RTT = false
	c.MaxIncomingUniStreams = -1
	c.EnableDatagrams = false
	if c.KeepAlivePeriod == 0 {
		c.KeepAlivePeriod = DefaultKeepAlive
	}
	return c
}

// Dial connects to addr with [streams.TLSConfig] of tlsConf and [Config]
// of quicConf, never with 0-RTT, and returns the client side of an
// attested connection once the QUIC handshake is complete and the control
// stream is open; attestation continues in the background (see
// [Conn.Ready]).
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, quicConf *quic.Config, opts ...streams.Option) (*Conn, error) {
	qc, err := quic.DialAddr(ctx, addr, streams.TLSConfig(tlsConf), Config(quicConf))
	if err != nil {
		return nil, err
	}
	return Client(ctx, qc, opts...)
}

// Client runs the client side of the binding on qc: it waits for the
// handshake to complete, refuses a connection that used 0-RTT or did not
// negotiate [streams.ALPN] (closing it), opens the control stream and
// starts the attestation. On error qc is closed.
func Client(ctx context.Context, qc *quic.Conn, opts ...streams.Option) (*Conn, error) {
	return start(ctx, qc, postauth.RoleClient, opts)
}

// Server runs the server side of the binding on qc, as [Client] does, and
// accepts the control stream (within [streams.SetupTimeout]).
func Server(ctx context.Context, qc *quic.Conn, opts ...streams.Option) (*Conn, error) {
	return start(ctx, qc, postauth.RoleServer, opts)
}

// Channel waits for the QUIC handshake of qc to complete and returns its
// attestation channel (both endpoints derive the same exporter values), for
// protocols that carry the RFC 9261 messages themselves.
func Channel(ctx context.Context, qc *quic.Conn) (*postauth.Channel, error) {
	select {
	case <-qc.HandshakeComplete():
	case <-qc.Context().Done():
		return nil, context.Cause(qc.Context())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	st := qc.ConnectionState().TLS
	return postauth.NewChannel(&st)
}

func start(ctx context.Context, qc *quic.Conn, role postauth.Role, opts []streams.Option) (*Conn, error) {
	fail := func(err error) (*Conn, error) {
		var ce *streams.CloseError
		if errors.As(err, &ce) {
			qc.CloseWithError(quic.ApplicationErrorCode(ce.Code), string(ce.Reason))
		} else {
			qc.CloseWithError(quic.ApplicationErrorCode(streams.ProtocolError), "")
		}
		return nil, err
	}
	ch, err := Channel(ctx, qc)
	if err != nil {
		var pe *postauth.Error
		if errors.As(err, &pe) {
			err = local(err)
		}
		return fail(err)
	}
	st := qc.ConnectionState()
	if st.Used0RTT { // mutation: quic 0-RTT refused
		// 0-RTT data is replayable and was sent before anyone attested.
		return fail(local(postauth.ErrorFor(postauth.ReasonEarlyData, errors.New("quicstream: the connection used 0-RTT"))))
	}
	if st.TLS.NegotiatedProtocol != streams.ALPN {
		return fail(local(postauth.ErrorFor(postauth.ReasonProtocolViolation, fmt.Errorf("quicstream: the peer did not negotiate %q", streams.ALPN))))
	}
	c := &Conn{qc: qc, accepted: make(chan *quic.Stream)}
	s, err := streams.NewSession(ch, role, c, c.teardown, opts...)
	if err != nil {
		return fail(err)
	}
	c.s = s
	actx, cancel := context.WithTimeout(ctx, streams.SetupTimeout)
	defer cancel()
	if role == postauth.RoleClient {
		c.ctrl, err = qc.OpenStreamSync(actx)
	} else {
		c.ctrl, err = qc.AcceptStream(actx)
		if err == nil && c.ctrl.StreamID() != 0 {
			err = local(postauth.ErrorFor(postauth.ReasonProtocolViolation, errors.New("quicstream: the first stream is not stream 0")))
		}
	}
	if err != nil {
		return fail(err)
	}
	go c.readControl()
	go c.watch()
	go c.acceptLoop()
	s.Start()
	return c, nil
}

// local is the CloseError of a local failure err.
func local(err error) *streams.CloseError {
	return &streams.CloseError{Code: streams.CodeFor(err), Reason: postauth.ReasonOf(err), Err: err}
}

// WriteFrame sends one frame on the control stream ([streams.FrameWriter]).
func (c *Conn) WriteFrame(t streams.FrameType, payload []byte) error {
	b, err := streams.AppendFrame(nil, t, payload) // control frames are rare: nothing kept
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.ctrl.Write(b)
	return err
}

// readControl hands the peer's control frames to the session.
func (c *Conn) readControl() {
	for {
		t, p, err := streams.ReadFrame(c.ctrl, nil) // control frames are rare: nothing kept
		if err != nil {
			var pe *postauth.Error
			if errors.As(err, &pe) {
				c.s.Fail(err)
			} else {
				c.transportFailed(err)
			}
			return
		}
		if t == streams.FrameData || t == streams.FrameWindow {
			c.s.Fail(postauth.ErrorFor(postauth.ReasonProtocolViolation, fmt.Errorf("quicstream: %v frame on the control stream", t)))
			return
		}
		if c.s.HandleFrame(t, p) != nil {
			return
		}
	}
}

// watch ends the session when the QUIC connection ends.
func (c *Conn) watch() {
	select {
	case <-c.qc.Context().Done():
		c.transportFailed(context.Cause(c.qc.Context()))
	case <-c.s.Done():
	}
}

// transportFailed ends the session on an error of the QUIC connection: a
// CONNECTION_CLOSE of the peer keeps its code and reason.
func (c *Conn) transportFailed(err error) {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		c.s.CloseRemote(streams.ErrorCode(ae.ErrorCode), ae.ErrorMessage)
		return
	}
	c.s.Abort(err)
}

// acceptLoop accepts the streams the peer opens and hands them to
// AcceptStream, one at a time (the rest wait in quic-go, within its stream
// limits).
func (c *Conn) acceptLoop() {
	for {
		st, err := c.qc.AcceptStream(c.qc.Context())
		if err != nil {
			return
		}
		if c.s.Unverified() == streams.Refuse && !c.s.Verified() { // mutation: quic refuse unverified streams
			c.s.Fail(postauth.ErrorFor(postauth.ReasonEarlyData, errors.New("quicstream: a stream opened before the verdict")))
			return
		}
		select {
		case c.accepted <- st:
		case <-c.s.Done():
			return
		}
	}
}

// teardown closes the QUIC connection when the session ends: a local error
// code goes to the peer in CONNECTION_CLOSE.
func (c *Conn) teardown(err error) {
	var ce *streams.CloseError
	if errors.As(err, &ce) {
		if !ce.Remote {
			c.qc.CloseWithError(quic.ApplicationErrorCode(ce.Code), string(ce.Reason))
		}
		return
	}
	c.qc.CloseWithError(quic.ApplicationErrorCode(streams.ProtocolError), "")
}

// OpenStream opens an application stream. It waits until the peer's
// attestation passed and the peer is ready (no stream, and no byte, goes
// to a peer that has not attested), or ctx ends.
func (c *Conn) OpenStream(ctx context.Context) (*Stream, error) {
	if !c.s.CanSend() { // mutation: quic open gate
		if err := c.s.WaitSend(ctx); err != nil {
			return nil, err
		}
	}
	st, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, c.streamErr(err)
	}
	return newStream(st, c), nil
}

// AcceptStream returns the next application stream the peer opened. It
// waits until the peer's attestation passed: a stream opened before is
// held (or, with [streams.Refuse], closes the connection).
func (c *Conn) AcceptStream(ctx context.Context) (*Stream, error) {
	if !c.s.CanDeliver() { // mutation: quic accept gate
		if err := c.s.WaitDeliver(ctx); err != nil {
			return nil, err
		}
	}
	select {
	case st := <-c.accepted:
		return newStream(st, c), nil
	case <-c.s.Done():
		return nil, readErr(c.s.Err())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// streamErr returns the session's error if the connection ended (the
// QUIC error of a stream may arrive before the session learnt of it), else
// err (a stream's own error, such as a reset).
func (c *Conn) streamErr(err error) error {
	select {
	case <-c.qc.Context().Done():
		c.transportFailed(context.Cause(c.qc.Context()))
	default:
	}
	if serr := c.s.Err(); serr != nil {
		return readErr(serr)
	}
	return err
}

// Ready waits until application data may flow both ways (the peer's
// attestation passed, if required, and the peer is ready), or returns the
// connection's error or ctx's.
func (c *Conn) Ready(ctx context.Context) error { return c.s.WaitSend(ctx) }

// Result is the current verdict about the peer ([streams.Session.Result]).
func (c *Conn) Result() *postauth.Result { return c.s.Result() }

// Reattest asks the peer to attest now and returns the new verdict; a
// failure closes the connection.
func (c *Conn) Reattest(ctx context.Context) (*postauth.Result, error) { return c.s.Reattest(ctx) }

// Err is the connection's error once it ended, nil while it runs.
func (c *Conn) Err() error { return c.s.Err() }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.s.Done() }

// Close closes the connection in order (error code NoError). As with any
// QUIC connection, stream data not yet received by the peer may be lost:
// close the streams and let the peer read them first.
func (c *Conn) Close() error { return c.s.Close() }

// ConnectionState returns the QUIC connection state.
func (c *Conn) ConnectionState() quic.ConnectionState { return c.qc.ConnectionState() }

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.qc.LocalAddr() }

// RemoteAddr returns the address of the peer.
func (c *Conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

var _ streams.FrameWriter = (*Conn)(nil)

// Listener accepts attested QUIC connections.
type Listener struct {
	ln     *quic.Listener
	opts   []streams.Option
	ctx    context.Context
	cancel context.CancelFunc
	conns  chan *Conn
	done   chan struct{}
	err    error // set before done is closed
}

// Listen listens on the UDP address addr with [streams.TLSConfig] of
// tlsConf and [Config] of quicConf (0-RTT off).
func Listen(addr string, tlsConf *tls.Config, quicConf *quic.Config, opts ...streams.Option) (*Listener, error) {
	ln, err := quic.ListenAddr(addr, streams.TLSConfig(tlsConf), Config(quicConf))
	if err != nil {
		return nil, err
	}
	return NewListener(ln, opts...), nil
}

// NewListener accepts attested connections from ln. ln should come from
// [Config] and [streams.TLSConfig]; a connection that used 0-RTT or did not
// negotiate [streams.ALPN] is closed anyway. Each connection is set up in
// the background (a slow peer does not hold up the others).
func NewListener(ln *quic.Listener, opts ...streams.Option) *Listener {
	l := &Listener{ln: ln, opts: opts, conns: make(chan *Conn), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return l
}

func (l *Listener) run() {
	defer close(l.done)
	for {
		qc, err := l.ln.Accept(l.ctx)
		if err != nil {
			l.err = err
			return
		}
		go func() {
			c, err := Server(l.ctx, qc, l.opts...)
			if err != nil {
				return
			}
			select {
			case l.conns <- c:
			case <-l.ctx.Done():
				c.Close()
			}
		}()
	}
}

// Accept returns the next attested connection (whose attestation may still
// be under way: see [Conn.Ready]).
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops listening. Connections already accepted stay open.
func (l *Listener) Close() error {
	l.cancel()
	return l.ln.Close()
}

// Addr is the listener's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }
