// Package h3attest is the server side of reattest over HTTP/3: the
// middleware runs unchanged behind an [http3.Server], which fills r.TLS from
// the QUIC connection, and [ConfigureServer] gives every QUIC connection its
// own attestation state and turns 0-RTT off. A request that arrives as
// 0-RTT data can be replayed and reaches handlers with
// r.TLS.HandshakeComplete false; the middleware answers such requests on
// high-impact routes with 425 Too Early, but it is better not to accept
// them at all. It lives in its own package so that users of package
// middleware never link quic-go; the client side is transports/h3.
package h3attest

import (
	"context"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/reattest/reattest/middleware"
)

// ConfigureServer prepares srv for attestation: each QUIC connection gets
// its own attestation state (ConnContext; it dies with the connection), and
// 0-RTT is turned off in srv.QUICConfig. Existing ConnContext hooks run
// first. Call it before the server starts. srv.QUICConfig applies to
// listeners the server creates (ListenAndServe, Serve): a listener you make
// yourself for ServeListener needs its own quic.Config with Allow0RTT false.
func ConfigureServer(srv *http3.Server) {
	prev := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c *quic.Conn) context.Context {
		if prev != nil {
			ctx = prev(ctx, c)
		}
		return middleware.ContextWithConnState(ctx)
	}
	qc := &quic.Config{}
	if srv.QUICConfig != nil {
		qc = srv.QUICConfig.Clone()
	}
	qc.Allow0RTT = false
	srv.QUICConfig = qc
}
