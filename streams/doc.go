// Package streams gives attested connections for protocols other than
// HTTP: a TLS 1.3 connection (this package) or a QUIC connection
// (package streams/quicstream) on which both peers may require the other's
// fresh attestation before any application data flows, and again
// periodically, when the peer announces a posture change, and on demand.
// The attestation is RFC 9261 Exported Authenticators carrying RATS
// Evidence (draft-fossati-seat-expat), bound to the connection's exporter,
// with the same Attester, Verifier, RelyingParty and posture policy types
// as the HTTP binding (docs/protocol.md section 10 specifies the wire
// format: ALPN "reattest-stream/1", the frames, the state machine and the
// error codes).
//
// # Use
//
// Each endpoint says what it requires and what it proves:
//
//	opts := []streams.Option{
//		streams.WithRelyingParty(rp),                 // require the peer's attestation (rp: its Verifier, key trust)
//		streams.WithPosturePolicy(policy),            // and appraise its posture
//		streams.WithAttester(id, attester),           // attest when the peer asks
//		streams.WithPosture(tracker),                 // announce our posture changes
//		streams.WithInterval(time.Minute),            // re-attest the peer every minute
//	}
//	ln, _ := streams.Listen("tcp", ":7443", serverTLS, opts...)
//	c, _ := ln.AcceptConn()
//	// or: c, _ := streams.Dial(ctx, "tcp", addr, clientTLS, opts...)
//	if err := c.Ready(ctx); err != nil { ... } // both verdicts in
//	res := c.Result()                          // the peer's current verdict
//	c.Write(migrationKey)                      // only ever to an attested peer
//
// A [Conn] is a net.Conn. Reads deliver data only while the peer's
// attestation holds; writes reach only a peer whose attestation passed.
// Data that arrives before the first verdict is held (or, with [Refuse],
// closes the connection), and never delivered unverified. A refusal, a
// failed verification or appraisal, or an answer that misses the deadline
// closes the connection with an error code ([ErrorCode]): reads and writes
// then return a *[CloseError], on both sides.
//
// # Guarantees
//
//   - Every verdict is fresh and bound to this connection: a new request
//     context each time, consumed by its answer (replay fails), Evidence
//     bound to the connection's exporter (relay fails), answered by the
//     role that must answer (reflection fails).
//   - Between verdicts, data flows on the latest one; a periodic request
//     that is not answered within the answer deadline ends the connection,
//     so no verdict is relied on for longer than the interval, the answer
//     deadline and the verify timeout together.
//   - A posture announcement suspends the verdict until the new posture is
//     attested: no data is delivered or sent meanwhile.
//   - Bounded memory: every frame has a size limit checked before it is
//     read, the TLS binding's flow control bounds held and unread data to
//     [InitialWindow], and at most [MaxQueuedRequests] requests of the peer
//     wait for an answer.
//   - 0-RTT data is never accepted (TLS 1.3 over TCP: no resumption at
//     all; QUIC: see streams/quicstream).
//
// # Limits
//
// Attestation covers the peer's state when it produced the Evidence. An
// honest peer announces posture changes at once; a compromised one may not,
// and then only the interval bounds how long an old verdict is relied on.
// Software Evidence (postauth/softeat) is not hardware-backed. Over TLS, an
// application that stops reading does not stall attestation (control
// frames are not flow-controlled), but the peer's writes wait.
//
// Bindings for other transports use a [Session] directly.
package streams
