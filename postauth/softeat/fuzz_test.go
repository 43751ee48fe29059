package softeat_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"

	cose "github.com/veraison/go-cose"

	"github.com/reattest/reattest/internal/detcbor"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

// FuzzVerify signs the fuzzed claims with the trusted key inside the
// harness, so that mutations reach the claims decoder, the claim checks and
// the posture checks behind the ES256 signature (a fuzzed token stops at
// the signature: FuzzVerifyToken). What verifies must be canonical, bound
// to the Challenge, fresh, and its posture log must replay or fail cleanly.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	tr, _ := posture.NewTracker()
	tr.SetModel(context.Background(), posture.Model{Name: "m", Digest: posture.DigestOf([]byte("w"))})
	tr.EnableTool(context.Background(), posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))})
	for _, att := range []*softeat.Attester{fx.att, fx.key.Attester(f, softeat.WithClock(fx.clock.Now), softeat.WithPosture(tr))} {
		ev, err := att.Attest(context.Background(), fx.chal)
		if err != nil {
			f.Fatal(err)
		}
		var msg cose.Sign1Message
		if err := msg.UnmarshalCBOR(ev.Value); err != nil {
			f.Fatal(err)
		}
		f.Add(msg.Payload)
	}
	f.Add(mustCBOR(f, fx.claims()))
	f.Fuzz(func(t *testing.T, payload []byte) {
		app, err := fx.ver.Verify(context.Background(), fx.chal, postauth.Evidence{Type: softeat.MediaType, Value: fx.signPayload(t, payload)})
		if err != nil {
			if c := postauth.CodeOf(err); c != postauth.CodeInvalid && c != postauth.CodeStale {
				t.Fatalf("code %v: %v", c, err)
			}
			return
		}
		var c map[int64]any
		if err := detcbor.DecNoTags.Unmarshal(payload, &c); err != nil {
			// The posture log is kept as raw CBOR (the relying party
			// replays it, once): only its content can fail a full decode
			// (invalid UTF-8 in an event name, say), and then the replay
			// must refuse it.
			if app.PostureLog == nil {
				t.Fatalf("accepted claims do not decode: %v", err)
			}
			if _, rerr := posture.Verify(app.PostureLog, app.PostureHead); rerr == nil {
				t.Fatalf("accepted claims do not decode (%v) and their posture log replays", err)
			}
			return
		}
		if canon, _ := detcbor.Enc.Marshal(c); !bytes.Equal(canon, payload) {
			// The claims are re-encoded by the profile's encoder: only the
			// raw posture log can be non-canonical, and then its replay
			// must refuse it.
			if app.PostureLog == nil {
				t.Fatal("accepted non-canonical claims")
			}
			if _, rerr := posture.Verify(app.PostureLog, app.PostureHead); rerr == nil {
				t.Fatal("accepted non-canonical claims whose posture log replays")
			}
			return
		}
		if !bytes.Equal(app.Nonce, fx.chal.Binder) || !bytes.Equal(app.KeyHash, fx.chal.KeyHash) {
			t.Fatal("accepted claims not bound to the Challenge")
		}
		if now := fx.clock.Now(); app.AttestedAt.After(now.Add(softeat.DefaultSkew)) || now.Sub(app.AttestedAt) > softeat.DefaultMaxAge {
			t.Fatalf("accepted iat %v", app.AttestedAt)
		}
		if (app.PostureHead == nil) != (c[-70001] == nil) {
			t.Fatal("posture claim and appraisal disagree")
		}
		if app.PostureHead != nil {
			// The relying party's replay: an error or the signed head.
			if st, err := posture.Verify(app.PostureLog, app.PostureHead); err == nil && st == nil {
				t.Fatal("posture replay passed without a state")
			}
		}
	})
}

// FuzzVerifyToken feeds arbitrary tokens to the verifier: no panic, and
// nothing but a genuinely signed token verifies.
func FuzzVerifyToken(f *testing.F) {
	fx := newFixture(f)
	ev, _ := fx.att.Attest(context.Background(), fx.chal)
	var genuine cose.Sign1Message
	if err := genuine.UnmarshalCBOR(ev.Value); err != nil {
		f.Fatal(err)
	}
	kid, _ := softeat.KeyID(fx.key.Key.Public())
	handcrafted := mustCBOR(f, fx.claims())
	f.Add(ev.Value)
	f.Add(fx.signPayload(f, handcrafted))
	f.Add(fx.signRaw(f, mustCBOR(f, map[int64]any{1: -7, 2: []any{99}, 4: kid, 99: 1}), []byte{0xa0}, genuine.Payload))
	f.Add(fx.signRaw(f, mustCBOR(f, map[int64]any{1: -7, 4: kid}), mustCBOR(f, map[int64]any{1: -35}), genuine.Payload))
	f.Add([]byte{0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.Equal(b, ev.Value) {
			return
		}
		if err := fx.verify(b); err == nil {
			// Only a token signed here (the genuine one, the handcrafted
			// one), possibly with the other ECDSA signature (r, n-s),
			// could pass: the same headers and claims, byte for byte.
			var msg cose.Sign1Message
			if msg.UnmarshalCBOR(b) != nil {
				t.Fatal("undecodable token verified")
			}
			if !bytes.Equal(msg.Headers.RawProtected, genuine.Headers.RawProtected) ||
				!bytes.Equal(msg.Headers.RawUnprotected, genuine.Headers.RawUnprotected) ||
				!bytes.Equal(msg.Payload, genuine.Payload) && !bytes.Equal(msg.Payload, handcrafted) {
				t.Fatal("a token other than the genuine one verified")
			}
		}
	})
}

// FuzzParseKeyPEM: a parsed private key is an ECDSA P-256 key that an
// Attester accepts, and its PKCS #8 re-encoding parses to the same key.
func FuzzParseKeyPEM(f *testing.F) {
	k := postauthtest.NewKey(f)
	p8, _ := x509.MarshalPKCS8PrivateKey(k)
	sec1, _ := x509.MarshalECPrivateKey(k)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384, _ := x509.MarshalPKCS8PrivateKey(k384)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384}))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		key, err := softeat.ParseKeyPEM(b)
		if err != nil {
			return
		}
		if key.Curve != elliptic.P256() {
			t.Fatal("accepted a key that is not P-256")
		}
		if _, err := softeat.NewAttester(key); err != nil {
			t.Fatalf("a parsed key is unusable: %v", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		back, err := softeat.ParseKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		if err != nil || !back.Equal(key) {
			t.Fatalf("re-encoded key: %v", err)
		}
	})
}

// FuzzParsePublicKeyPEM: a parsed public key is an ECDSA P-256 key that a
// Verifier accepts, and its PKIX re-encoding parses to the same key.
func FuzzParsePublicKeyPEM(f *testing.F) {
	k := postauthtest.NewKey(f)
	spki, _ := x509.MarshalPKIXPublicKey(k.Public())
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	s384, _ := x509.MarshalPKIXPublicKey(k384.Public())
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: s384}))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMA==\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := softeat.ParsePublicKeyPEM(b)
		if err != nil {
			return
		}
		if pub.Curve != elliptic.P256() {
			t.Fatal("accepted a key that is not P-256")
		}
		if _, err := softeat.NewVerifier([]crypto.PublicKey{pub}); err != nil {
			t.Fatalf("a parsed key is unusable: %v", err)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		back, err := softeat.ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		if err != nil || !back.Equal(pub) {
			t.Fatalf("re-encoded key: %v", err)
		}
	})
}
