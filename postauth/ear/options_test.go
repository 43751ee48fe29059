package ear_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// Options ignore nil and zero values: the default stays (CONTRIBUTING.md,
// configuration style).
func TestZeroOptionsKeepDefaults(t *testing.T) {
	// A nil policy is the default one, the strictest: a warning is denied.
	f := newEARFixture(t, ear.WithPolicy(nil), ear.WithSkew(0))
	c := f.claims(t)
	submodOf(c)["ear.status"] = "warning"
	_, err := f.verify(jwtOf(t, goodHeader, c, f.key))
	postauthtest.WantError(t, err, postauth.CodePolicyDenied, postauth.ReasonEARPolicyDenied)

	// A zero skew is DefaultSkew: an iat a little in the future passes.
	f = newEARFixture(t, ear.WithSkew(0))
	c = f.claims(t)
	c["iat"] = f.clock.Now().Add(ear.DefaultSkew - time.Second).Unix()
	if _, err := f.verify(jwtOf(t, goodHeader, c, f.key)); err != nil {
		t.Fatalf("zero skew: %v", err)
	}

	// Zero client settings are the defaults: a working background check.
	w := newWorld(t)
	rv := w.remote(t, ear.WithTimeout(0), ear.WithMaxInFlight(0), ear.WithPollInterval(0),
		ear.WithCircuitBreaker(0, 0), ear.WithHTTPClient(nil), ear.WithPolicy(nil))
	if _, err := exchange(t, postauthtest.MutualTLS(t), w.att, rv); err != nil {
		t.Fatalf("zero client options: %v", err)
	}
	ep := postauthtest.MutualTLS(t)
	att := w.passport(t, ep, ear.WithTimeout(0), ear.WithMaxInFlight(0), ear.WithPollInterval(0))
	if _, err := exchange(t, ep, att, w.passportVerifier(t, ear.WithPolicy(nil), ear.WithSkew(0))); err != nil {
		t.Fatalf("zero passport options: %v", err)
	}
}

// A negative circuit-breaker threshold disables the breaker: a failing
// verifier is asked every time (verifier_unavailable), never skipped
// (verifier_circuit_open); a zero threshold is the default, which opens.
func TestCircuitBreakerDisabled(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer srv.Close()
	key := postauthtest.NewKey(t).Public()
	binder := sha256.Sum256([]byte("binder"))
	ch := postauth.Challenge{Binder: binder[:], Hash: crypto.SHA256}
	att, _ := postauthtest.Software(t)
	for _, tc := range []struct {
		threshold int
		open      bool
	}{{-1, false}, {0, true}} {
		rv := remoteAt(t, srv.URL, ear.WithVerifierKeys(key), ear.WithCircuitBreaker(tc.threshold, time.Hour))
		ch.KeyHash = spkiHash(t, postauthtest.NewKey(t).Public())
		ev, err := att.Attest(context.Background(), ch)
		if err != nil {
			t.Fatal(err)
		}
		opened, before := false, hits.Load()
		for range ear.DefaultBreakerThreshold + 2 {
			_, err := rv.Verify(context.Background(), ch, ev)
			if postauth.ReasonOf(err) == postauth.ReasonVerifierCircuitOpen {
				opened = true
			} else {
				postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierUnavailable)
			}
		}
		if opened != tc.open {
			t.Errorf("threshold %d: breaker opened %v, want %v", tc.threshold, opened, tc.open)
		}
		if asked := hits.Load() - before; !tc.open && asked != ear.DefaultBreakerThreshold+2 {
			t.Errorf("threshold %d: the verifier was asked %d times, want every time", tc.threshold, asked)
		}
	}
}
