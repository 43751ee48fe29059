// Package quicstream is the stream binding of reattest over raw QUIC
// (quic-go): attested QUIC connections for protocols other than HTTP/3,
// where both peers may require the other's fresh attestation before any
// application stream opens, and again periodically, on posture changes and
// on demand (docs/protocol.md section 10). It is the only package of
// the stream binding that links quic-go; the attestation state machine,
// the options and the error codes are package streams'.
//
// The client opens stream 0 as the control stream, which carries the
// binding's frames (requests, authenticators, refusals, FrameReady,
// FramePosture); application streams carry the application's bytes
// untouched, gated on the peer's attestation:
//
//	ln, _ := quicstream.Listen(":7443", serverTLS, nil, opts...) // streams.Option values
//	c, _ := ln.Accept(ctx)
//	st, _ := c.AcceptStream(ctx) // only once the peer's attestation passed
//
//	c, _ := quicstream.Dial(ctx, addr, clientTLS, nil, opts...)
//	st, _ := c.OpenStream(ctx)   // only to an attested, ready peer
//	st.Write(migrationKey)
//
// A failed, refused or missing attestation closes the connection with
// CONNECTION_CLOSE carrying the binding's error code ([streams.ErrorCode])
// and reason; every stream then fails with a *streams.CloseError.
//
// # 0-RTT
//
// 0-RTT data is replayable and would arrive before anyone attested:
// [Dial] never uses it, [Listen] and [Config] turn it off, and [Client] and
// [Server] close a connection that used it anyway (a listener of your own
// with Allow0RTT), with EARLY_DATA.
//
// # Limits
//
// Version 1 gates bidirectional streams: the peer may not open
// unidirectional streams, and datagrams are off ([Config]). Data that an
// honest peer writes right after its posture changed may reach the relying
// party before its announcement does (the control stream and the
// application streams are not ordered); the periodic interval bounds what a
// dishonest peer can do.
//
// [Channel] gives the attestation channel of any QUIC connection, for
// protocols that carry the RFC 9261 messages themselves.
package quicstream
