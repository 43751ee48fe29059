package softeat_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	cose "github.com/veraison/go-cose"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

type fixture struct {
	key  *ecdsa.PrivateKey
	att  *softeat.Attester
	ver  *softeat.Verifier
	now  time.Time
	chal postauth.Challenge
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{key: postauthtest.NewKey(t), now: time.Unix(1_800_000_000, 0)}
	var err error
	clock := func() time.Time { return f.now }
	if f.att, err = softeat.NewAttester(f.key, &softeat.AttesterOptions{Time: clock}); err != nil {
		t.Fatal(err)
	}
	if f.ver, err = softeat.NewVerifier([]crypto.PublicKey{f.key.Public()}, &softeat.VerifierOptions{Time: clock}); err != nil {
		t.Fatal(err)
	}
	binder := sha256.Sum256([]byte("binder"))
	kh := sha256.Sum256([]byte("spki"))
	f.chal = postauth.Challenge{Binder: binder[:], KeyHash: kh[:], Hash: crypto.SHA256, Role: postauth.RoleClient}
	return f
}

// sign makes a token over arbitrary claims with the trusted key.
func (f *fixture) sign(t testing.TB, claims map[int64]any) []byte {
	t.Helper()
	payload, err := cbor.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := softeat.KeyID(f.key.Public())
	signer, _ := cose.NewSigner(cose.AlgorithmES256, f.key)
	msg := cose.Sign1Message{Headers: cose.Headers{Protected: cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmES256, cose.HeaderLabelKeyID: kid}}, Payload: payload}
	if err := msg.Sign(rand.Reader, nil, signer); err != nil {
		t.Fatal(err)
	}
	b, _ := msg.MarshalCBOR()
	return b
}

func (f *fixture) claims() map[int64]any {
	ueid := append([]byte{1}, bytes.Repeat([]byte{7}, 16)...)
	return map[int64]any{
		6: f.now.Unix(), 10: f.chal.Binder, 256: ueid, 265: softeat.Profile,
		-70000: []any{1, f.chal.KeyHash},
	}
}

func (f *fixture) verify(tok []byte) error {
	_, err := f.ver.Verify(context.Background(), f.chal, postauth.Evidence{Type: softeat.MediaType, Value: tok})
	return err
}

func reasonOf(err error) string {
	var pe *postauth.Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ""
}

func TestAttestVerify(t *testing.T) {
	f := newFixture(t)
	ev, err := f.att.Attest(context.Background(), f.chal)
	if err != nil {
		t.Fatal(err)
	}
	app, err := f.ver.Verify(context.Background(), f.chal, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(app.Nonce, f.chal.Binder) || !bytes.Equal(app.KeyHash, f.chal.KeyHash) ||
		!bytes.Equal(app.MachineID, f.att.UEID()) || !app.AttestedAt.Equal(f.now) || app.HardwareBacked || app.Format != softeat.Format {
		t.Fatalf("appraisal %+v", app)
	}
	// The handcrafted token of the same claims verifies too.
	if err := f.verify(f.sign(t, f.claims())); err != nil {
		t.Fatalf("handcrafted token: %v", err)
	}
}

func TestVerifierRejects(t *testing.T) {
	f := newFixture(t)
	mutate := func(m func(map[int64]any)) []byte {
		c := f.claims()
		m(c)
		return f.sign(t, c)
	}
	cases := []struct {
		name   string
		tok    []byte
		reason string
		code   postauth.Code
	}{
		{"tagged-iat", mutate(func(c map[int64]any) { c[6] = cbor.Tag{Number: 1, Content: f.now.Unix()} }), "evidence_invalid", postauth.CodeInvalid},
		{"stale", mutate(func(c map[int64]any) { c[6] = f.now.Add(-time.Hour).Unix() }), "evidence_stale", postauth.CodeStale},
		{"future", mutate(func(c map[int64]any) { c[6] = f.now.Add(time.Hour).Unix() }), "evidence_stale", postauth.CodeStale},
		{"profile", mutate(func(c map[int64]any) { c[265] = "tag:example.com,2026:other" }), "evidence_invalid", postauth.CodeInvalid},
		{"two-nonces", mutate(func(c map[int64]any) { c[10] = []any{f.chal.Binder, f.chal.Binder} }), "evidence_invalid", postauth.CodeInvalid},
		{"nonce", mutate(func(c map[int64]any) { c[10] = bytes.Repeat([]byte{1}, 32) }), "binder_mismatch", postauth.CodeInvalid},
		{"key-hash", mutate(func(c map[int64]any) { c[-70000] = []any{1, bytes.Repeat([]byte{1}, 32)} }), "key_hash_mismatch", postauth.CodeInvalid},
		{"key-hash-alg", mutate(func(c map[int64]any) { c[-70000] = []any{7, f.chal.KeyHash} }), "key_hash_mismatch", postauth.CodeInvalid},
		{"no-key-hash", mutate(func(c map[int64]any) { delete(c, -70000) }), "key_hash_mismatch", postauth.CodeInvalid},
		{"bad-ueid", mutate(func(c map[int64]any) { c[256] = []byte{9, 9, 9} }), "evidence_invalid", postauth.CodeInvalid},
		{"unknown-claim", mutate(func(c map[int64]any) { c[-70099] = 1 }), "evidence_invalid", postauth.CodeInvalid},
		{"bad-posture", mutate(func(c map[int64]any) {
			c[-70001] = map[int]any{1: []any{1, bytes.Repeat([]byte{1}, 32)}, 2: map[int]any{1: 1, 2: []any{}}}
		}), "posture_invalid", postauth.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := f.verify(tc.tok)
			if err == nil || reasonOf(err) != tc.reason || postauth.CodeOf(err) != tc.code {
				t.Fatalf("want %s/%v, got %v", tc.reason, tc.code, err)
			}
		})
	}
	t.Run("untrusted-key", func(t *testing.T) {
		other := newFixture(t)
		other.chal = f.chal
		err := f.verify(other.sign(t, f.claims()))
		if reasonOf(err) != "untrusted_attester" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad-signature", func(t *testing.T) {
		tok := f.sign(t, f.claims())
		tok[len(tok)-1] ^= 1
		if reasonOf(f.verify(tok)) != "bad_evidence_signature" {
			t.Fatal("tampered signature accepted")
		}
	})
	t.Run("media-type", func(t *testing.T) {
		_, err := f.ver.Verify(context.Background(), f.chal, postauth.Evidence{Type: "application/eat+jwt", Value: f.sign(t, f.claims())})
		if reasonOf(err) != "format_not_accepted" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("require-posture", func(t *testing.T) {
		v, _ := softeat.NewVerifier([]crypto.PublicKey{f.key.Public()}, &softeat.VerifierOptions{Time: func() time.Time { return f.now }, RequirePosture: true})
		_, err := v.Verify(context.Background(), f.chal, postauth.Evidence{Type: softeat.MediaType, Value: f.sign(t, f.claims())})
		if reasonOf(err) != "posture_missing" {
			t.Fatalf("got %v", err)
		}
	})
}

func TestPostureRidesInEvidence(t *testing.T) {
	f := newFixture(t)
	tr, _ := posture.NewTracker(nil)
	tr.SetModel(context.Background(), posture.Model{Name: "m", Digest: posture.DigestOf([]byte("w"))})
	att, _ := softeat.NewAttester(f.key, &softeat.AttesterOptions{Time: func() time.Time { return f.now }, Posture: tr})
	ev, err := att.Attest(context.Background(), f.chal)
	if err != nil {
		t.Fatal(err)
	}
	app, err := f.ver.Verify(context.Background(), f.chal, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(app.PostureHead, tr.Head()) || app.PostureLog == nil {
		t.Fatal("posture not carried")
	}
}

func TestKeys(t *testing.T) {
	if _, err := softeat.NewAttester(must384(t), nil); err == nil {
		t.Fatal("P-384 attestation key accepted for ES256")
	}
	if _, err := softeat.NewVerifier(nil, nil); err == nil {
		t.Fatal("verifier without trusted keys")
	}
	dir := t.TempDir()
	k := postauthtest.NewKey(t)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pub, _ := x509.MarshalPKIXPublicKey(k.Public())
	os.WriteFile(filepath.Join(dir, "k.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "p.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
	lk, err := softeat.LoadKey(filepath.Join(dir, "k.pem"))
	if err != nil || !lk.Equal(k) {
		t.Fatalf("LoadKey: %v", err)
	}
	lp, err := softeat.LoadPublicKey(filepath.Join(dir, "p.pem"))
	if err != nil || !lp.Equal(k.Public()) {
		t.Fatalf("LoadPublicKey: %v", err)
	}
	if _, err := softeat.ParseKeyPEM([]byte("junk")); err == nil {
		t.Fatal("junk PEM accepted")
	}
}

func must384(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzVerify feeds arbitrary tokens to the verifier: no panic, and nothing
// but a genuine token verifies.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	ev, _ := fx.att.Attest(context.Background(), fx.chal)
	f.Add(ev.Value)
	f.Add(fx.sign(f, fx.claims()))
	f.Add([]byte{0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.Equal(b, ev.Value) {
			return
		}
		if err := fx.verify(b); err == nil {
			// Only a re-encoding of a genuinely signed token could pass;
			// a random one never does.
			var msg cose.Sign1Message
			if msg.UnmarshalCBOR(b) != nil {
				t.Fatal("undecodable token verified")
			}
		}
	})
}
