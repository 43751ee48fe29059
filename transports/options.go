package transports

import (
	"net/http"
	"strings"
	"time"

	"github.com/reattest/reattest/postauth"
)

// PostureSource is the agent posture the transport reports: its current
// head, sent as the Attestation-Posture hint, and change notifications.
// *posture.Tracker implements it.
type PostureSource interface {
	Head() []byte
	Subscribe(f func(head []byte)) (cancel func())
}

// EventKind names what an [Event] reports.
type EventKind uint8

// Event kinds.
const (
	// EventChallenged: the server answered 401 with a challenge.
	EventChallenged EventKind = iota + 1
	// EventAttested: the transport answered a challenge (or a pre-armed
	// request, Proactive) with an authenticator.
	EventAttested
	// EventShared: the request rode on another request's attestation of
	// the same connection.
	EventShared
	// EventServerAttested: the server's authenticator was validated.
	EventServerAttested
)

// Event reports what the transport did for a request, for logs, demos and
// tests. It carries no Evidence.
type Event struct {
	Kind   EventKind
	Method string
	URL    string
	// Mode is the freshness mode, "connection" or "operation".
	Mode string
	// Reason is the challenge's error code (EventChallenged, EventAttested).
	Reason string
	// Proactive: the transport answered a pre-armed request, without a 401
	// first (EventAttested).
	Proactive bool
	// Result is the server's verified attestation (EventServerAttested).
	Result *postauth.Result
	// Duration is how long attesting and the retry took (EventAttested).
	Duration time.Duration
}

// Option configures a [Transport].
type Option func(*Transport)

// WithAttester makes the transport answer attestation challenges with
// authenticators signed by id and Evidence from a. Use
// [postauth.IdentityFromTLS] with the client's TLS certificate when the
// server trusts the TLS peer's key (the default on the server side).
func WithAttester(id *postauth.Identity, a postauth.Attester, opts *postauth.RespondOptions) Option {
	return func(t *Transport) {
		t.id, t.att = id, a
		if opts != nil {
			t.respond = *opts
		}
	}
}

// WithAttestTo names the servers that may receive the agent's Evidence and
// posture hint: hosts as in URL.Host ("gateway.example", which matches any
// port, or "gateway.example:8443"). Evidence reveals the agent's machine id
// and posture (model, tools, permissions, flags): a challenge from any other
// server is not answered (its 401 is returned as is) and requests to other
// servers carry no posture hint. WithAttester needs WithAttestTo or
// WithAttestFor.
func WithAttestTo(hosts ...string) Option {
	return func(t *Transport) {
		allowed := make(map[string]bool, len(hosts))
		for _, h := range hosts {
			allowed[strings.ToLower(h)] = true
		}
		t.attestFor = func(r *http.Request) bool {
			h := strings.ToLower(r.URL.Host)
			return allowed[h] || allowed[strings.ToLower(r.URL.Hostname())]
		}
	}
}

// WithAttestFor is WithAttestTo with a predicate: Evidence and the posture
// hint go only with requests for which f returns true.
func WithAttestFor(f func(*http.Request) bool) Option {
	return func(t *Transport) { t.attestFor = f }
}

// WithPosture sends src's head as the Attestation-Posture hint on every
// request to a server allowed to receive Evidence (WithAttestTo), and
// treats a change as a reason to attest again.
func WithPosture(src PostureSource) Option {
	return func(t *Transport) { t.posture = src }
}

// WithServerAttestation makes the transport a relying party for the
// server (the server-attests direction): before sending a request for which
// require returns true, it obtains and validates a fresh server
// authenticator on the connection that will carry the request (with
// policy), unless one validated within maxAge exists. Until that holds,
// the request is not sent. The policy's default key trust requires the
// server's authenticator key to be its TLS certificate's key. A maxAge of 0
// attests the server before every critical request.
func WithServerAttestation(require func(*http.Request) bool, policy *postauth.Policy, maxAge time.Duration) Option {
	return func(t *Transport) { t.requireServer, t.serverPolicy, t.serverMaxAge = require, policy, maxAge }
}

// WithProactive marks requests (predicate) for which the transport attaches
// an attestation answering a pre-armed request, when it holds one, instead
// of waiting for a challenge. Routes the server challenged before are
// remembered without it.
func WithProactive(f func(*http.Request) bool) Option {
	return func(t *Transport) { t.proactive = f }
}

// WithObserver calls f for each attestation event. f must be quick.
func WithObserver(f func(Event)) Option {
	return func(t *Transport) { t.observe = f }
}

// WithClock sets the clock (tests). Nil means time.Now.
func WithClock(now func() time.Time) Option {
	return func(t *Transport) { t.now = now }
}

// WithMaxConnsPerHost bounds the connections per host (0: no bound). When
// reached, requests queue on the least busy connection.
func WithMaxConnsPerHost(n int) Option {
	return func(t *Transport) { t.maxConns = n }
}

// WithDialer makes the Transport open its connections with d instead of the
// base transport's NewClientConn (for example HTTP/3 connections, see
// package transports/h3). The base transport still carries requests that
// are not https.
func WithDialer(d DialFunc) Option {
	return func(t *Transport) { t.dialer = d }
}
