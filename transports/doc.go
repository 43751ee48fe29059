// Package transports is the client side of reattest: an [http.RoundTripper]
// that answers attestation challenges on the very connection that carries
// the retried request, for HTTP/1.1 and HTTP/2.
//
//	tracker, _ := posture.NewTracker()
//	attester, _ := softeat.NewAttester(key, softeat.WithPosture(tracker))
//	id, _ := postauth.IdentityFromTLS(&clientCert)
//	tr, _ := transports.NewTransport(&http.Transport{TLSClientConfig: tlsConfig},
//		transports.WithAttester(id, attester),
//		transports.WithAttestTo("gateway.example"), // who may receive Evidence
//		transports.WithPosture(tracker))
//	client := &http.Client{Transport: tr}
//
// The Transport keeps its own pool of connections, one [http.ClientConn]
// each, on top of the base [http.Transport] (which still dials, configures
// TLS and honours proxies): a challenge is answered with the exporter of the
// connection it arrived on, and the retry is sent on that same connection.
// A request is retried at most once, with its body replayed from
// Request.GetBody; a body that cannot be replayed gives
// [ErrBodyNotReplayable] rather than a silent second send. Concurrent
// requests on one connection challenged in connection mode share one
// attestation. Pre-armed Attestation-Requests from the server are used for
// routes the server challenged before, so that later attestations need no
// extra round trip. The posture head of a [PostureSource] goes out as the
// Attestation-Posture hint; when it changes the server challenges again.
//
// The reverse direction: [WithServerAttestation] makes the transport a
// relying party for the server. Before a request the predicate marks as
// critical, it obtains a fresh server authenticator on the connection that
// will carry the request (asking on /.well-known/reattest) and validates
// it; until that holds, the request is not sent.
//
// Requests that are not https pass to the base transport untouched.
//
// # Results and errors
//
// Like every RoundTripper, the Transport returns responses whatever their
// status: a final refusal (a second 401, a 403 policy denial, a 503) is a
// response, and [ResponseError] decodes its problem body into a
// [*RefusalError] (reason, violations) that works with [errors.As] and
// postauth.CodeOf. [WithObserver] reports each [Activity] (challenged,
// attested, shared, server-attested) with its [Outcome].
package transports
