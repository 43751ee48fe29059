package ear_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
)

// FuzzPassportVerify feeds arbitrary tokens to the passport Verifier (JWS
// parser, header check, claims decoder, annotations, policy): no panic,
// and nothing but a well-signed token passes.
func FuzzPassportVerify(f *testing.F) {
	fx := newEARFixture(f)
	good := jwtOf(f, goodHeader, fx.claims(f), fx.key)
	f.Add([]byte(good))
	f.Add([]byte(jwtOf(f, `{"alg":"none"}`, fx.claims(f), nil)))
	f.Add([]byte("a.b.c"))
	f.Add([]byte("eyJhbGciOiJFUzI1NiJ9.e30."))
	f.Fuzz(func(t *testing.T, token []byte) {
		app, err := fx.v.Verify(context.Background(), fx.ch, postauth.Evidence{Type: ear.MediaType, Value: token})
		if err == nil && (string(app.Nonce) != string(fx.ch.Binder) || string(app.KeyHash) != string(fx.ch.KeyHash)) {
			t.Fatal("accepted a token bound elsewhere")
		}
	})
}

func FuzzParseJWK(f *testing.F) {
	f.Add([]byte(`{"alg":"ES256","crv":"P-256","kty":"EC","x":"usWxHK2PmfnHKwXPS54m0kTcGJ90UiglWiGahtagnv8","y":"IBOL-C3BttVivg-lSreASjpkttcsz-1rb7btKLv8EX4"}`))
	f.Add([]byte(`{"kty":"EC"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ear.ParseJWK(data)
		if err != nil {
			return
		}
		// A parsed key round-trips.
		again, err := ear.MarshalJWK(pub)
		if err != nil {
			t.Fatal(err)
		}
		pub2, err := ear.ParseJWK(again)
		if err != nil || !pub2.Equal(pub) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("min_status: warning\ntrust_vector:\n  hardware: affirming\nmax_age: 90s\n"), true)
	f.Add([]byte(`{"min_status":"affirming","trust_vector":{"executables":"warning"},"max_age":"2m"}`), false)
	f.Fuzz(func(t *testing.T, data []byte, yaml bool) {
		format := "json"
		if yaml {
			format = "yaml"
		}
		p, err := ear.ParsePolicy(data, format)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed an invalid policy: %v", err)
		}
	})
}

func FuzzDecodeSession(f *testing.F) {
	f.Add([]byte(`{"status":"complete","nonce":"AAAAAAAAAAA=","expiry":"2030-01-01T00:00:00Z","accept":["a/b"],"result":"x.y.z"}`))
	f.Add([]byte(`{"status":"waiting"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ear.DecodeSessionForTest(data)
	})
}

func FuzzEnactTrustBinding(f *testing.F) {
	b := sha256.Sum256([]byte("binder"))
	f.Add(enactTrust(b[:]))
	f.Add(enactTrust(make([]byte, 64)))
	ch := postauth.Challenge{Binder: b[:], KeyHash: b[:], Hash: crypto.SHA256}
	f.Fuzz(func(t *testing.T, data []byte) {
		nonce, kh, err := ear.EnactTrustBinding(ch, postauth.Evidence{Type: ear.EnactTrustMediaType, Value: data})
		if err == nil && string(nonce) == string(ch.Binder) && string(kh) != string(ch.KeyHash) {
			t.Fatal("bound without the key hash")
		}
	})
}
