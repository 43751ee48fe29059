// Package postauth is the protocol core of reattest: fresh remote
// attestation bound to a live TLS 1.3 connection, requested right before a
// high-impact operation, without a new handshake.
//
// It has two layers (docs/protocol.md is the normative specification),
// kept apart in the files of this package: the RFC 9261 layer (ea_*.go)
// uses nothing of the expat layer (expat_*.go) or above, which a test
// (internal/arch) enforces.
//
//   - Layer 1, Exported Authenticators (RFC 9261): a relying party sends a
//     [Request] (CertificateRequest or ClientCertificateRequest) and the
//     peer answers with Certificate || CertificateVerify || Finished, all
//     derived from the connection's TLS exporter. [Channel] holds the
//     exporter view of one connection; [Channel.Authenticate],
//     [Channel.Refuse] and [Channel.Validate] work at this layer.
//   - Layer 2, Evidence bound to the connection (draft-fossati-seat-expat):
//     the end-entity CertificateEntry carries the Evidence in a
//     cmw_attestation extension, as a RATS CMW record. The Evidence's
//     freshness value is the binder, Hash(SPKI || TLS-Exporter("Attestation",
//     certificate_request_context, 32)), and it carries Hash(SPKI) of the
//     authenticator key. A [Responder] produces such an answer with an
//     [Attester]; a [RelyingParty] (through a [Requester]) checks it with a
//     [Verifier] and returns a [Result].
//
// Evidence formats live in their own packages, each with an Attester and a
// Verifier: postauth/softeat is a software EAT for development and tests,
// postauth/tpm a TPM 2.0 quote.
//
// # Configuration
//
// Every protocol setting is an [Option] (clock, randomness, signature
// schemes, the cmw_attestation code point, context lifetime, pending
// bound, key trust, roots, accepted formats). A [RelyingParty] and a
// [Responder] are built once with them and are immutable; the same list
// may configure both sides.
//
// # Relying party
//
// One [Requester] per connection and direction issues single-use,
// expiring requests and verifies the answers:
//
//	rp, err := postauth.NewRelyingParty(verifier) // e.g. a *softeat.Verifier
//	cs := tlsConn.ConnectionState()               // or r.TLS in an HTTP handler
//	ch, err := postauth.NewChannel(&cs)
//	requester, err := rp.NewRequester(ch, postauth.RoleClient) // the client will attest
//	req, err := requester.NewRequest(nil)
//	wire, err := req.Marshal() // send to the peer
//	...
//	res, err := requester.Verify(ctx, answer, nil)
//	if err != nil {
//		// postauth.CodeOf(err) and postauth.ReasonOf(err) say how to
//		// answer: required, stale, invalid, policy_denied, unavailable,
//		// canceled. Never a pass.
//	}
//
// A server asks RoleClient (it sends CertificateRequests); a client asks
// RoleServer (ClientCertificateRequests). The verified [*Result] is
// immutable and only this package creates one; [NewContext] and
// [FromContext] carry it to request handlers; [AppraisePosture] checks its
// posture against a posture.Policy.
//
// # Attester
//
// The peer answers on the same connection with an [Identity] (a certificate
// chain and a [crypto.Signer]) and an [Attester]:
//
//	id, err := postauth.IdentityFromTLS(&clientCert) // the TLS certificate's key
//	responder, err := postauth.NewResponder(id, attester)
//	cs := tlsConn.ConnectionState()
//	ch, err := postauth.NewChannel(&cs)
//	req, err := postauth.ParseRequest(wire)
//	answer, err := responder.Respond(ctx, ch, postauth.RoleClient, req)
//
// Respond refuses a request of the wrong type for the role (a reflected
// request) and one that did not offer cmw_attestation. To decline, send
// [Channel.Refuse]'s empty authenticator.
//
// # Threat model
//
// What a verified [Result] guarantees, given a TLS 1.3 connection whose
// exporter only the two endpoints know:
//
//   - Freshness and connection binding: the Evidence was produced for this
//     request's certificate_request_context on this connection. The binder
//     differs per connection (relay fails), the context is unpredictable,
//     single use and expires (replay fails), and the sender's role selects
//     the exporter labels (reflection fails).
//   - Key binding: the Evidence vouches for the key that signed
//     CertificateVerify (its key hash), and [RelyingParty.Verify] compares the binder
//     and the key hash the [Verifier] reports with its own values in
//     constant time, so a careless Verifier cannot pass unbound Evidence.
//   - Operation binding, when the request was issued with a binding: the
//     answer authorises that operation only.
//   - Fail closed: a missing, refused, malformed, unbound or unappraisable
//     answer is an error; a verifier that cannot decide must return
//     CodeUnavailable, never an Appraisal.
//
// Who holds the key is decided by the key trust mode ([KeyTrust]), chosen
// per relying party:
//
//   - [KeyTrustSamePeer] (the default when the peer presented a TLS
//     certificate): the authenticator key is the key that authenticated the
//     TLS connection, so identity comes from PKI and trustworthiness from
//     attestation. It is only as strong as the TLS stack's verification of
//     that certificate: with [tls.RequireAnyClientCert],
//     [tls.RequestClientCert] or InsecureSkipVerify the certificate, and so
//     the identity, is unverified.
//   - [KeyTrustChain] (the default otherwise, when Roots is set): the
//     authenticator chain verifies against configured roots.
//   - [KeyTrustAttestedKeyOnly] (explicit opt-in only): any certificate is
//     accepted because the Evidence vouches for its key. This gives up
//     identity: you learn that some attester you trust holds the key, not
//     which peer it is. Check [Result.MachineID] against the machine you
//     meant to reach (diversion attacks).
//
// With no mTLS certificate, no Roots and no opt-in, validation fails with
// [ErrNoKeyTrust]: there is no silent fallback.
//
// What it does not guarantee:
//
//   - The Evidence is only as strong as its format and its Verifier. The
//     software EAT (postauth/softeat) is signed by a key in process memory
//     and is not hardware-backed: anyone who can read that key can forge
//     Evidence. [Result.HardwareBacked] says which kind you got.
//   - Attestation describes the peer's state when it attested; max-age and
//     posture checks bound how long a result may be reused. Connection age
//     does not establish freshness.
//   - A TLS-terminating proxy breaks the binding: the exporter differs per
//     hop, so an authenticator made on the client-to-proxy connection fails
//     at the server. Attest to the party that terminates TLS, or have the
//     proxy attest itself.
//   - 0-RTT (early) data is replayable and comes before the handshake
//     completes: [NewChannel] refuses an incomplete handshake, and servers
//     must refuse early data on routes that need attestation (HTTP 425)
//     and should disable session tickets for attested connections.
//   - Only TLS 1.3 is supported: with TLS 1.2 exporters need not be unique
//     per connection. [NewChannelFromExporter] trusts its caller on this.
//   - [Channel.Validate] and [RelyingParty.Verify] do not enforce single
//     use of a context; a [Requester] does. Use them directly only with
//     your own replay protection.
//   - Error reasons ([Error.Reason], one [Reason] constant per token) are
//     safe to send to the peer; the wrapped cause ([Error.Err]) is not.
//
// Channels, Identities, Requesters and Results are safe for concurrent use.
package postauth
