package tdx

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	"github.com/google/go-tdx-guest/verify"
)

// platformKey is what go-tdx-guest verified about a quote's signer, apart
// from the quote signature itself: the PCK chain (and the trusted root it
// ends at), the QE report signed by the PCK key, and the attestation key
// the QE report vouches for. A TD's quotes all carry the same one (per
// platform and quoting enclave key), so the Verifier remembers it.
type platformKey struct {
	chain *verify.PCKCertificateChain
	root  *x509.Certificate
	ext   *pcs.PckExtensions
	ak    *ecdsa.PublicKey
}

// maxPlatformKeys bounds the Verifier's memory of verified signers.
const maxPlatformKeys = 1024

// validAt checks the time-dependent part of the chain verification: every
// certificate of the chain, and the trusted root, valid at now.
func (k *platformKey) validAt(now time.Time) error {
	for _, c := range []*x509.Certificate{k.chain.PCKCertificate, k.chain.IntermediateCertificate, k.chain.RootCertificate, k.root} {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fmt.Errorf("tdx: PCK chain: %q not valid at %v", c.Subject.CommonName, now)
		}
	}
	return nil
}

// signerEntry is a remembered signer, bound to the collateral (TCB info,
// QE identity, PCK CRL, root CA CRL) it was last checked against,
// revocation included.
type signerEntry struct {
	key   *platformKey
	col   [sha256.Size]byte // the collateral's identity
	until time.Time         // that collateral's nextUpdate plus the grace
}

// boundTo reports whether the entry may stand for a full verification
// of its signer under col at now: it was checked against exactly this
// collateral, and that collateral has not reached its nextUpdate (plus
// grace) since. Anything else (a new TCB info, QE identity or CRL, or the
// end of the collateral's validity) voids it.
func (e *signerEntry) boundTo(col *Collateral, now time.Time) bool {
	return e.col == col.id && now.Before(e.until)
}

// signerCache is the Verifier's memory of verified signers, by SHA-256 of
// the quote's attestation key and certification data (QE report, its
// signature, the PCK chain). An entry is used only while it is bound to
// the current collateral ([signerEntry.boundTo], checked at every use);
// one bound to older collateral is dropped at its signer's next quote, or
// when the cache is full (maxPlatformKeys: it then starts over). It is
// safe for concurrent use.
type signerCache struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]*signerEntry
}

func newSignerCache() *signerCache {
	return &signerCache{entries: make(map[[sha256.Size]byte]*signerEntry)}
}

func (c *signerCache) lookup(id [sha256.Size]byte) *signerEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[id]
}

func (c *signerCache) forget(id [sha256.Size]byte) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}

func (c *signerCache) clear() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// remember stores e under id.
func (c *signerCache) remember(id [sha256.Size]byte, e *signerEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxPlatformKeys {
		clear(c.entries)
	}
	c.entries[id] = e
}

// crlMarks remembers, per CRL issuer (a PCK CA or a root, by SHA-256 of
// its certificate), the newest CRL the Verifier accepted, so that a
// collateral source cannot roll a CRL back: once a revocation has been
// seen, collateral whose CRL predates it is refused, even while that
// older CRL has not reached its nextUpdate. Issuers are certificates that
// chain to the trusted roots, so the map stays small; it is bounded
// anyway (maxCRLIssuers; when full it starts over).
type crlMarks struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]crlMark
}

type crlMark struct {
	number     *big.Int // nil if the CRL has no CRL number
	thisUpdate time.Time
}

const maxCRLIssuers = 64

// older reports whether CRL a predates CRL b: by CRL number when both
// have one (RFC 5280 section 5.2.3: it increases with every CRL of an
// issuer), else by thisUpdate.
func (a crlMark) older(b crlMark) bool {
	if a.number != nil && b.number != nil {
		return a.number.Cmp(b.number) < 0
	}
	return a.thisUpdate.Before(b.thisUpdate)
}

// admit checks that crl, verified as issued by issuer, is not older than
// the newest CRL of issuer admitted before, and records it if it is newer.
func (c *crlMarks) admit(issuer *x509.Certificate, crl *x509.RevocationList) error {
	k := sha256.Sum256(issuer.Raw)
	got := crlMark{number: crl.Number, thisUpdate: crl.ThisUpdate}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]crlMark)
	}
	prev, ok := c.m[k]
	if ok && got.older(prev) {
		return fmt.Errorf("tdx: collateral: the CRL of %q (number %v, thisUpdate %v) is older than one already seen (number %v, thisUpdate %v)",
			issuer.Subject.CommonName, got.number, got.thisUpdate, prev.number, prev.thisUpdate)
	}
	if !ok || prev.older(got) {
		if !ok && len(c.m) >= maxCRLIssuers {
			clear(c.m)
		}
		c.m[k] = got
	}
	return nil
}
