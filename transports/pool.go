package transports

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/postauth"
)

// Conn is one connection the Transport pins requests to: a challenge is
// answered with its exporter and the retry goes on it. *http.ClientConn
// implements it; package transports/h3 adapts HTTP/3 connections.
type Conn interface {
	// RoundTrip sends a request on this connection (waiting for a free
	// slot if needed).
	RoundTrip(*http.Request) (*http.Response, error)
	// Reserve reserves a request slot, or fails if the connection is busy
	// or closed; Release gives an unused reservation back (see
	// http.ClientConn).
	Reserve() error
	Release()
	// InFlight counts requests in flight, reservations included.
	InFlight() int
	// Err is non-nil once the connection cannot be used any more.
	Err() error
	// Close closes the connection.
	Close() error
}

var _ Conn = (*http.ClientConn)(nil)

// DialFunc opens a new connection to addr ("host:port") and returns it with
// the TLS state of its completed handshake (it must not return before the
// handshake completes: early data cannot carry attestation).
type DialFunc func(ctx context.Context, addr string) (Conn, *tls.ConnectionState, error)

// hostConns are the connections to one host.
type hostConns struct {
	conns    []*conn
	dialDone chan struct{} // closed when the dial in progress ends
}

// conn is one pinned connection and the attestation state on it.
type conn struct {
	t     *Transport
	conn  Conn
	ch    *postauth.Channel // nil if the connection cannot carry attestation
	chErr error             // why ch is nil
	addr  string
	// lastUsed is when a request last started on the connection (Unix
	// nanoseconds).
	lastUsed atomic.Int64

	mu sync.Mutex // guards everything below
	prearm
	flights
	server serverState
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// getConn returns a connection to addr, with a reserved request slot when
// possible (reserved), dialing a new one when all are busy. While a dial is
// in progress, other callers wait for it rather than dial too, so that
// concurrent HTTP/2 requests share one connection. A reservation is
// consumed by the next RoundTrip on the connection, whoever makes it.
func (t *Transport) getConn(ctx context.Context, addr string) (c *conn, reserved bool, err error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, false, ErrClosed
		}
		h := t.hosts[addr]
		if h == nil {
			h = &hostConns{}
			t.hosts[addr] = h
		}
		pick, leastBusy := h.pick(t.cfg.now(), t.base.IdleConnTimeout)
		if pick != nil {
			t.mu.Unlock()
			return pick, true, nil
		}
		if t.cfg.maxConns > 0 && len(h.conns) >= t.cfg.maxConns && leastBusy != nil {
			t.mu.Unlock()
			return leastBusy, false, nil // RoundTrip waits for a free slot
		}
		if wait := h.dialDone; wait != nil {
			t.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		done := make(chan struct{})
		h.dialDone = done
		t.mu.Unlock()

		c, err = t.dial(ctx, addr)

		t.mu.Lock()
		h.dialDone = nil
		close(done)
		if err != nil {
			t.mu.Unlock()
			return nil, false, err
		}
		if t.closed {
			t.mu.Unlock()
			c.conn.Close()
			return nil, false, ErrClosed
		}
		h.conns = append(h.conns, c)
		t.mu.Unlock()
		return c, c.conn.Reserve() == nil, nil
	}
}

// pick drops dead and long-idle connections and returns one with a slot
// reserved, or else the least busy one.
func (h *hostConns) pick(now time.Time, idleTimeout time.Duration) (pick, leastBusy *conn) {
	kept := h.conns[:0]
	for _, c := range h.conns {
		idle := now.Sub(time.Unix(0, c.lastUsed.Load()))
		if c.conn.Err() != nil || (idleTimeout > 0 && c.conn.InFlight() == 0 && idle > idleTimeout) {
			c.conn.Close()
			continue
		}
		kept = append(kept, c)
		if pick == nil && c.conn.Reserve() == nil {
			pick = c
		}
		if leastBusy == nil || c.conn.InFlight() < leastBusy.conn.InFlight() {
			leastBusy = c
		}
	}
	clear(h.conns[len(kept):])
	h.conns = kept
	return pick, leastBusy
}

// dial opens a connection with the configured DialFunc, or the base
// transport, capturing the TLS state of its handshake.
func (t *Transport) dial(ctx context.Context, addr string) (*conn, error) {
	if t.cfg.dialer != nil {
		pc, state, err := t.cfg.dialer(ctx, addr)
		if err != nil {
			return nil, err
		}
		return t.newConn(pc, state, addr), nil
	}
	var state *tls.ConnectionState
	trace := &httptrace.ClientTrace{TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
		if err == nil {
			state = &cs
		}
	}}
	cc, err := t.base.NewClientConn(httptrace.WithClientTrace(ctx, trace), "https", addr)
	if err != nil {
		return nil, err
	}
	return t.newConn(cc, state, addr), nil
}

// newConn wraps a freshly dialed connection. state is the TLS state of its
// completed handshake (nil if unknown).
func (t *Transport) newConn(pc Conn, state *tls.ConnectionState, addr string) *conn {
	c := &conn{t: t, conn: pc, addr: addr}
	// A connection that cannot carry attestation (TLS 1.2, a handshake the
	// trace did not see) still serves ordinary requests; answering a
	// challenge on it fails with chErr.
	var err error
	if state == nil {
		c.chErr = errors.New("transports: TLS handshake not observed (custom DialTLSContext?); cannot bind attestation to the connection")
	} else if c.ch, err = postauth.NewChannel(state); err != nil {
		c.chErr = fmt.Errorf("transports: %s: %w", addr, err)
	}
	c.lastUsed.Store(t.cfg.now().UnixNano())
	return c
}

// roundTrip sends r on this connection.
func (c *conn) roundTrip(r *http.Request) (*http.Response, error) {
	c.lastUsed.Store(c.t.cfg.now().UnixNano())
	return c.conn.RoundTrip(r)
}
