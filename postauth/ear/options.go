package ear

import (
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/reattest/reattest/postauth"
)

// Defaults.
const (
	// DefaultSkew is how far in the future an EAR's iat may be.
	DefaultSkew = 30 * time.Second
	// DefaultTimeout bounds one remote appraisal (session, Evidence,
	// polling), whatever the caller's context allows.
	DefaultTimeout = 5 * time.Second
	// DefaultMaxInFlight bounds the concurrent requests to the verifier.
	DefaultMaxInFlight = 32
	// DefaultBreakerThreshold consecutive failures open the circuit
	// breaker for DefaultBreakerCooldown.
	DefaultBreakerThreshold = 5
	DefaultBreakerCooldown  = 10 * time.Second
	// DefaultPollInterval is the pause between polls of a session the
	// verifier answered 202 (processing) for.
	DefaultPollInterval = 100 * time.Millisecond
)

// VerifierOption configures a passport [Verifier].
type VerifierOption interface{ applyVerifier(*verifierConfig) }

// RemoteOption configures a background-check [RemoteVerifier].
type RemoteOption interface{ applyRemote(*remoteConfig) }

// AttesterOption configures a passport [Attester].
type AttesterOption interface{ applyAttester(*attesterConfig) }

// Option is valid for every constructor of this package.
type Option interface {
	VerifierOption
	RemoteOption
	AttesterOption
}

// AppraisalOption is valid for both verifiers (passport and background
// check): it configures how an EAR is appraised.
type AppraisalOption interface {
	VerifierOption
	RemoteOption
}

// ClientOption is valid for both users of the challenge-response API (the
// RemoteVerifier and the passport Attester).
type ClientOption interface {
	RemoteOption
	AttesterOption
}

// appraisalConfig is how EARs are appraised.
type appraisalConfig struct {
	policy *Policy
	now    func() time.Time
	skew   time.Duration
}

// clientConfig is how the verifier service is reached.
type clientConfig struct {
	now              func() time.Time
	httpClient       *http.Client
	timeout          time.Duration
	maxInFlight      int
	breakerThreshold int
	breakerCooldown  time.Duration
	pollInterval     time.Duration
	keys             []*ecdsa.PublicKey
	trustOnFirst     bool
	err              error // from an option
}

type verifierConfig struct {
	appraisalConfig
}

type remoteConfig struct {
	appraisalConfig
	clientConfig
	bindings map[string]BindingFunc
	insecure map[string]bool
}

type attesterConfig struct {
	clientConfig
}

func defaultAppraisal() appraisalConfig {
	return appraisalConfig{policy: &Policy{}, now: time.Now, skew: DefaultSkew}
}

func defaultClient() clientConfig {
	return clientConfig{
		now: time.Now, timeout: DefaultTimeout, maxInFlight: DefaultMaxInFlight,
		breakerThreshold: DefaultBreakerThreshold, breakerCooldown: DefaultBreakerCooldown,
		pollInterval: DefaultPollInterval,
	}
}

func newVerifierConfig(opts []VerifierOption) (*verifierConfig, error) {
	c := &verifierConfig{appraisalConfig: defaultAppraisal()}
	for _, o := range opts {
		if o != nil {
			o.applyVerifier(c)
		}
	}
	return c, c.appraisalConfig.validate()
}

func newRemoteConfig(opts []RemoteOption) (*remoteConfig, error) {
	c := &remoteConfig{appraisalConfig: defaultAppraisal(), clientConfig: defaultClient(),
		bindings: make(map[string]BindingFunc), insecure: make(map[string]bool)}
	for _, o := range opts {
		if o != nil {
			o.applyRemote(c)
		}
	}
	if err := c.appraisalConfig.validate(); err != nil {
		return nil, err
	}
	if err := c.clientConfig.validate(); err != nil {
		return nil, err
	}
	if len(c.clientConfig.keys) == 0 && !c.trustOnFirst {
		return nil, errors.New("ear: no EAR verification key: pin one (WithVerifierKeys) or opt in to WithTrustOnFirstFetch")
	}
	if len(c.bindings) == 0 && len(c.insecure) == 0 {
		return nil, errors.New("ear: no Evidence media type accepted: add WithLocalBinding")
	}
	return c, nil
}

func newAttesterConfig(opts []AttesterOption) (*attesterConfig, error) {
	c := &attesterConfig{clientConfig: defaultClient()}
	for _, o := range opts {
		if o != nil {
			o.applyAttester(c)
		}
	}
	return c, c.clientConfig.validate()
}

func (c *appraisalConfig) validate() error {
	return c.policy.Validate()
}

func (c *clientConfig) validate() error {
	return c.err
}

type optionFunc struct {
	verifier  func(*verifierConfig)
	remote    func(*remoteConfig)
	attester  func(*attesterConfig)
	appraisal func(*appraisalConfig)
	client    func(*clientConfig)
}

func (o optionFunc) applyVerifier(c *verifierConfig) {
	if o.appraisal != nil {
		o.appraisal(&c.appraisalConfig)
	}
	if o.verifier != nil {
		o.verifier(c)
	}
}

func (o optionFunc) applyRemote(c *remoteConfig) {
	if o.appraisal != nil {
		o.appraisal(&c.appraisalConfig)
	}
	if o.client != nil {
		o.client(&c.clientConfig)
	}
	if o.remote != nil {
		o.remote(c)
	}
}

func (o optionFunc) applyAttester(c *attesterConfig) {
	if o.client != nil {
		o.client(&c.clientConfig)
	}
	if o.attester != nil {
		o.attester(c)
	}
}

// WithClock sets the clock (EAR ages, the circuit breaker's cooldown).
// Nil means time.Now.
func WithClock(now func() time.Time) Option {
	if now == nil {
		now = time.Now
	}
	return optionFunc{
		appraisal: func(c *appraisalConfig) { c.now = now },
		client:    func(c *clientConfig) { c.now = now },
	}
}

// WithPolicy sets the appraisal policy. Nil means the default, &Policy{}
// (every submodule affirming, EARs at most DefaultMaxAge old: the strictest
// useful policy). An invalid policy makes the constructor fail.
func WithPolicy(p *Policy) AppraisalOption {
	return optionFunc{appraisal: func(c *appraisalConfig) {
		if p != nil {
			c.policy = p
		}
	}}
}

// WithSkew sets how far in the future an EAR's iat may be (clock skew
// between the verifier and the relying party). Zero or less means
// DefaultSkew.
func WithSkew(d time.Duration) AppraisalOption {
	return optionFunc{appraisal: func(c *appraisalConfig) {
		if d > 0 {
			c.skew = d
		}
	}}
}

// WithVerifierKeys pins the keys that sign the verifier's EARs (ECDSA P-256;
// parse a JWK with [ParseJWK]). A RemoteVerifier needs pinned keys unless
// WithTrustOnFirstFetch is set; an Attester uses them, if given, to check
// the EAR it received before sending it.
func WithVerifierKeys(keys ...crypto.PublicKey) ClientOption {
	return optionFunc{client: func(c *clientConfig) {
		for _, k := range keys {
			pub, err := ES256Key(k)
			if err != nil {
				c.err = err
				return
			}
			c.keys = append(c.keys, pub)
		}
	}}
}

// WithTrustOnFirstFetch is an explicit opt-in: without pinned keys, the
// EAR verification key is fetched once from the verifier's well-known
// endpoint (GET /.well-known/veraison/verification) and pinned for the
// life of the RemoteVerifier. Whoever answers that first fetch (an
// attacker on the path, without TLS to the verifier) chooses the key: use
// it only over an authenticated channel (HTTPS with a verified verifier
// certificate) and prefer pinned keys.
func WithTrustOnFirstFetch() ClientOption {
	return optionFunc{client: func(c *clientConfig) { c.trustOnFirst = true }}
}

// WithHTTPClient sets the HTTP client for the verifier API (TLS
// configuration, proxies). Its Timeout, if set, applies too. Nil means a
// client of this package's own with Go's default transport settings.
func WithHTTPClient(hc *http.Client) ClientOption {
	return optionFunc{client: func(c *clientConfig) { c.httpClient = hc }}
}

// WithTimeout bounds one remote appraisal (new session, Evidence, polling)
// from the verifier's point of view, whatever the caller's context allows
// (postauth bounds the call by the caller's context too; this bound also
// holds when the caller's deadline is later). An answer that completes
// after it is never used. Zero or less means DefaultTimeout.
func WithTimeout(d time.Duration) ClientOption {
	return optionFunc{client: func(c *clientConfig) {
		if d > 0 {
			c.timeout = d
		}
	}}
}

// WithMaxInFlight bounds the concurrent appraisals sent to the verifier;
// one more fails at once with CodeUnavailable (verifier_busy). Zero or
// less means DefaultMaxInFlight.
func WithMaxInFlight(n int) ClientOption {
	return optionFunc{client: func(c *clientConfig) {
		if n > 0 {
			c.maxInFlight = n
		}
	}}
}

// WithCircuitBreaker opens the circuit after threshold consecutive
// verifier failures (network errors, timeouts, 5xx, unusable answers):
// for cooldown every appraisal fails at once (CodeUnavailable,
// verifier_circuit_open), then one probe is let through. A threshold of
// zero means DefaultBreakerThreshold and a cooldown of zero or less
// DefaultBreakerCooldown; a negative threshold disables the breaker.
func WithCircuitBreaker(threshold int, cooldown time.Duration) ClientOption {
	return optionFunc{client: func(c *clientConfig) {
		if threshold != 0 {
			c.breakerThreshold = threshold
		}
		if cooldown > 0 {
			c.breakerCooldown = cooldown
		}
	}}
}

// WithPollInterval sets the pause between polls of a session that the
// verifier answered 202 (processing) for. Zero or less means
// DefaultPollInterval.
func WithPollInterval(d time.Duration) ClientOption {
	return optionFunc{client: func(c *clientConfig) {
		if d > 0 {
			c.pollInterval = d
		}
	}}
}

// BindingFunc returns the freshness value and the authenticator key hash
// that Evidence carries, found by the format's own parser without trusting
// a verifier: it need not verify signatures (the remote verifier does), but
// it must read the very bytes that are forwarded. keyHash may be nil for a
// format that carries none. softeat.Binding and tpm.Binding are
// BindingFuncs, and so is [EnactTrustBinding].
type BindingFunc func(ch postauth.Challenge, ev postauth.Evidence) (nonce, keyHash []byte, err error)

// WithLocalBinding accepts Evidence of mediaType (parameters ignored) and
// checks its binding locally with fn before forwarding it: its freshness
// value must be the binder and its key hash, if it has one, the
// authenticator key's. The remote verdict is then not trusted for
// freshness (a real Veraison scheme was seen to affirm a quote over another
// nonce).
func WithLocalBinding(mediaType string, fn BindingFunc) RemoteOption {
	return optionFunc{remote: func(c *remoteConfig) {
		base := baseType(mediaType)
		if base == "" || fn == nil {
			c.clientConfig.err = fmt.Errorf("ear: WithLocalBinding(%q): bad media type or nil function", trunc(mediaType))
			return
		}
		c.bindings[base] = fn
	}}
}

// WithInsecureRemoteBinding accepts Evidence of the given media types
// WITHOUT a local binding check: freshness and key binding then rest on
// the remote verifier alone (its eat_nonce and its reattest.key-hash
// annotation). Use it only for formats that have no local parser and a
// verifier you trust to compare the nonce.
func WithInsecureRemoteBinding(mediaTypes ...string) RemoteOption {
	return optionFunc{remote: func(c *remoteConfig) {
		for _, t := range mediaTypes {
			base := baseType(t)
			if base == "" {
				c.clientConfig.err = fmt.Errorf("ear: WithInsecureRemoteBinding(%q): bad media type", trunc(t))
				return
			}
			c.insecure[base] = true
		}
	}}
}
