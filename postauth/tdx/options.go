package tdx

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// AttesterOption configures an [Attester].
type AttesterOption interface{ applyAttester(*attesterConfig) }

// VerifierOption configures a [Verifier].
type VerifierOption interface{ applyVerifier(*verifierConfig) }

// CacheOption configures a [Cache].
type CacheOption interface{ applyCache(*cacheConfig) }

// PCSOption configures a [PCS] client.
type PCSOption interface{ applyPCS(*pcsConfig) }

// Option is an option valid for a [Verifier] and a [Cache].
type Option interface {
	VerifierOption
	CacheOption
}

type attesterOptionFunc func(*attesterConfig)

func (f attesterOptionFunc) applyAttester(c *attesterConfig) { f(c) }

type verifierOptionFunc func(*verifierConfig)

func (f verifierOptionFunc) applyVerifier(c *verifierConfig) { f(c) }

type cacheOptionFunc func(*cacheConfig)

func (f cacheOptionFunc) applyCache(c *cacheConfig) { f(c) }

type pcsOptionFunc func(*pcsConfig)

func (f pcsOptionFunc) applyPCS(c *pcsConfig) { f(c) }

type clockOption func() time.Time

func (o clockOption) applyVerifier(c *verifierConfig) { c.now = o }
func (o clockOption) applyCache(c *cacheConfig)       { c.now = o }

// WithClock sets the clock of a Verifier (certificate validity, collateral
// expiry) or a Cache (entry expiry). nil means time.Now.
func WithClock(now func() time.Time) Option { return clockOption(now) }

// attesterConfig is the configuration of an Attester.
type attesterConfig struct {
	posture PostureSource
}

func newAttesterConfig(opts []AttesterOption) (*attesterConfig, error) {
	c := &attesterConfig{}
	for _, o := range opts {
		if o != nil {
			o.applyAttester(c)
		}
	}
	return c, nil
}

// WithPosture puts the agent's posture log into every Evidence. The
// source's register must be RTMR3 of the TD that quotes (a register from
// package tdxguest on hardware, a tdxtest.Platform's RTMR in tests),
// measured with SHA-384.
func WithPosture(src PostureSource) AttesterOption {
	return attesterOptionFunc(func(c *attesterConfig) { c.posture = src })
}

// verifierConfig is the configuration of a Verifier.
type verifierConfig struct {
	roots          []*x509.Certificate
	policy         *Policy
	now            func() time.Time
	grace          time.Duration
	requirePosture bool
	warn           func(ctx context.Context, warnings []string)
}

func newVerifierConfig(opts []VerifierOption) (*verifierConfig, error) {
	c := &verifierConfig{roots: []*x509.Certificate{IntelRoot()}, policy: &Policy{}}
	for _, o := range opts {
		if o != nil {
			o.applyVerifier(c)
		}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.policy == nil {
		c.policy = &Policy{}
	}
	if len(c.roots) == 0 {
		return nil, errors.New("tdx: no trusted roots")
	}
	for i, r := range c.roots {
		if r == nil {
			return nil, fmt.Errorf("tdx: trusted root %d is nil", i)
		}
	}
	if c.grace < 0 || c.grace > MaxCollateralGrace {
		return nil, fmt.Errorf("tdx: collateral grace %v out of range [0, %v]", c.grace, MaxCollateralGrace)
	}
	return c, nil
}

// MaxCollateralGrace bounds [WithCollateralGrace].
const MaxCollateralGrace = 30 * 24 * time.Hour

// WithTrustedRoots replaces the trusted roots (by default only Intel's SGX
// Root CA, [IntelRoot]). A quote is accepted only if its PCK chain, and the
// collateral only if its signer, chains to one of them. Results from a
// root other than Intel's report Format FormatTestRoot and HardwareBacked
// false. Use it for test roots (package tdxtest); never in production.
func WithTrustedRoots(roots ...*x509.Certificate) VerifierOption {
	return verifierOptionFunc(func(c *verifierConfig) { c.roots = roots })
}

// WithPolicy sets the appraisal policy (TCB status and measurements).
// nil, and the default, is the zero Policy: only TCB status UpToDate, no
// debug TD, any measurements. The Verifier keeps its own copy.
func WithPolicy(p *Policy) VerifierOption {
	return verifierOptionFunc(func(c *verifierConfig) { c.policy = p })
}

// WithCollateralGrace lets collateral be used for d after its nextUpdate
// (TCB info, QE identity, CRLs), for example to ride out a PCS outage.
// The default is 0: collateral past its nextUpdate fails closed
// (collateral_expired). At most MaxCollateralGrace.
func WithCollateralGrace(d time.Duration) VerifierOption {
	return verifierOptionFunc(func(c *verifierConfig) { c.grace = d })
}

// WithRequirePosture rejects Evidence without a posture log
// (posture_missing).
func WithRequirePosture(require bool) VerifierOption {
	return verifierOptionFunc(func(c *verifierConfig) { c.requirePosture = require })
}

// WithWarningHandler sets a function the Verifier calls, before it
// returns the Appraisal, with the warnings of an accepted quote: the TCB
// statuses the policy lets pass with a warning ("tcb:platform
// SWHardeningNeeded"), followed by the Intel advisory ids of the matching
// TCB levels ("advisory INTEL-SA-00837"). It is not called for quotes
// without warnings. It must not block for long.
func WithWarningHandler(h func(ctx context.Context, warnings []string)) VerifierOption {
	return verifierOptionFunc(func(c *verifierConfig) { c.warn = h })
}

// cacheConfig is the configuration of a Cache.
type cacheConfig struct {
	now        func() time.Time
	maxEntries int
	backoff    time.Duration
}

// Cache defaults.
const (
	DefaultCacheEntries   = 256
	DefaultFailureBackoff = 10 * time.Second
)

func newCacheConfig(opts []CacheOption) (*cacheConfig, error) {
	c := &cacheConfig{maxEntries: DefaultCacheEntries, backoff: DefaultFailureBackoff}
	for _, o := range opts {
		if o != nil {
			o.applyCache(c)
		}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.maxEntries <= 0 {
		return nil, errors.New("tdx: cache size must be positive")
	}
	if c.backoff < 0 {
		return nil, errors.New("tdx: negative failure backoff")
	}
	return c, nil
}

// WithMaxEntries bounds the number of platforms (FMSPC, CA) a Cache keeps
// (default DefaultCacheEntries); the entry that expires first is dropped.
func WithMaxEntries(n int) CacheOption {
	return cacheOptionFunc(func(c *cacheConfig) { c.maxEntries = n })
}

// WithFailureBackoff sets how long a Cache waits after a failed fetch
// before it asks the source again for the same platform (default
// DefaultFailureBackoff); meanwhile it serves what it has, or the failure.
func WithFailureBackoff(d time.Duration) CacheOption {
	return cacheOptionFunc(func(c *cacheConfig) { c.backoff = d })
}

// pcsConfig is the configuration of a PCS client.
type pcsConfig struct {
	baseURL     string
	rootCRLURL  string
	client      *http.Client
	timeout     time.Duration
	retries     int
	retryDelay  time.Duration
	maxResponse int64
}

// PCS defaults.
const (
	// DefaultPCSURL is Intel's Provisioning Certification Service.
	DefaultPCSURL = "https://api.trustedservices.intel.com"
	// DefaultRootCRLURL is the CRL distribution point of Intel's SGX Root
	// CA.
	DefaultRootCRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
	// DefaultPCSTimeout bounds one HTTP request.
	DefaultPCSTimeout = 10 * time.Second
	// DefaultPCSRetries is how often a failed request is retried
	// (network errors, 429 and 5xx only).
	DefaultPCSRetries = 2
	// DefaultPCSRetryDelay is the first retry delay; it doubles per retry.
	DefaultPCSRetryDelay = 500 * time.Millisecond
	// DefaultMaxResponse bounds a PCS response body.
	DefaultMaxResponse = 1 << 20
)

func newPCSConfig(opts []PCSOption) (*pcsConfig, error) {
	c := &pcsConfig{
		baseURL: DefaultPCSURL, rootCRLURL: DefaultRootCRLURL, timeout: DefaultPCSTimeout,
		retries: DefaultPCSRetries, retryDelay: DefaultPCSRetryDelay, maxResponse: DefaultMaxResponse,
	}
	for _, o := range opts {
		if o != nil {
			o.applyPCS(c)
		}
	}
	if c.client == nil {
		c.client = &http.Client{}
	}
	for _, u := range []string{c.baseURL, c.rootCRLURL} {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			return nil, fmt.Errorf("tdx: bad PCS URL %q", u)
		}
	}
	if c.timeout <= 0 || c.retries < 0 || c.retries > 10 || c.retryDelay < 0 || c.maxResponse <= 0 {
		return nil, errors.New("tdx: PCS timeout, retries, delay or response limit out of range")
	}
	return c, nil
}

// WithBaseURL sets the PCS base URL (default DefaultPCSURL), for a PCCS
// caching service or a local fake. The paths are those of the PCS API v4.
func WithBaseURL(u string) PCSOption {
	return pcsOptionFunc(func(c *pcsConfig) { c.baseURL = u })
}

// WithRootCRLURL sets where the root CA CRL is fetched (default
// DefaultRootCRLURL).
func WithRootCRLURL(u string) PCSOption {
	return pcsOptionFunc(func(c *pcsConfig) { c.rootCRLURL = u })
}

// WithHTTPClient sets the HTTP client (nil: a new http.Client). Its own
// Timeout, if any, applies on top of the per-request timeout.
func WithHTTPClient(cl *http.Client) PCSOption {
	return pcsOptionFunc(func(c *pcsConfig) { c.client = cl })
}

// WithRequestTimeout bounds each HTTP request (default DefaultPCSTimeout).
func WithRequestTimeout(d time.Duration) PCSOption {
	return pcsOptionFunc(func(c *pcsConfig) { c.timeout = d })
}

// WithRetries sets how often a failed request is retried (0 to 10,
// default DefaultPCSRetries) and the first delay, which doubles per retry
// (default DefaultPCSRetryDelay). Only network errors, 429 and 5xx
// responses are retried.
func WithRetries(n int, delay time.Duration) PCSOption {
	return pcsOptionFunc(func(c *pcsConfig) { c.retries, c.retryDelay = n, delay })
}

// WithMaxResponseSize bounds a response body (default DefaultMaxResponse).
func WithMaxResponseSize(n int64) PCSOption {
	return pcsOptionFunc(func(c *pcsConfig) { c.maxResponse = n })
}
