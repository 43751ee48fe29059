package postauthtest

import (
	"crypto"

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
