package postauthtest

import (
	"context"
	"crypto"
	"sync/atomic"

	"github.com/reattest/reattest/postauth"

	"github.com/reattest/reattest/postauth/softeat"
)

// Software returns a software EAT attester with a fresh attestation key and
// a verifier that trusts exactly that key (opts may be nil).
func Software(tb TB, attOpts *softeat.AttesterOptions, verOpts *softeat.VerifierOptions) (*softeat.Attester, *softeat.Verifier) {
	tb.Helper()
	key := NewKey(tb)
	att, err := softeat.NewAttester(key, attOpts)
	if err != nil {
		tb.Fatal(err)
	}
	ver, err := softeat.NewVerifier([]crypto.PublicKey{key.Public()}, verOpts)
	if err != nil {
		tb.Fatal(err)
	}
	return att, ver
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
