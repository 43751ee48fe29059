package ear_test

import (
	"strings"
	"testing"

	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
)

func TestJWK(t *testing.T) {
	key := postauthtest.NewKey(t)
	jwk, err := ear.MarshalJWK(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ear.ParseJWK(jwk)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(&key.PublicKey) {
		t.Fatal("round trip")
	}
	// Veraison's published key (docs examples) parses.
	veraison := `{"alg":"ES256","crv":"P-256","kty":"EC","x":"usWxHK2PmfnHKwXPS54m0kTcGJ90UiglWiGahtagnv8","y":"IBOL-C3BttVivg-lSreASjpkttcsz-1rb7btKLv8EX4"}`
	if _, err := ear.ParseJWK([]byte(veraison)); err != nil {
		t.Fatal(err)
	}
	s := string(jwk)
	bad := []struct{ name, doc string }{
		{"private part", strings.Replace(s, `"kty"`, `"d":"AAAA","kty"`, 1)},
		{"RSA", strings.Replace(s, `"kty":"EC"`, `"kty":"RSA"`, 1)},
		{"P-384", strings.Replace(s, `"crv":"P-256"`, `"crv":"P-384"`, 1)},
		{"alg ES384", strings.Replace(s, `"alg":"ES256"`, `"alg":"ES384"`, 1)},
		{"alg none", strings.Replace(s, `"alg":"ES256"`, `"alg":"none"`, 1)},
		{"use enc", strings.Replace(s, `"use":"sig"`, `"use":"enc"`, 1)},
		{"x short", `{"kty":"EC","crv":"P-256","x":"AAAA","y":"IBOL-C3BttVivg-lSreASjpkttcsz-1rb7btKLv8EX4"}`},
		{"not on the curve", `{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`},
		{"no y", `{"kty":"EC","crv":"P-256","x":"usWxHK2PmfnHKwXPS54m0kTcGJ90UiglWiGahtagnv8"}`},
		{"duplicate x", strings.Replace(veraison, `"kty"`, `"x":"IBOL-C3BttVivg-lSreASjpkttcsz-1rb7btKLv8EX4","kty"`, 1)},
		{"not JSON", `nope`},
		{"empty", ``},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ear.ParseJWK([]byte(tc.doc)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
