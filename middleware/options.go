package middleware

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/reattest/reattest/postauth"
)

// Mode is a route's freshness mode.
type Mode uint8

const (
	// ModeConnection (the default): one attestation per connection, reused
	// for this route until MaxAge passes, the verifier's expiry passes, or
	// the client's posture hint changes.
	ModeConnection Mode = iota
	// ModeOperation: every request needs its own authenticator, whose
	// context binds the method, the request target and a digest of the
	// body. Nothing is reused.
	ModeOperation
)

func (m Mode) String() string {
	if m == ModeOperation {
		return "operation"
	}
	return "connection"
}

// Defaults.
const (
	DefaultMaxAge        = 5 * time.Minute
	DefaultMaxBody       = 1 << 20
	DefaultVerifyTimeout = 5 * time.Second
	DefaultRetryAfter    = 5 * time.Second
	DefaultFallbackSize  = 10_000
	DefaultFallbackIdle  = 10 * time.Minute
	defaultServerRate    = 1.0 // server attestations per second per connection
	defaultServerBurst   = 5
	// DefaultServerAttestationRate and DefaultServerAttestationBurst bound
	// the server-attests answers of the whole server.
	DefaultServerAttestationRate  = 50.0
	DefaultServerAttestationBurst = 100
	defaultProblemTypeURI         = "tag:github.com,2026:reattest/problem/"
)

// Route is the attestation policy of a high-impact route. The zero value
// is valid: connection freshness with DefaultMaxAge, the Guard's verifier,
// formats and key trust, no posture policy.
type Route struct {
	// Mode is the freshness mode.
	Mode Mode
	// MaxAge bounds how long a verified attestation serves this route in
	// connection mode, counted from the Evidence's attestation time. Zero
	// means DefaultMaxAge. Within MaxAge a compromised agent keeps its
	// verdict unless its posture hint (or the verifier's expiry) says
	// otherwise: choose ModeOperation where that window is too long.
	MaxAge time.Duration
	// Verifier overrides the Guard's verifier for this route.
	Verifier postauth.Verifier
	// Formats overrides the Guard's accepted Evidence media types.
	Formats []string
	// Validate overrides the Guard's authenticator checks (key trust).
	Validate *postauth.ValidateOptions
	// Appraise, if set, runs on every newly verified Result for this route
	// (posture policy: see posture.Policy.Appraise). An error denies the
	// request, mapped by its code like any other: CodePolicyDenied and
	// errors without a code give 403 (naming the violations),
	// CodeUnavailable and CodeCanceled 503, and CodeRequired, CodeStale or
	// CodeInvalid 401 with a new challenge.
	Appraise func(ctx context.Context, res *postauth.Result) error
	// MaxBody bounds the body read to compute the operation digest
	// (ModeOperation). Zero means DefaultMaxBody; larger bodies get 413.
	MaxBody int64
	// PreArm adds a fresh Attestation-Request to the responses of this
	// route, so the client's next attestation needs no extra round trip.
	PreArm bool
}

// ErrorHandler writes the response for a request that attestation stopped.
// err is a *postauth.Error (see [postauth.CodeOf]); status and the headers
// already set (WWW-Authenticate, Attestation-Request, Retry-After) are the
// middleware's choice, which the handler may keep or change. It must not
// let the request through.
type ErrorHandler func(w http.ResponseWriter, r *http.Request, status int, err error)

// Option configures a [Guard].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type routeSpec struct {
	pattern string
	route   Route
}

type config struct {
	routes        []routeSpec
	formats       []string
	validate      postauth.ValidateOptions
	requester     postauth.RequesterConfig
	now           func() time.Time
	verifyTimeout time.Duration
	retryAfter    time.Duration
	log           *slog.Logger
	errorHandler  ErrorHandler
	serverID      *postauth.Identity
	serverAtt     postauth.Attester
	serverFormats []string
	discovery     bool
	fallbackSize  int
	fallbackIdle  time.Duration
	serverRate    float64
	serverBurst   int
	observe       func(context.Context, Event)
}

// WithRoute marks the routes matching pattern as high-impact, with policy r.
// pattern uses [http.ServeMux] syntax ("POST /v1/payments",
// "PUT /v1/config/{name}"). The middleware's routing must agree with your
// router's: where it might not, wrap the handler itself with [Guard.Handler].
func WithRoute(pattern string, r Route) Option {
	return optionFunc(func(c *config) { c.routes = append(c.routes, routeSpec{pattern, r}) })
}

// WithFormats sets the accepted Evidence media types for all routes (nil:
// whatever the verifier accepts).
func WithFormats(mediaTypes ...string) Option {
	return optionFunc(func(c *config) { c.formats = mediaTypes })
}

// WithValidateOptions sets how authenticators are checked, in particular
// the key trust mode. The default trusts only the key of the client's TLS
// certificate (mutual TLS) and fails closed without one.
func WithValidateOptions(v postauth.ValidateOptions) Option {
	return optionFunc(func(c *config) { c.validate = v })
}

// WithRequesterConfig sets the challenge bookkeeping per connection: context
// lifetime, pending bound, randomness and clock.
func WithRequesterConfig(rc postauth.RequesterConfig) Option {
	return optionFunc(func(c *config) { c.requester = rc })
}

// WithClock sets the clock used for expiry (tests). Nil means time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) { c.now = now })
}

// WithVerifyTimeout bounds Evidence verification (and the Appraise hook).
// A timeout is never a pass: the request gets 503. Zero means
// DefaultVerifyTimeout.
func WithVerifyTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.verifyTimeout = d })
}

// WithRetryAfter sets the Retry-After of 503 responses. Zero means
// DefaultRetryAfter.
func WithRetryAfter(d time.Duration) Option {
	return optionFunc(func(c *config) { c.retryAfter = d })
}

// WithLogger sets the logger. Logs name routes, codes and reasons, never
// Evidence. Nil means no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.log = l })
}

// WithErrorHandler overrides how refused requests are answered.
func WithErrorHandler(h ErrorHandler) Option {
	return optionFunc(func(c *config) { c.errorHandler = h })
}

// WithServerAttestation lets the server attest itself (the server-attests
// direction): a request carrying an Attestation-Request with a
// ClientCertificateRequest gets an Attestation response header with an
// authenticator made with id (use [postauth.IdentityFromTLS] with the
// server's TLS certificate, so clients can check it is the key they
// connected to) and Evidence from a. Answers are rate-limited per
// connection. formats only names the Evidence media types in the discovery
// document.
func WithServerAttestation(id *postauth.Identity, a postauth.Attester, formats ...string) Option {
	return optionFunc(func(c *config) { c.serverID, c.serverAtt, c.serverFormats = id, a, formats })
}

// WithServerAttestationLimit bounds the server-attests answers of the whole
// server: at most burst at once, refilled at perSecond. Each connection is
// also limited to 5 at once and one per second. Requests over the limit get
// no Attestation header (the client then refuses to send its critical
// request). Zero values mean DefaultServerAttestationRate and
// DefaultServerAttestationBurst.
func WithServerAttestationLimit(perSecond float64, burst int) Option {
	return optionFunc(func(c *config) { c.serverRate, c.serverBurst = perSecond, burst })
}

// WithDiscovery turns the GET /.well-known/reattest document on (default)
// or off.
func WithDiscovery(on bool) Option {
	return optionFunc(func(c *config) { c.discovery = on })
}

// WithFallbackCache bounds the state kept for connections when
// [ConfigureServer] is not installed: at most size connections, each
// forgotten after idle without a protected request. Zero values mean
// DefaultFallbackSize and DefaultFallbackIdle.
func WithFallbackCache(size int, idle time.Duration) Option {
	return optionFunc(func(c *config) { c.fallbackSize, c.fallbackIdle = size, idle })
}
