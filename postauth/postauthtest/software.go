package postauthtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"sync/atomic"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
)

// SoftwareKey is a fresh software EAT attestation key, with constructors for
// an attester that signs with it and the verifier that trusts exactly it.
type SoftwareKey struct {
	Key *ecdsa.PrivateKey
}

// NewSoftwareKey returns a SoftwareKey with a fresh ECDSA P-256 key.
func NewSoftwareKey(tb TB) *SoftwareKey {
	tb.Helper()
	return &SoftwareKey{Key: NewKey(tb)}
}

// Attester returns a software EAT attester signing with the key.
func (k *SoftwareKey) Attester(tb TB, opts ...softeat.AttesterOption) *softeat.Attester {
	tb.Helper()
	att, err := softeat.NewAttester(k.Key, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return att
}

// Verifier returns a software EAT verifier that trusts exactly the key.
func (k *SoftwareKey) Verifier(tb TB, opts ...softeat.VerifierOption) *softeat.Verifier {
	tb.Helper()
	ver, err := softeat.NewVerifier([]crypto.PublicKey{k.Key.Public()}, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return ver
}

// Software returns a software EAT attester with a fresh attestation key and
// a verifier that trusts exactly that key, both with default options.
func Software(tb TB) (*softeat.Attester, *softeat.Verifier) {
	tb.Helper()
	k := NewSoftwareKey(tb)
	return k.Attester(tb), k.Verifier(tb)
}

// CountingAttester wraps an Attester and counts the attestations it makes
// (tests assert how many attestations a scenario cost). Safe for concurrent
// use.
type CountingAttester struct {
	Inner postauth.Attester
	n     atomic.Int64
}

// Attest counts and delegates to Inner.
func (c *CountingAttester) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	c.n.Add(1)
	return c.Inner.Attest(ctx, ch)
}

// Count is the number of attestations made so far.
func (c *CountingAttester) Count() int64 { return c.n.Load() }

// RelyingParty returns postauth.NewRelyingParty(v, opts...), failing tb on
// error.
func RelyingParty(tb TB, v postauth.Verifier, opts ...postauth.Option) *postauth.RelyingParty {
	tb.Helper()
	rp, err := postauth.NewRelyingParty(v, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return rp
}
