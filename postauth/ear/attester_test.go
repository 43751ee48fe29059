package ear_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
)

func TestPassportAttester(t *testing.T) {
	w := newWorld(t)
	authKey := postauthtest.NewKey(t)
	binder := sha256.Sum256([]byte("binder"))
	ch := postauth.Challenge{Binder: binder[:], KeyHash: spkiHash(t, authKey.Public()), Hash: crypto.SHA256, Role: postauth.RoleClient}
	ctx := context.Background()
	newAtt := func(url string, opts ...ear.AttesterOption) *ear.Attester {
		a, err := ear.NewAttester(w.att, url, authKey.Public(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	t.Run("passport", func(t *testing.T) {
		ev, err := newAtt(w.srv.URL(), ear.WithVerifierKeys(w.svc.PublicKey())).Attest(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != ear.MediaType {
			t.Fatalf("type %q", ev.Type)
		}
		// An Attestation Result, not Evidence: CMW indicator 8 on the wire.
		if ev.Kind != postauth.KindAttestationResult {
			t.Fatalf("kind %v", ev.Kind)
		}
		rec, err := postauth.EncodeCMW(ev, postauth.CMWCBOR)
		if err != nil {
			t.Fatal(err)
		}
		if rec[len(rec)-1] != 8 {
			t.Fatalf("CMW indicator %d, want 8 (attestation results)", rec[len(rec)-1])
		}
		if back, err := postauth.DecodeCMW(rec); err != nil || back.Kind != postauth.KindAttestationResult {
			t.Fatalf("decoded kind %v (%v)", back.Kind, err)
		}
		app, err := w.passportVerifier(t).Verify(ctx, ch, ev)
		if err != nil {
			t.Fatal(err)
		}
		if string(app.KeyHash) != string(ch.KeyHash) {
			t.Fatal("key hash")
		}
	})
	t.Run("pinned key mismatch", func(t *testing.T) {
		_, err := newAtt(w.srv.URL(), ear.WithVerifierKeys(postauthtest.NewKey(t).Public())).Attest(ctx, ch)
		postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierError)
	})
	t.Run("wrong authenticator key", func(t *testing.T) {
		other := ch
		other.KeyHash = spkiHash(t, postauthtest.NewKey(t).Public())
		if _, err := newAtt(w.srv.URL()).Attest(ctx, other); err == nil {
			t.Fatal("attested for another key")
		}
	})
	t.Run("verifier down", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		_, err := newAtt(srv.URL).Attest(ctx, ch)
		postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierUnavailable)
	})
	t.Run("verifier slow", func(t *testing.T) {
		srv := start(t, delayed{h: w.svc, d: time.Second})
		_, err := newAtt(srv.URL(), ear.WithTimeout(50*time.Millisecond)).Attest(ctx, ch)
		postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierTimeout)
	})
	t.Run("EAR for another nonce", func(t *testing.T) {
		// A verifier that binds its EAR to its own nonce, not the binder.
		h := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path == ear.NewSessionPath {
				q := r.URL.Query()
				q.Set("nonce", ear.EncodeNonce(make([]byte, 32)))
				r.URL.RawQuery = q.Encode()
			}
			w.svc.ServeHTTP(rw, r)
		})
		srv := start(t, h)
		_, err := newAtt(srv.URL()).Attest(ctx, ch)
		postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierError)
	})
	t.Run("constructor", func(t *testing.T) {
		if _, err := ear.NewAttester(nil, w.srv.URL(), authKey.Public()); err == nil {
			t.Fatal("nil inner accepted")
		}
		if _, err := ear.NewAttester(w.att, "not a url", authKey.Public()); err == nil {
			t.Fatal("bad URL accepted")
		}
		if _, err := ear.NewAttester(w.att, w.srv.URL(), "not a key"); err == nil {
			t.Fatal("bad key accepted")
		}
	})
}
