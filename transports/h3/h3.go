// Package h3 is the client side of reattest over HTTP/3 and QUIC. It and
// its server counterpart, middleware/h3attest, are the packages of the
// module that import quic-go, so that users of package transports and
// middleware never link it.
//
// [NewTransport] returns a [transports.Transport] whose pinned connections
// are HTTP/3 over QUIC; everything else (challenges answered on the same
// connection, shared attestation, pre-arming, server attestation) is the
// same as over HTTP/1.1 and HTTP/2. [Dialer] opens such connections for
// [transports.WithDialer]. It returns only once the QUIC handshake is
// complete: a 0-RTT request is replayable and never carries attestation.
//
// Raw QUIC: [Channel] gives the attestation channel of a QUIC connection
// once its handshake is complete, for protocols other than HTTP/3. For
// attested raw QUIC connections with the whole protocol (mutual and
// periodic attestation, gated streams), use package streams/quicstream.
package h3

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/transports"
)

// NewTransport returns a Transport that sends https requests over HTTP/3
// with tlsConf (QUIC is always TLS 1.3). quicConf may be nil.
func NewTransport(tlsConf *tls.Config, quicConf *quic.Config, opts ...transports.Option) (*transports.Transport, error) {
	return transports.NewTransport(nil, append([]transports.Option{transports.WithDialer(Dialer(tlsConf, quicConf))}, opts...)...)
}

// Dialer returns a DialFunc that opens HTTP/3 connections. It returns only
// once the QUIC handshake is complete (no 0-RTT).
func Dialer(tlsConf *tls.Config, quicConf *quic.Config) transports.DialFunc {
	if tlsConf == nil {
		tlsConf = &tls.Config{}
	}
	tc := http3.ConfigureTLSConfig(tlsConf.Clone())
	return func(ctx context.Context, addr string) (transports.Conn, *tls.ConnectionState, error) {
		qc, err := quic.DialAddr(ctx, addr, tc, quicConf)
		if err != nil {
			return nil, nil, err
		}
		st := qc.ConnectionState().TLS
		cc := (&http3.Transport{}).NewClientConn(qc)
		return &conn{qc: qc, cc: cc}, &st, nil
	}
}

// conn adapts an HTTP/3 client connection to transports.Conn. QUIC
// multiplexes requests on streams, so a reservation always succeeds while
// the connection is open.
type conn struct {
	qc       *quic.Conn
	cc       *http3.ClientConn
	inFlight atomic.Int64
}

var _ transports.Conn = (*conn)(nil)

func (c *conn) RoundTrip(r *http.Request) (*http.Response, error) {
	c.inFlight.Add(1)
	resp, err := c.cc.RoundTrip(r)
	if err != nil {
		c.inFlight.Add(-1)
		return nil, err
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: func() { c.inFlight.Add(-1) }}
	return resp, nil
}

func (c *conn) Reserve() error { return c.Err() }
func (c *conn) Release()       {}
func (c *conn) InFlight() int  { return int(c.inFlight.Load()) }

func (c *conn) Err() error {
	select {
	case <-c.qc.Context().Done():
		if err := context.Cause(c.qc.Context()); err != nil {
			return err
		}
		return errors.New("h3: connection closed")
	default:
		return nil
	}
}

func (c *conn) Close() error { return c.qc.CloseWithError(0, "") }

// doneBody calls done once, when the body is closed.
type doneBody struct {
	io.ReadCloser
	once atomic.Bool
	done func()
}

func (b *doneBody) Close() error {
	if b.once.CompareAndSwap(false, true) {
		b.done()
	}
	return b.ReadCloser.Close()
}

// Channel waits for the QUIC handshake of c to complete and returns its
// attestation channel (both endpoints derive the same exporter values).
func Channel(ctx context.Context, c *quic.Conn) (*postauth.Channel, error) {
	select {
	case <-c.HandshakeComplete():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	st := c.ConnectionState().TLS
	return postauth.NewChannel(&st)
}
