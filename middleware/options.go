package middleware

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/reattest/reattest/postauth"
)

// Defaults.
const (
	DefaultMaxAge        = 5 * time.Minute
	DefaultMaxBody       = 1 << 20
	DefaultVerifyTimeout = 5 * time.Second
	DefaultRetryAfter    = 5 * time.Second
	DefaultFallbackSize  = 10_000
	DefaultFallbackIdle  = 10 * time.Minute
	// DefaultServerAttestationRate and DefaultServerAttestationBurst bound
	// the server-attests answers of the whole server.
	DefaultServerAttestationRate  = 50.0
	DefaultServerAttestationBurst = 100
	// serverConnRate and serverConnBurst bound them per connection.
	serverConnRate  = 1.0
	serverConnBurst = 5
)

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

// config holds every setting of a Guard, each with its default set by
// newConfig.
type config struct {
	routes        []routeSpec
	protocol      []postauth.Option // relying-party settings of every route
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
	observe       func(context.Context, Decision)
	// Scale-out (coordinate.go, limit.go).
	coordinator     Coordinator
	coordinatorDown CoordinatorDown
	limits          Limits
}

func newConfig(opts []Option) config {
	c := config{
		now:           time.Now,
		verifyTimeout: DefaultVerifyTimeout,
		retryAfter:    DefaultRetryAfter,
		discovery:     true,
		fallbackSize:  DefaultFallbackSize,
		fallbackIdle:  DefaultFallbackIdle,
		serverRate:    DefaultServerAttestationRate,
		serverBurst:   DefaultServerAttestationBurst,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithRoute marks the routes matching pattern as high-impact, with policy r.
// pattern uses [http.ServeMux] syntax ("POST /v1/payments",
// "PUT /v1/config/{name}"). The middleware's routing must agree with your
// router's: where it might not, wrap the handler itself with [Guard.Handler].
func WithRoute(pattern string, r Route) Option {
	return optionFunc(func(c *config) { c.routes = append(c.routes, routeSpec{pattern, r}) })
}

// WithProtocol sets the relying party's protocol settings for every route
// (see [postauth.Option]): accepted Evidence formats
// ([postauth.WithFormats]), key trust ([postauth.WithKeyTrust],
// [postauth.WithRoots]), the cmw_attestation code point, offered signature
// schemes, context lifetime and the bound on pending challenges per
// connection. The Guard's clock ([WithClock]) comes first, so these may
// override it. Without them a route trusts only the key of the client's
// verified TLS certificate and fails closed without one.
func WithProtocol(opts ...postauth.Option) Option {
	o := slices.Clone(opts)
	return optionFunc(func(c *config) { c.protocol = append(c.protocol, o...) })
}

// WithClock sets the clock of the Guard and of its relying parties (cache
// expiry, context expiry, chain validation). Nil means time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// WithVerifyTimeout bounds Evidence verification and appraisal. A verdict
// that is not reached in time is never a pass: the request gets 503 at the
// deadline, whatever the verifier does later. Zero or less means
// DefaultVerifyTimeout.
func WithVerifyTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.verifyTimeout = d
		}
	})
}

// WithRetryAfter sets the Retry-After of 503 responses. Zero or less means
// DefaultRetryAfter.
func WithRetryAfter(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.retryAfter = d
		}
	})
}

// WithLogger sets the logger. Logs name routes, codes and reasons, never
// Evidence. The normal challenges log at DEBUG, refusals at INFO or WARN,
// misconfiguration at ERROR, verified attestations at INFO. Nil means no
// logging.
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
// connection and for the whole server ([WithServerAttestationLimit]).
// formats names the Evidence media types in the discovery document.
func WithServerAttestation(id *postauth.Identity, a postauth.Attester, formats ...string) Option {
	f := slices.Clone(formats)
	return optionFunc(func(c *config) { c.serverID, c.serverAtt, c.serverFormats = id, a, f })
}

// WithServerAttestationLimit bounds the server-attests answers of the whole
// server: at most burst at once, refilled at perSecond. Each connection is
// also limited to 5 at once and one per second. Requests over the limit get
// no Attestation header (the client then refuses to send its critical
// request). Values of zero or less mean DefaultServerAttestationRate and
// DefaultServerAttestationBurst.
func WithServerAttestationLimit(perSecond float64, burst int) Option {
	return optionFunc(func(c *config) {
		if perSecond > 0 && burst > 0 {
			c.serverRate, c.serverBurst = perSecond, burst
		}
	})
}

// WithDiscovery turns the GET /.well-known/reattest document on (default)
// or off.
func WithDiscovery(on bool) Option {
	return optionFunc(func(c *config) { c.discovery = on })
}

// WithFallbackCache bounds the state kept for connections when
// [ConfigureServer] is not installed: at most size connections, each
// forgotten after idle without a protected request (a connection without a
// verdict is forgotten once its challenges expire, after the context
// lifetime). An entry costs at most about 4 KiB, so the default of 10 000
// entries bounds the cache at about 40 MiB. Values of zero or less mean
// DefaultFallbackSize and DefaultFallbackIdle.
func WithFallbackCache(size int, idle time.Duration) Option {
	return optionFunc(func(c *config) {
		if size > 0 {
			c.fallbackSize = size
		}
		if idle > 0 {
			c.fallbackIdle = idle
		}
	})
}

// WithObserver calls f for every decision on a high-impact route. f runs on
// the request's goroutine before the response is written (refusals) or the
// handler runs (passes); it must be quick. Nil means none.
func WithObserver(f func(ctx context.Context, d Decision)) Option {
	return optionFunc(func(c *config) { c.observe = f })
}
