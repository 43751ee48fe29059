package postauth

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"slices"
	"time"
)

// Option sets one protocol setting of an endpoint. The same options
// configure both sides: a [RelyingParty] (it issues requests and verifies
// answers), a [Responder] (it answers with Evidence), and the layer-1
// functions [Channel.Authenticate] and [Channel.Validate]. Each option's
// comment says which side reads it; the other side ignores it, so one list
// of options can be shared by both. Options are applied in order: a later
// one wins.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config holds every protocol setting, each with its default set by
// newConfig. It is the only place these settings live.
type config struct {
	now        func() time.Time
	rand       io.Reader
	schemes    []tls.SignatureScheme
	extension  uint16
	encoding   CMWEncoding
	contextTTL time.Duration
	maxPending int
	keyTrust   KeyTrust
	roots      *x509.CertPool
	dnsName    string
	formats    []string
}

// Defaults of the relying party's request bookkeeping.
const (
	// DefaultContextTTL is how long an issued request may be answered.
	DefaultContextTTL = time.Minute
	// DefaultMaxPending bounds the unanswered requests kept per connection.
	DefaultMaxPending = 16
)

// newConfig returns the defaults with opts applied.
func newConfig(opts []Option) config {
	c := config{
		now:        time.Now,
		rand:       rand.Reader,
		schemes:    DefaultSignatureSchemes,
		extension:  DefaultAttestationExtension,
		contextTTL: DefaultContextTTL,
		maxPending: DefaultMaxPending,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithClock sets the clock used for context expiry, chain validation and
// the verification time of Results (both sides). Nil means time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// WithRand sets the source of context nonces (relying party) and of
// signature randomness (attesting side). Nil means crypto/rand. A reader
// that returns the same bytes twice makes contexts predictable: use it in
// tests only.
func WithRand(r io.Reader) Option {
	return optionFunc(func(c *config) {
		if r != nil {
			c.rand = r
		}
	})
}

// WithSignatureSchemes sets the TLS 1.3 signature schemes, in order of
// preference: those the relying party offers in signature_algorithms and
// accepts, and those the attesting side signs with. Nil or empty means
// [DefaultSignatureSchemes].
func WithSignatureSchemes(schemes ...tls.SignatureScheme) Option {
	s := slices.Clone(schemes)
	return optionFunc(func(c *config) {
		if len(s) > 0 {
			c.schemes = s
		}
	})
}

// WithAttestationExtension sets the cmw_attestation code point (both sides
// must agree). 0 means [DefaultAttestationExtension].
func WithAttestationExtension(codePoint uint16) Option {
	return optionFunc(func(c *config) {
		if codePoint != 0 {
			c.extension = codePoint
		}
	})
}

// WithCMWEncoding sets how the attesting side encodes its CMW record (CBOR
// by default). Relying parties accept both.
func WithCMWEncoding(e CMWEncoding) Option {
	return optionFunc(func(c *config) { c.encoding = e })
}

// WithContextTTL sets how long a request issued by a relying party may be
// answered. Zero or less means [DefaultContextTTL].
func WithContextTTL(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.contextTTL = d
		}
	})
}

// WithMaxPending bounds the unanswered requests a relying party keeps per
// connection; when full, issuing a new request forgets the oldest. Zero or
// less means [DefaultMaxPending].
func WithMaxPending(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxPending = n
		}
	})
}

// WithKeyTrust sets how the relying party decides that the authenticator
// key belongs to the peer it means to talk to ([KeyTrust]). The default,
// [KeyTrustDefault], is the key of the peer's verified TLS certificate,
// else a chain to the roots of [WithRoots], else a failure.
func WithKeyTrust(k KeyTrust) Option {
	return optionFunc(func(c *config) { c.keyTrust = k })
}

// WithRoots sets the roots an authenticator chain must verify against
// ([KeyTrustChain]; relying party).
func WithRoots(roots *x509.CertPool) Option {
	return optionFunc(func(c *config) { c.roots = roots })
}

// WithDNSName requires the authenticator chain's leaf to be valid for name
// ([KeyTrustChain]; relying party).
func WithDNSName(name string) Option {
	return optionFunc(func(c *config) { c.dnsName = name })
}

// WithFormats sets the Evidence media types the relying party accepts
// (parameters are ignored when comparing); with no media types it accepts
// none. Without this option, the relying party accepts the media types its
// Verifier declares ([MediaTyper]), or every type if it declares none.
func WithFormats(mediaTypes ...string) Option {
	f := append([]string{}, mediaTypes...)
	return optionFunc(func(c *config) { c.formats = f })
}
