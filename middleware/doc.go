// Package middleware is the server side of reattest: net/http middleware
// that demands fresh remote attestation, bound to the live TLS connection,
// right before high-impact requests (a payment, a configuration change, a
// privileged tool call), and caches the verdict per connection.
//
// Mark routes as high-impact and wrap your handler:
//
//	guard, err := middleware.New(verifier,
//		middleware.WithRoute("POST /v1/payments", middleware.Route{Mode: middleware.ModeOperation, Posture: policy}),
//		middleware.WithRoute("PUT /v1/config", middleware.Route{MaxAge: time.Minute}),
//	)
//	srv := &http.Server{Handler: guard.Middleware(mux), TLSConfig: tlsConfig}
//	middleware.ConfigureServer(srv) // per-connection state, dropped on close
//
// Routes not marked are untouched. A request to a marked route without a
// valid attestation for its connection gets 401 with
// `WWW-Authenticate: Attestation error="attestation_required"` and an
// Attestation-Request header; the client (package transports) answers on
// the same connection with an Attestation header and the handler runs. The
// handler finds the verified [postauth.Result] with [postauth.FromContext].
// Policy denials give 403 with an application/problem+json body naming the
// violated items; a verifier that is down or too slow gives 503 with
// Retry-After; TLS early data gives 425. One decision table maps every
// reason to its status, challenge, problem type, observer outcome and log
// level (docs/protocol.md, section 7); the wire format is specified in
// docs/protocol.md ("HTTP binding").
//
// # Configuration
//
// [New] takes the Verifier and [Option] values; every relying-party
// setting of the protocol (formats, key trust, code point, context
// lifetime) goes through [WithProtocol] as postauth options, in one place.
// A [Route] is plain data: the policy of one high-impact route. Protect a
// handler directly with [Guard.Handler] when your router might disagree
// with ServeMux patterns; both may be combined, and a request is then
// verified once.
//
// # Many replicas
//
// Verdicts stay per connection, in each replica; what a replica learns
// reaches the others through a [Coordinator] ([WithCoordinator]; package
// middleware/redisstate implements it over Redis): revocations by attester
// [Identity] ([Guard.Revoke]), invalidated verdicts when a replica sees an
// attester's posture change or a policy deny it, versioned
// [PolicyDocument]s, rate limits shared by every replica ([WithLimits]) and
// an audit trail ([Auditor]). The Guard keeps a local view that the
// Coordinator updates, so a cached verdict is served without I/O; while the
// Coordinator is out of sync no cached verdict is trusted
// ([WithCoordinatorDown]). See docs/scale-out.md.
//
// # Threat model
//
// What the middleware guarantees on a marked route: the handler runs only
// after the peer of this very TLS connection proved, with Evidence that a
// trusted verifier accepted and that is bound to this connection's exporter
// (so it cannot be relayed from another connection or replayed), that it
// holds the key the configured key trust accepts (by default the key of
// its verified TLS client certificate) and, with an Appraise hook, that its
// posture satisfies the route's policy. Missing, stale, unbound, invalid or
// indeterminate attestation never lets the request through.
//
// What it does not guarantee:
//
//   - Connection mode (the default) reuses a verdict for the connection
//     until MaxAge passes, the verifier's expiry passes, or the client's
//     Attestation-Posture hint changes. Within that window the agent may
//     change state without telling; the hint is only as honest as the agent
//     runtime. Where that window is too long, use ModeOperation: every
//     request then carries its own authenticator whose context binds the
//     method, request target and body digest, and the fresh Evidence carries
//     the real posture whatever the hint says.
//   - A TLS-terminating proxy between client and server breaks the binding
//     (the exporter differs per hop): attestation then fails, closed.
//   - Pattern routes ([WithRoute]) rely on the middleware matching requests
//     as your router does. If your router can route a request that
//     [http.ServeMux] would not match to a protected handler, wrap that
//     handler with [Guard.Handler] (or use the gin adapter's Protect)
//     instead: wrapping cannot be bypassed by routing.
//   - The software EAT format is not hardware-backed: it proves what a
//     process holding the attestation key says, for development and tests.
//   - Without [ConfigureServer], per-connection state lives in a bounded
//     cache keyed by an exporter-derived connection id; under more distinct
//     connections than its size, verdicts are evicted and clients are
//     challenged again (never let through).
//
// Memory stays bounded under floods: each connection keeps at most
// postauth.DefaultMaxPending unanswered challenges (connection-mode
// challenges are shared by concurrent requests), one cached result per
// route, and the state dies with the connection.
package middleware
