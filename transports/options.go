package transports

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// Option configures a [Transport].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config holds every setting of a Transport, each with its default set by
// newConfig.
type config struct {
	id        *postauth.Identity
	att       postauth.Attester
	protocol  []postauth.Option
	attestFor func(*http.Request) bool
	posture   posture.Source
	server    *serverAttestation
	proactive func(*http.Request) bool
	dialer    DialFunc
	observe   func(Activity)
	now       func() time.Time
	maxConns  int
}

func newConfig(opts []Option) config {
	c := config{now: time.Now}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithAttester makes the transport answer attestation challenges with
// authenticators signed by id and Evidence from a (see
// [postauth.NewResponder]; opts set its protocol settings, such as the CMW
// encoding or the cmw_attestation code point). Use
// [postauth.IdentityFromTLS] with the client's TLS certificate when the
// server trusts the TLS peer's key (the default on the server side).
// WithAttester needs [WithAttestTo] or [WithAttestFor].
func WithAttester(id *postauth.Identity, a postauth.Attester, opts ...postauth.Option) Option {
	o := slices.Clone(opts)
	return optionFunc(func(c *config) { c.id, c.att, c.protocol = id, a, o })
}

// WithAttestTo names the servers that may receive the agent's Evidence and
// posture hint: hosts as in URL.Host ("gateway.example", which matches any
// port, or "gateway.example:8443"). Evidence reveals the agent's machine id
// and posture (model, tools, permissions, flags): a challenge from any other
// server is not answered (its 401 is returned as is) and requests to other
// servers carry no posture hint.
func WithAttestTo(hosts ...string) Option {
	allowed := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		allowed[strings.ToLower(h)] = true
	}
	return optionFunc(func(c *config) {
		c.attestFor = func(r *http.Request) bool {
			h := strings.ToLower(r.URL.Host)
			return allowed[h] || allowed[strings.ToLower(r.URL.Hostname())]
		}
	})
}

// WithAttestFor is [WithAttestTo] with a predicate: Evidence and the
// posture hint go only with requests for which f returns true.
func WithAttestFor(f func(*http.Request) bool) Option {
	return optionFunc(func(c *config) { c.attestFor = f })
}

// WithPosture sends src's head as the Attestation-Posture hint on every
// request to a server allowed to receive Evidence ([WithAttestTo]), and
// treats a change as a reason to attest again. *posture.Tracker is a
// Source.
func WithPosture(src posture.Source) Option {
	return optionFunc(func(c *config) { c.posture = src })
}

// WithServerAttestation makes the transport a relying party for the
// server (the server-attests direction): before sending a request for which
// require returns true, it obtains and validates a fresh server
// authenticator on the connection that will carry the request, with rp,
// unless one validated within maxAge exists. Until that holds, the request
// is not sent. rp's default key trust requires the server's authenticator
// key to be its TLS certificate's key. A maxAge of 0 attests the server
// before every critical request.
func WithServerAttestation(require func(*http.Request) bool, rp *postauth.RelyingParty, maxAge time.Duration) Option {
	return optionFunc(func(c *config) {
		c.server = &serverAttestation{require: require, rp: rp, maxAge: maxAge}
	})
}

// WithProactive marks requests (predicate) for which the transport attaches
// an attestation answering a pre-armed request, when it holds one, instead
// of waiting for a challenge. Routes the server challenged before are
// remembered without it.
func WithProactive(f func(*http.Request) bool) Option {
	return optionFunc(func(c *config) { c.proactive = f })
}

// WithObserver calls f for each attestation activity. f must be quick.
func WithObserver(f func(Activity)) Option {
	return optionFunc(func(c *config) { c.observe = f })
}

// WithClock sets the clock (tests). Nil means time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// WithMaxConnsPerHost bounds the connections per host (0: no bound). When
// reached, requests queue on the least busy connection.
func WithMaxConnsPerHost(n int) Option {
	return optionFunc(func(c *config) { c.maxConns = n })
}

// WithDialer makes the Transport open its connections with d instead of the
// base transport's NewClientConn (for example HTTP/3 connections, see
// package transports/h3). The base transport still carries requests that
// are not https.
func WithDialer(d DialFunc) Option {
	return optionFunc(func(c *config) { c.dialer = d })
}
