package ear_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/verifier"
)

// benchEnv is one service on loopback, one Challenge, the software EAT
// Evidence for it and the passport for it: every benchmark of this file
// appraises the same Evidence.
type benchEnv struct {
	w        *world
	ch       postauth.Challenge
	ev       postauth.Evidence
	passport postauth.Evidence
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	w := newWorld(b, verifier.WithMaxSessions(1<<20), verifier.WithMaxResultBytes(1<<30))
	auth := postauthtest.NewKey(b)
	binder := sha256.Sum256([]byte("bench binder"))
	e := &benchEnv{w: w, ch: postauth.Challenge{Binder: binder[:], KeyHash: spkiHash(b, auth.Public()), Hash: crypto.SHA256, Role: postauth.RoleClient}}
	var err error
	if e.ev, err = w.att.Attest(context.Background(), e.ch); err != nil {
		b.Fatal(err)
	}
	att, err := ear.NewAttester(w.att, w.srv.URL(), auth.Public())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { att.Close() })
	if e.passport, err = att.Attest(context.Background(), e.ch); err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkBaselineES256Verify is the raw signature check every EAR and
// software EAT costs at least (ECDSA P-256 verify).
func BenchmarkBaselineES256Verify(b *testing.B) {
	key := postauthtest.NewKey(b)
	d := sha256.Sum256([]byte("message"))
	sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.VerifyASN1(&key.PublicKey, d[:], sig) {
			b.Fatal("verify")
		}
	}
}

// BenchmarkLocalVerify is the local background check: the relying party
// appraises the software EAT itself (softeat.Verifier), the baseline of
// the remote models.
func BenchmarkLocalVerify(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.w.local.Verify(ctx, e.ch, e.ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBackgroundCheck is the remote background check of the same
// Evidence: local binding check, newSession, Evidence POST (the service
// appraises with the same softeat.Verifier and signs an EAR), EAR check,
// over HTTP/1.1 on loopback (keep-alive), session delete in the
// background.
func BenchmarkBackgroundCheck(b *testing.B) {
	e := newBenchEnv(b)
	rv := e.w.remote(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rv.Verify(ctx, e.ch, e.ev); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	rv.Close()
}

// BenchmarkPassportVerify is the relying party's side of the passport:
// one EAR checked (signature, claims, key attestation, policy).
func BenchmarkPassportVerify(b *testing.B) {
	e := newBenchEnv(b)
	v := e.w.passportVerifier(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, e.ch, e.passport); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPassportAttest is the attester's side of the passport: fresh
// Evidence and its exchange for an EAR over loopback.
func BenchmarkPassportAttest(b *testing.B) {
	e := newBenchEnv(b)
	auth := postauthtest.NewKey(b)
	ch := e.ch
	ch.KeyHash = spkiHash(b, auth.Public())
	att, err := ear.NewAttester(e.w.att, e.w.srv.URL(), auth.Public())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := att.Attest(ctx, ch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	att.Close()
}
