package streams

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/reattest/reattest/postauth"
)

// closeTimeout bounds the write of the FrameClose that ends a connection.
const closeTimeout = time.Second

// Conn is an attested connection over TLS 1.3 and TCP: a net.Conn whose
// application data travels in frames next to the attestation protocol
// (docs/protocol.md section 10). Reads deliver data only while the peer's
// attestation holds, and writes send data only to a peer whose attestation
// passed and that is ready for it; once attestation lapses (a refusal, a
// failed verification or appraisal, a missed answer deadline), the
// connection is closed with an error code and reads and writes return a
// *[CloseError].
//
// Make one with [Dial], [Listen], [Client] or [Server]. A Conn is safe for
// concurrent use: one reader and one writer at a time, as usual for a
// net.Conn, plus any number of calls to Result, Reattest and Ready.
type Conn struct {
	tc   *tls.Conn
	role postauth.Role
	opts []Option

	started chan struct{} // closed once s is set, or setup failed
	s       *Session
	setup   error
	done    chan struct{} // closed when the connection has ended

	wmu sync.Mutex // serializes frames on tc

	rmu        sync.Mutex // guards rbuf, recvWindow, unacked, rsig
	rbuf       bytes.Buffer
	recvWindow int // credit the peer still has
	unacked    int // bytes the application read and we did not grant again
	rsig       chan struct{}

	smu        sync.Mutex // guards sendWindow, ssig
	sendWindow int
	ssig       chan struct{}

	rdl, wdl  deadline
	closeOnce sync.Once
}

// Client returns the client side of an attested connection over tc. The
// TLS handshake (if not done yet) and the attestation run in the
// background; Read, Write and Ready wait for them. tc's configuration must
// offer [ALPN] (see [TLSConfig]).
func Client(tc *tls.Conn, opts ...Option) *Conn {
	return newConn(tc, postauth.RoleClient, opts)
}

// Server returns the server side of an attested connection over tc, as
// [Client] does.
func Server(tc *tls.Conn, opts ...Option) *Conn {
	return newConn(tc, postauth.RoleServer, opts)
}

// Dial connects to addr over network with TLS 1.3 ([TLSConfig] of config)
// and returns the client side of an attested connection once the TLS
// handshake is complete; attestation continues in the background (see
// [Conn.Ready]).
func Dial(ctx context.Context, network, addr string, config *tls.Config, opts ...Option) (*Conn, error) {
	d := &tls.Dialer{Config: TLSConfig(config)}
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return Client(nc.(*tls.Conn), opts...), nil
}

// TLSConfig returns a copy of base (nil: an empty config) set up for the
// stream binding: TLS 1.3 only, [ALPN] as the only application protocol,
// no session tickets or resumption (attested connections do not resume,
// draft-fossati-seat-expat).
func TLSConfig(base *tls.Config) *tls.Config {
	c := &tls.Config{}
	if base != nil {
		c = base.Clone()
	}
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{ALPN}
	c.SessionTicketsDisabled = true
	c.ClientSessionCache = nil
	return c
}

// Listener accepts attested connections.
type Listener struct {
	inner  net.Listener
	config *tls.Config
	opts   []Option
}

var _ net.Listener = (*Listener)(nil)

// Listen announces on network and addr and returns a Listener whose
// connections are the server side of attested connections, with
// [TLSConfig] of config.
func Listen(network, addr string, config *tls.Config, opts ...Option) (*Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return NewListener(ln, config, opts...), nil
}

// NewListener wraps inner, as [Listen] does.
func NewListener(inner net.Listener, config *tls.Config, opts ...Option) *Listener {
	return &Listener{inner: inner, config: TLSConfig(config), opts: opts}
}

// AcceptConn waits for the next connection and returns its attested
// server side. The TLS handshake and the attestation run in the
// background, so a slow peer does not hold up the next Accept.
func (l *Listener) AcceptConn() (*Conn, error) {
	nc, err := l.inner.Accept()
	if err != nil {
		return nil, err
	}
	return Server(tls.Server(nc, l.config), l.opts...), nil
}

// Accept is AcceptConn as a net.Listener: the net.Conn is a *Conn.
func (l *Listener) Accept() (net.Conn, error) { return l.AcceptConn() }

// Close closes the listener (not the connections it accepted).
func (l *Listener) Close() error { return l.inner.Close() }

// Addr is the listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

func newConn(tc *tls.Conn, role postauth.Role, opts []Option) *Conn {
	c := &Conn{
		tc: tc, role: role, opts: opts,
		started:    make(chan struct{}),
		done:       make(chan struct{}),
		recvWindow: InitialWindow,
		sendWindow: InitialWindow,
		rsig:       make(chan struct{}),
		ssig:       make(chan struct{}),
		rdl:        newDeadline(),
		wdl:        newDeadline(),
	}
	go c.run()
	return c
}

// run completes the handshake, checks the connection, starts the session
// and reads the peer's frames until the end.
func (c *Conn) run() {
	ctx, cancel := context.WithTimeout(context.Background(), SetupTimeout)
	err := c.tc.HandshakeContext(ctx)
	cancel()
	var s *Session
	if err == nil {
		st := c.tc.ConnectionState()
		if st.NegotiatedProtocol != ALPN { // mutation: stream ALPN
			err = postauth.ErrorFor(postauth.ReasonProtocolViolation, fmt.Errorf("streams: the peer did not negotiate %q (got %q)", ALPN, st.NegotiatedProtocol))
		} else {
			var ch *postauth.Channel
			if ch, err = postauth.NewChannel(&st); err == nil {
				s, err = NewSession(ch, c.role, c, c.teardown, c.opts...)
			}
		}
	}
	if err != nil {
		if _, ok := err.(*postauth.Error); ok {
			err = closeErrorFor(err)
		}
		c.setup = err
		close(c.started)
		c.closeOnce.Do(func() {
			c.tc.Close()
			close(c.done)
		})
		return
	}
	c.s = s
	close(c.started)
	s.Start()
	c.readLoop()
}

// scratch holds frame buffers of up to MaxDataLen bytes (and a header)
// while a frame is read or written, so that an idle connection holds none.
var scratch = sync.Pool{New: func() any { b := make([]byte, FrameHeaderLen+MaxDataLen); return &b }}

// readLoop reads the peer's frames: data into the receive buffer, window
// updates into the send credit, the rest to the session.
func (c *Conn) readLoop() {
	for {
		var held *[]byte
		t, p, err := readFrame(c.tc, func(n int) []byte {
			if n > MaxDataLen {
				return make([]byte, n)
			}
			held = scratch.Get().(*[]byte)
			return (*held)[:n]
		})
		done := c.handle(t, p, err)
		if held != nil {
			scratch.Put(held)
		}
		if done {
			return
		}
	}
}

// handle processes one frame (or the read error); true ends the read loop.
func (c *Conn) handle(t FrameType, p []byte, err error) bool {
	if err != nil {
		if c.s.Err() != nil {
			return true
		}
		var pe *postauth.Error
		switch {
		case errors.As(err, &pe):
			c.s.Fail(err)
		case errors.Is(err, io.EOF):
			c.s.Abort(io.ErrUnexpectedEOF) // the peer went away without FrameClose
		default:
			c.s.Abort(err)
		}
		return true
	}
	switch t {
	case FrameData:
		if !c.received(p) {
			return true
		}
	case FrameWindow:
		n, err := ParseWindow(p)
		c.smu.Lock()
		if err == nil && c.sendWindow > MaxWindow-int(n) {
			err = errors.New("streams: window over 2^31-1")
		}
		if err == nil {
			c.sendWindow += int(n)
			close(c.ssig)
			c.ssig = make(chan struct{})
		}
		c.smu.Unlock()
		if err != nil {
			c.s.Fail(postauth.ErrorFor(postauth.ReasonProtocolViolation, err))
			return true
		}
	default:
		if c.s.HandleFrame(t, p) != nil {
			return true
		}
	}
	return false
}

// received takes one FrameData payload; false ends the read loop.
func (c *Conn) received(p []byte) bool {
	if c.s.Err() != nil {
		return false
	}
	if c.s.Unverified() == Refuse && !c.s.Verified() { // mutation: refuse unverified data
		c.s.Fail(postauth.ErrorFor(postauth.ReasonEarlyData, errors.New("streams: application data before the verdict")))
		return false
	}
	c.rmu.Lock()
	if len(p) > c.recvWindow { // mutation: stream flow control
		c.rmu.Unlock()
		c.s.Fail(postauth.ErrorFor(postauth.ReasonProtocolViolation, errors.New("streams: data beyond the flow-control window")))
		return false
	}
	c.recvWindow -= len(p)
	c.rbuf.Write(p)
	close(c.rsig)
	c.rsig = make(chan struct{})
	c.rmu.Unlock()
	return true
}

// WriteFrame sends one frame on the connection ([FrameWriter]).
func (c *Conn) WriteFrame(t FrameType, payload []byte) error {
	buf := scratch.Get().(*[]byte)
	defer scratch.Put(buf)
	b, err := AppendFrame((*buf)[:0], t, payload) // one TLS record per frame
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.tc.Write(b)
	return err
}

// teardown closes the transport when the session ends: a local error code
// goes to the peer in a FrameClose first.
func (c *Conn) teardown(err error) {
	c.closeOnce.Do(func() {
		var ce *CloseError
		if errors.As(err, &ce) && !ce.Remote {
			c.tc.SetWriteDeadline(time.Now().Add(closeTimeout))
			c.WriteFrame(FrameClose, AppendClose(nil, ce.Code, ce.Reason))
		}
		c.tc.Close()
		close(c.done)
	})
}

// session waits for the setup (handshake, session start).
func (c *Conn) session(cancel <-chan struct{}) (*Session, error) {
	select {
	case <-c.started:
	case <-cancel:
		return nil, os.ErrDeadlineExceeded
	}
	if c.setup != nil {
		return nil, c.setup
	}
	return c.s, nil
}

// Read reads application data. It waits until the peer's attestation
// passed (data that arrived before is held, or refused with [Refuse]), and
// while a posture change the peer announced is being attested. Once the
// connection failed it returns the *CloseError (data not yet read is
// dropped); after the peer's orderly close it returns the data received
// before, then io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	s, err := c.session(c.rdl.wait())
	if err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		changed := s.Changed()
		err := s.Err()
		if err != nil && !s.Drainable() {
			return 0, readErr(err)
		}
		if err == nil && !s.CanDeliver() { // mutation: stream read gate
			if err := c.await(changed, nil, c.rdl.wait()); err != nil {
				return 0, err
			}
			continue
		}
		c.rmu.Lock()
		if c.rbuf.Len() > 0 {
			n, _ := c.rbuf.Read(p)
			if c.rbuf.Len() == 0 && c.rbuf.Cap() > InitialWindow/4 {
				c.rbuf = bytes.Buffer{} // an idle connection keeps no large buffer
			}
			c.unacked += n
			grant := 0
			if c.unacked >= InitialWindow/4 || c.rbuf.Len() == 0 && c.unacked >= InitialWindow/16 {
				grant, c.unacked = c.unacked, 0
				c.recvWindow += grant
			}
			c.rmu.Unlock()
			if grant > 0 && err == nil {
				if werr := c.WriteFrame(FrameWindow, AppendWindow(nil, uint32(grant))); werr != nil {
					s.Abort(werr)
				}
			}
			return n, nil
		}
		rsig := c.rsig
		c.rmu.Unlock()
		if err != nil {
			return 0, readErr(err) // drained
		}
		if err := c.await(changed, rsig, c.rdl.wait()); err != nil {
			return 0, err
		}
	}
}

// Write sends application data. It waits until the peer's attestation
// passed (no byte reaches a peer that has not attested) and the peer is
// ready, while a posture change it announced is being attested, and for
// flow-control credit.
func (c *Conn) Write(p []byte) (int, error) {
	s, err := c.session(c.wdl.wait())
	if err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		n, err := c.reserve(s, len(p))
		if err != nil {
			return written, err
		}
		if err := c.WriteFrame(FrameData, p[:n]); err != nil {
			if serr := s.Err(); serr != nil {
				return written, writeErr(serr)
			}
			s.Abort(err)
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// reserve waits until data may be sent and takes up to want bytes of
// credit.
func (c *Conn) reserve(s *Session, want int) (int, error) {
	for {
		changed := s.Changed()
		if err := s.Err(); err != nil {
			return 0, writeErr(err)
		}
		if !s.CanSend() { // mutation: stream write gate
			if err := c.await(changed, nil, c.wdl.wait()); err != nil {
				return 0, err
			}
			continue
		}
		c.smu.Lock()
		if c.sendWindow > 0 {
			n := min(want, MaxDataLen, c.sendWindow)
			c.sendWindow -= n
			c.smu.Unlock()
			return n, nil
		}
		ssig := c.ssig
		c.smu.Unlock()
		if err := c.await(changed, ssig, c.wdl.wait()); err != nil {
			return 0, err
		}
	}
}

func (c *Conn) await(changed <-chan struct{}, more chan struct{}, dl <-chan struct{}) error {
	select {
	case <-changed:
	case <-more:
	case <-dl:
		return os.ErrDeadlineExceeded
	}
	return nil
}

func readErr(err error) error {
	var ce *CloseError
	if errors.As(err, &ce) && ce.Code == NoError {
		if ce.Remote {
			return io.EOF
		}
		return net.ErrClosed
	}
	return err
}

func writeErr(err error) error {
	var ce *CloseError
	if errors.As(err, &ce) && ce.Code == NoError {
		return net.ErrClosed
	}
	return err
}

// Close closes the connection in order: the peer reads the data sent
// before, then io.EOF.
func (c *Conn) Close() error {
	select {
	case <-c.started:
		if c.s != nil {
			return c.s.Close()
		}
		return nil
	default:
		// Still in the handshake: cut it short.
		return c.tc.Close()
	}
}

// Ready waits until application data may flow both ways (the peer's
// attestation passed, if required, and the peer is ready) and returns nil,
// or returns the connection's error or ctx's.
func (c *Conn) Ready(ctx context.Context) error {
	s, err := c.session(ctx.Done())
	if err != nil {
		if err == os.ErrDeadlineExceeded {
			return ctx.Err()
		}
		return err
	}
	return s.WaitSend(ctx)
}

// Result is the current verdict about the peer (see [Session.Result]): nil
// before the first, while an announced posture change is being attested,
// after the connection failed, and if this endpoint requires no
// attestation; after an orderly close, the last verdict.
func (c *Conn) Result() *postauth.Result {
	select {
	case <-c.started:
		if c.s != nil {
			return c.s.Result()
		}
	default:
	}
	return nil
}

// Reattest asks the peer to attest now and returns the new verdict (see
// [Session.Reattest]); a failure closes the connection.
func (c *Conn) Reattest(ctx context.Context) (*postauth.Result, error) {
	s, err := c.session(ctx.Done())
	if err != nil {
		if err == os.ErrDeadlineExceeded {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return s.Reattest(ctx)
}

// Err returns the connection's error once it has ended (a *CloseError, or
// the transport's error), and nil while it runs.
func (c *Conn) Err() error {
	select {
	case <-c.started:
		if c.s != nil {
			return c.s.Err()
		}
		return c.setup
	default:
		return nil
	}
}

// Done is closed when the connection has ended ([Conn.Err] says why).
func (c *Conn) Done() <-chan struct{} { return c.done }

// ConnectionState returns the TLS connection state.
func (c *Conn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.tc.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.tc.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline of Read calls, waiting for attestation
// included.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the deadline of Write calls, waiting for
// attestation and flow-control credit included.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdl.set(t)
	return c.tc.SetWriteDeadline(t)
}

// held reports the application data buffered and not yet read (for
// tests: the receive side's memory).
func (c *Conn) held() int {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.rbuf.Len()
}

var _ net.Conn = (*Conn)(nil)
var _ FrameWriter = (*Conn)(nil)

// deadline is a settable deadline whose wait channel is closed when it
// passes (as net.Pipe's).
type deadline struct {
	mu     sync.Mutex // guards timer, cancel
	timer  *time.Timer
	cancel chan struct{}
}

func newDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait until it closed cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
