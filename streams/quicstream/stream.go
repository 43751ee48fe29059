package quicstream

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/reattest/reattest/streams"
)

// Stream is an application stream of an attested connection: a
// *quic.Stream whose bytes are the application's own, with Read and Write
// gated on the peer's attestation. Read delivers data only while the
// peer's attestation holds (data that arrives while a posture change the
// peer announced is being attested is held); Write sends only while it
// holds and the peer is ready. Once the connection's attestation lapsed,
// both return its *streams.CloseError.
type Stream struct {
	*quic.Stream
	c *Conn

	mu      sync.Mutex // guards rdl, wdl
	rdl     time.Time
	wdl     time.Time
	pending []byte // read while the verdict was suspended, not yet delivered
	perr    error  // the error that came with pending
}

func newStream(st *quic.Stream, c *Conn) *Stream { return &Stream{Stream: st, c: c} }

// Read reads application data from the stream (see [Stream]).
func (st *Stream) Read(p []byte) (int, error) {
	s := st.c.s
	for {
		if !s.CanDeliver() { // mutation: quic stream read gate
			if err := st.wait(s.WaitDeliver, st.readDeadline()); err != nil {
				return 0, err
			}
			continue
		}
		if len(st.pending) > 0 || st.perr != nil {
			n := copy(p, st.pending)
			st.pending = st.pending[n:]
			if len(st.pending) == 0 {
				err := st.perr
				st.pending, st.perr = nil, nil
				return n, err
			}
			return n, nil
		}
		n, err := st.Stream.Read(p)
		if err != nil && err != io.EOF {
			err = st.c.streamErr(err)
		}
		if !s.CanDeliver() {
			if serr := s.Err(); serr != nil {
				return 0, readErr(serr) // attestation lapsed: drop what came
			}
			// Arrived while an announced posture change is being
			// attested: hold it until the new verdict.
			st.pending, st.perr = append(st.pending[:0], p[:n]...), err
			continue
		}
		return n, err
	}
}

// Write writes application data to the stream (see [Stream]).
func (st *Stream) Write(p []byte) (int, error) {
	s := st.c.s
	if !s.CanSend() { // mutation: quic stream write gate
		if err := st.wait(s.WaitSend, st.writeDeadline()); err != nil {
			return 0, err
		}
	}
	n, err := st.Stream.Write(p)
	if err != nil {
		err = st.c.streamErr(err)
	}
	return n, err
}

// SetReadDeadline sets the deadline of Read, waiting for attestation
// included.
func (st *Stream) SetReadDeadline(t time.Time) error {
	st.mu.Lock()
	st.rdl = t
	st.mu.Unlock()
	return st.Stream.SetReadDeadline(t)
}

// SetWriteDeadline sets the deadline of Write, waiting for attestation
// included.
func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.mu.Lock()
	st.wdl = t
	st.mu.Unlock()
	return st.Stream.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines.
func (st *Stream) SetDeadline(t time.Time) error {
	st.SetReadDeadline(t)
	return st.SetWriteDeadline(t)
}

func (st *Stream) readDeadline() time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.rdl
}

func (st *Stream) writeDeadline() time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.wdl
}

func (st *Stream) wait(w func(context.Context) error, dl time.Time) error {
	ctx := st.c.qc.Context() // not the stream's: it ends when our write side closes
	if !dl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	err := w(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return os.ErrDeadlineExceeded
	}
	return readErr(err)
}

// readErr maps an orderly close to io.EOF (the peer's) or net.ErrClosed
// (ours).
func readErr(err error) error {
	var ce *streams.CloseError
	if errors.As(err, &ce) && ce.Code == streams.NoError {
		if ce.Remote {
			return io.EOF
		}
		return net.ErrClosed
	}
	return err
}
