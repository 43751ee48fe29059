package ear

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	now := time.Unix(0, 0)
	b := &breaker{threshold: 2, cooldown: time.Minute, now: func() time.Time { return now }}
	step := func(want bool) {
		t.Helper()
		if ok, _ := b.allow(); ok != want {
			t.Fatalf("allow %v, want %v (failures %d)", ok, want, b.failures)
		}
	}
	step(true)
	b.done(false)
	step(true)
	b.done(true) // a success resets
	step(true)
	b.done(false)
	step(true)
	b.done(false) // two in a row: open
	step(false)
	now = now.Add(time.Minute)
	step(true)  // the probe
	step(false) // only one probe at a time
	b.cancel()  // the probe was not sent
	step(true)
	b.done(false) // the probe failed: open again
	step(false)
	now = now.Add(time.Minute)
	step(true)
	b.done(true)
	step(true)
	step(true)
	off := &breaker{threshold: 0}
	for range 10 {
		off.done(false)
	}
	if ok, _ := off.allow(); !ok {
		t.Fatal("a disabled breaker opened")
	}
}

func TestSessionURL(t *testing.T) {
	c, err := newAPIClient("https://verifier.example:8443/veraison", &clientConfig{timeout: time.Second, maxInFlight: 1, pollInterval: time.Second, now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		loc, want string
	}{
		{"session/abc", "https://verifier.example:8443/veraison/challenge-response/v1/session/abc"},
		{"/veraison/challenge-response/v1/session/abc", "https://verifier.example:8443/veraison/challenge-response/v1/session/abc"},
		{"https://verifier.example:8443/veraison/challenge-response/v1/session/abc", "https://verifier.example:8443/veraison/challenge-response/v1/session/abc"},
		{"http://verifier.example:8443/veraison/challenge-response/v1/session/abc", ""}, // downgrade
		{"https://verifier.example/veraison/challenge-response/v1/session/abc", ""},     // another port
		{"//evil.example/veraison/challenge-response/v1/session/abc", ""},
		{"/challenge-response/v1/session/abc", ""}, // outside the prefix
		{"session/abc/def", ""},
		{"session/", ""},
		{"session/abc?x=1", ""},
		{"session/abc#f", ""},
		{"https://user@verifier.example:8443/veraison/challenge-response/v1/session/abc", ""},
		{"", ""},
		{"%zz", ""},
	} {
		got, err := c.sessionURL(tc.loc)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q accepted as %q", tc.loc, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q %v, want %q", tc.loc, got, err, tc.want)
		}
	}
}

func TestDecodeNonce(t *testing.T) {
	n := []byte("0123456789abcdef0123456789abcdef")
	for _, s := range []string{EncodeNonce(n), b64.EncodeToString(n)} {
		got, err := decodeNonce(s)
		if err != nil || string(got) != string(n) {
			t.Fatalf("%q: %q %v", s, got, err)
		}
	}
	for _, s := range []string{"", "AAAA", "!!!!!!!!!!!!", EncodeNonce(make([]byte, 65))} {
		if _, err := decodeNonce(s); err == nil {
			t.Fatalf("%q accepted", s)
		}
	}
}
