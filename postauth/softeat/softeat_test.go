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
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/reattest/reattest/internal/detcbor"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

type fixture struct {
	key   *postauthtest.SoftwareKey
	att   *softeat.Attester
	ver   *softeat.Verifier
	clock *postauthtest.Clock
	chal  postauth.Challenge
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{key: postauthtest.NewSoftwareKey(t), clock: postauthtest.NewClock(time.Unix(1_800_000_000, 0))}
	f.att = f.key.Attester(t, softeat.WithClock(f.clock.Now))
	f.ver = f.key.Verifier(t, softeat.WithClock(f.clock.Now))
	binder := sha256.Sum256([]byte("binder"))
	kh := sha256.Sum256([]byte("spki"))
	f.chal = postauth.Challenge{Binder: binder[:], KeyHash: kh[:], Hash: crypto.SHA256, Role: postauth.RoleClient}
	return f
}

// sign makes a token over arbitrary claims with the trusted key, encoded
// deterministically as the profile requires.
func (f *fixture) sign(t testing.TB, claims map[int64]any) []byte {
	t.Helper()
	payload, err := detcbor.Enc.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return f.signPayload(t, payload)
}

// signPayload makes a token over payload with the profile's headers.
func (f *fixture) signPayload(t testing.TB, payload []byte) []byte {
	t.Helper()
	kid, _ := softeat.KeyID(f.key.Key.Public())
	return f.signRaw(t, mustCBOR(t, map[int64]any{1: -7, 4: kid}), []byte{0xa0}, payload)
}

// signRaw hand-builds a COSE_Sign1 (tag 18) with the given encoded
// protected header map (wrapped in a bstr here), the encoded unprotected
// header and payload, signed with the trusted key over the Sig_structure
// ["Signature1", protected, h”, payload] (RFC 9052 section 4.4). The
// signature is genuine whatever the headers say: an attack token that only
// the verifier's header checks can refuse.
func (f *fixture) signRaw(t testing.TB, protected, unprotected, payload []byte) []byte {
	t.Helper()
	tbs := mustCBOR(t, []any{"Signature1", protected, []byte{}, payload})
	digest := sha256.Sum256(tbs)
	r, s, err := ecdsa.Sign(rand.Reader, f.key.Key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return mustCBOR(t, cbor.Tag{Number: 18, Content: []any{protected, cbor.RawMessage(unprotected), payload, sig}})
}

func mustCBOR(t testing.TB, v any) []byte {
	t.Helper()
	b, err := detcbor.Enc.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) claims() map[int64]any { return f.claimsFor(f.chal) }

// claimsFor returns the claims of a genuine token for ch.
func (f *fixture) claimsFor(ch postauth.Challenge) map[int64]any {
	ueid := append([]byte{1}, bytes.Repeat([]byte{7}, 16)...)
	return map[int64]any{
		6: f.clock.Now().Unix(), 10: ch.Binder, 256: ueid, 265: softeat.Profile,
		-70000: []any{posture.AlgID(ch.Hash), ch.KeyHash},
	}
}

func (f *fixture) verify(tok []byte) error {
	_, err := f.ver.Verify(context.Background(), f.chal, postauth.Evidence{Type: softeat.MediaType, Value: tok})
	return err
}

// claimsAttester signs, with the fixture's trusted key, the claims of a
// genuine token for the Challenge it is given, changed by mutate: an
// attester that lies about what it signs.
type claimsAttester struct {
	f      *fixture
	t      testing.TB
	mutate func(map[int64]any)
}

func (a claimsAttester) Attest(_ context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	c := a.f.claimsFor(ch)
	a.mutate(c)
	return postauth.Evidence{Type: softeat.MediaType, Value: a.f.sign(a.t, c)}, nil
}

// exchange runs one attestation end to end on a real mutual TLS 1.3
// connection: the server's relying party (with the fixture's verifier)
// asks, the client answers with att's Evidence, the relying party
// verifies.
func (f *fixture) exchange(t testing.TB, att postauth.Attester) (*postauth.Result, error) {
	t.Helper()
	ep := postauthtest.MutualTLS(t)
	ccs, scs := ep.Client.ConnectionState(), ep.Server.ConnectionState()
	clientCh, err := postauth.NewChannel(&ccs)
	if err != nil {
		t.Fatal(err)
	}
	serverCh, err := postauth.NewChannel(&scs)
	if err != nil {
		t.Fatal(err)
	}
	id, err := postauth.IdentityFromTLS(&ep.ClientCert)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := postauth.NewRelyingParty(f.ver)
	if err != nil {
		t.Fatal(err)
	}
	reqr, err := rp.NewRequester(serverCh, postauth.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	responder, err := postauth.NewResponder(id, att)
	if err != nil {
		t.Fatal(err)
	}
	req, err := reqr.NewRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := responder.Respond(context.Background(), clientCh, postauth.RoleClient, req)
	if err != nil {
		t.Fatalf("Respond: %v", err)
	}
	return reqr.Verify(context.Background(), raw, nil)
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
		!bytes.Equal(app.MachineID, f.att.UEID()) || !app.AttestedAt.Equal(f.clock.Now()) || app.HardwareBacked || app.Format != softeat.Format {
		t.Fatalf("appraisal %+v", app)
	}
	if kid, _ := softeat.KeyID(f.key.Key.Public()); len(kid) != 16 || !bytes.Equal(app.AttestationKeyID, kid) {
		t.Fatalf("attestation key id %x, want the kid %x", app.AttestationKeyID, kid)
	}
	// The handcrafted token of the same claims verifies too.
	if err := f.verify(f.sign(t, f.claims())); err != nil {
		t.Fatalf("handcrafted token: %v", err)
	}
}

func TestVerifierRejects(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	mutate := func(m func(map[int64]any)) []byte {
		c := f.claims()
		m(c)
		return f.sign(t, c)
	}
	cases := []struct {
		name   string
		tok    []byte
		reason postauth.Reason
		code   postauth.Code
	}{
		{"tagged-iat", mutate(func(c map[int64]any) { c[6] = cbor.Tag{Number: 1, Content: now.Unix()} }), postauth.ReasonEvidenceInvalid, postauth.CodeInvalid},
		{"stale", mutate(func(c map[int64]any) { c[6] = now.Add(-time.Hour).Unix() }), postauth.ReasonEvidenceStale, postauth.CodeStale},
		{"future", mutate(func(c map[int64]any) { c[6] = now.Add(time.Hour).Unix() }), postauth.ReasonEvidenceStale, postauth.CodeStale},
		{"profile", mutate(func(c map[int64]any) { c[265] = "tag:example.com,2026:other" }), postauth.ReasonEvidenceInvalid, postauth.CodeInvalid},
		{"two-nonces", mutate(func(c map[int64]any) { c[10] = []any{f.chal.Binder, f.chal.Binder} }), postauth.ReasonEvidenceInvalid, postauth.CodeInvalid},
		{"nonce", mutate(func(c map[int64]any) { c[10] = bytes.Repeat([]byte{1}, 32) }), postauth.ReasonBinderMismatch, postauth.CodeInvalid},
		{"key-hash", mutate(func(c map[int64]any) { c[-70000] = []any{1, bytes.Repeat([]byte{1}, 32)} }), postauth.ReasonKeyHashMismatch, postauth.CodeInvalid},
		{"key-hash-alg", mutate(func(c map[int64]any) { c[-70000] = []any{7, f.chal.KeyHash} }), postauth.ReasonKeyHashMismatch, postauth.CodeInvalid},
		// Every claim but posture is required: a missing one re-encodes
		// differently (the canonical-claims check).
		{"no-key-hash", mutate(func(c map[int64]any) { delete(c, -70000) }), postauth.ReasonEvidenceInvalid, postauth.CodeInvalid},
		{"no-ueid", mutate(func(c map[int64]any) { delete(c, 256) }), postauth.ReasonEvidenceInvalid, postauth.CodeInvalid},
		{"no-iat", mutate(func(c map[int64]any) { delete(c, 6) }), postauth.ReasonEvidenceInvalid, postauth.CodeInvalid},
		{"bad-ueid", mutate(func(c map[int64]any) { c[256] = []byte{9, 9, 9} }), postauth.ReasonEvidenceInvalid, postauth.CodeInvalid},
		{"unknown-claim", mutate(func(c map[int64]any) { c[-70099] = 1 }), postauth.ReasonEvidenceInvalid, postauth.CodeInvalid},
		// The verifier checks the form of the signed posture register
		// value; replaying the log against it is the relying party's job
		// (the bad-posture subtest below).
		{"bad-posture-head-length", mutate(func(c map[int64]any) {
			c[-70001] = map[int]any{1: []any{1, bytes.Repeat([]byte{1}, 20)}, 2: map[int]any{1: 1, 2: []any{}}}
		}), postauth.ReasonPostureInvalid, postauth.CodeInvalid},
		{"bad-posture-head-alg", mutate(func(c map[int64]any) {
			c[-70001] = map[int]any{1: []any{99, bytes.Repeat([]byte{1}, 32)}, 2: map[int]any{1: 1, 2: []any{}}}
		}), postauth.ReasonPostureInvalid, postauth.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			postauthtest.WantError(t, f.verify(tc.tok), tc.code, tc.reason)
		})
	}
	t.Run("untrusted-key", func(t *testing.T) {
		other := newFixture(t)
		other.chal = f.chal
		postauthtest.WantError(t, f.verify(other.sign(t, f.claims())), postauth.CodeInvalid, postauth.ReasonUntrustedAttester)
	})
	t.Run("bad-signature", func(t *testing.T) {
		tok := f.sign(t, f.claims())
		tok[len(tok)-1] ^= 1
		postauthtest.WantError(t, f.verify(tok), postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature)
	})
	t.Run("media-type", func(t *testing.T) {
		_, err := f.ver.Verify(context.Background(), f.chal, postauth.Evidence{Type: "application/eat+jwt", Value: f.sign(t, f.claims())})
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonFormatNotAccepted)
	})
	t.Run("require-posture", func(t *testing.T) {
		v := f.key.Verifier(t, softeat.WithClock(f.clock.Now), softeat.RequirePosture())
		_, err := v.Verify(context.Background(), f.chal, postauth.Evidence{Type: softeat.MediaType, Value: f.sign(t, f.claims())})
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonPostureMissing)
	})
	t.Run("aged", func(t *testing.T) {
		g := newFixture(t)
		ev, err := g.att.Attest(context.Background(), g.chal)
		if err != nil {
			t.Fatal(err)
		}
		g.clock.Advance(softeat.DefaultMaxAge)
		if _, err := g.ver.Verify(context.Background(), g.chal, ev); err != nil {
			t.Fatalf("at the maximum age: %v", err)
		}
		g.clock.Advance(time.Second)
		_, err = g.ver.Verify(context.Background(), g.chal, ev)
		postauthtest.WantError(t, err, postauth.CodeStale, postauth.ReasonEvidenceStale)
		v := g.key.Verifier(t, softeat.WithClock(g.clock.Now), softeat.WithMaxAge(time.Hour))
		if _, err := v.Verify(context.Background(), g.chal, ev); err != nil {
			t.Fatalf("WithMaxAge: %v", err)
		}
	})
	// A posture log that does not replay to the signed register value.
	// The relying party replays it (not the Evidence verifier), so the
	// attack is run end to end: a genuinely signed token, bound to the
	// connection, whose log is not the one that produced its head.
	t.Run("bad-posture", func(t *testing.T) {
		other, _ := posture.NewTracker()
		if err := other.EnableTool(context.Background(), posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))}); err != nil {
			t.Fatal(err)
		}
		otherSnap, _ := other.Snapshot()
		for name, claim := range map[string]map[int]any{
			"empty-log":   {1: []any{1, bytes.Repeat([]byte{1}, 32)}, 2: map[int]any{1: 1, 2: []any{}}},
			"other-log":   {1: []any{1, bytes.Repeat([]byte{1}, 32)}, 2: cbor.RawMessage(otherSnap.Log)},
			"undecodable": {1: []any{1, otherSnap.Head}, 2: map[int]any{1: 1}},
			"log-alg":     {1: []any{1, otherSnap.Head}, 2: map[int]any{1: 7, 2: []any{}}},
		} {
			t.Run(name, func(t *testing.T) {
				res, err := f.exchange(t, claimsAttester{f, t, func(c map[int64]any) { c[-70001] = claim }})
				if res != nil {
					t.Fatal("a posture log that does not replay passed")
				}
				postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonPostureInvalid)
			})
		}
		// The honest claim, built the same way, passes.
		res, err := f.exchange(t, claimsAttester{f, t, func(c map[int64]any) {
			c[-70001] = map[int]any{1: []any{1, otherSnap.Head}, 2: cbor.RawMessage(otherSnap.Log)}
		}})
		if err != nil {
			t.Fatalf("honest posture claim: %v", err)
		}
		if _, ok := res.Posture().Tool("shell"); !ok {
			t.Fatal("posture not replayed")
		}
	})
}

// TestVerifierStrictness: tokens genuinely signed by the trusted key whose
// headers or claims leave the profile. None of them forges anything today,
// but each would open a door to a later profile or parser: an unknown
// critical header (RFC 9052 section 3.1 requires its refusal), a second
// alg in the unprotected header, an eat_nonce array, a second byte form of
// the same claims.
func TestVerifierStrictness(t *testing.T) {
	f := newFixture(t)
	kid, _ := softeat.KeyID(f.key.Key.Public())
	payload := mustCBOR(t, f.claims())
	enc := func(v any) []byte { return mustCBOR(t, v) }
	t.Run("control", func(t *testing.T) {
		// The hand-built token with the profile's headers passes: the
		// cases below fail for their one difference.
		if err := f.verify(f.signRaw(t, enc(map[int64]any{1: -7, 4: kid}), []byte{0xa0}, payload)); err != nil {
			t.Fatal(err)
		}
	})
	// The protected header must be exactly {1: -7, 4: kid}, deterministically
	// encoded.
	for name, protected := range map[string][]byte{
		"crit-unknown": enc(map[int64]any{1: -7, 2: []any{99}, 4: kid, 99: 1}),
		"crit-kid":     enc(map[int64]any{1: -7, 2: []any{4}, 4: kid}),
		"content-type": enc(map[int64]any{1: -7, 3: "application/eat+cwt", 4: kid}),
		"extra-label":  enc(map[int64]any{1: -7, 4: kid, -70000: 1}),
		"text-label":   enc(map[any]any{1: -7, 4: kid, "x": 1}),
		"unsorted":     append(append([]byte{0xa2, 0x04, 0x50}, kid...), 0x01, 0x26),
		"long-kid-len": append([]byte{0xa2, 0x01, 0x26, 0x04, 0x58, 0x10}, kid...),
		"long-alg":     append([]byte{0xa2, 0x01, 0x38, 0x06, 0x04, 0x50}, kid...),
	} {
		t.Run("protected/"+name, func(t *testing.T) {
			postauthtest.WantError(t, f.verify(f.signRaw(t, protected, []byte{0xa0}, payload)), postauth.CodeInvalid, postauth.ReasonEvidenceInvalid)
		})
	}
	// The unprotected header must be empty: a conflicting or even an equal
	// alg, a kid, anything.
	profile := enc(map[int64]any{1: -7, 4: kid})
	for name, unprotected := range map[string][]byte{
		"alg-conflict": enc(map[int64]any{1: -35}),
		"alg-same":     enc(map[int64]any{1: -7}),
		"kid":          enc(map[int64]any{4: kid}),
		"other":        enc(map[int64]any{99: 1}),
		"empty-long":   {0xb8, 0x00}, // an empty map in a non-shortest form
	} {
		t.Run("unprotected/"+name, func(t *testing.T) {
			postauthtest.WantError(t, f.verify(f.signRaw(t, profile, unprotected, payload)), postauth.CodeInvalid, postauth.ReasonEvidenceInvalid)
		})
	}
	// eat_nonce: one bstr of the Challenge hash's length.
	for name, nonce := range map[string]any{
		"array-of-one": []any{f.chal.Binder},
		"short":        f.chal.Binder[:16],
		"long":         append(slices.Clone(f.chal.Binder), f.chal.Binder...),
		"empty":        []byte{},
		"text":         string(f.chal.Binder),
	} {
		t.Run("nonce/"+name, func(t *testing.T) {
			c := f.claims()
			c[10] = nonce
			postauthtest.WantError(t, f.verify(f.sign(t, c)), postauth.CodeInvalid, postauth.ReasonEvidenceInvalid)
		})
	}
	// The claims must be their deterministic encoding (RFC 8949 section
	// 4.2.1): the same claims in another byte form are refused.
	now := uint64(f.clock.Now().Unix())
	long := func(major byte, n uint64) cbor.RawMessage { // an 8-byte head
		b := []byte{major<<5 | 27, 0, 0, 0, 0, 0, 0, 0, 0}
		for i := 0; i < 8; i++ {
			b[8-i] = byte(n >> (8 * i))
		}
		return b
	}
	for name, m := range map[string]func(map[int64]any){
		"iat-8-bytes":       func(c map[int64]any) { c[6] = long(0, now) },
		"nonce-long-length": func(c map[int64]any) { c[10] = append(long(2, 32), f.chal.Binder...) },
		"key-hash-alg-long": func(c map[int64]any) { c[-70000] = []any{cbor.RawMessage{0x18, 0x01}, f.chal.KeyHash} },
		"profile-long-len":  func(c map[int64]any) { c[265] = append(long(3, uint64(len(softeat.Profile))), softeat.Profile...) },
	} {
		t.Run("canonical/"+name, func(t *testing.T) {
			c := f.claims()
			m(c)
			postauthtest.WantError(t, f.verify(f.sign(t, c)), postauth.CodeInvalid, postauth.ReasonEvidenceInvalid)
		})
	}
	t.Run("canonical/unsorted-keys", func(t *testing.T) {
		c := f.claims()
		// The same five claims, the map keys in descending order.
		b := []byte{0xa5}
		for _, k := range []int64{-70000, 265, 256, 10, 6} {
			b = append(b, enc(k)...)
			b = append(b, enc(c[k])...)
		}
		var back map[int64]any
		if err := cbor.Unmarshal(b, &back); err != nil || len(back) != 5 {
			t.Fatalf("test payload: %v", err)
		}
		postauthtest.WantError(t, f.verify(f.signPayload(t, b)), postauth.CodeInvalid, postauth.ReasonEvidenceInvalid)
	})
}

func TestPostureRidesInEvidence(t *testing.T) {
	f := newFixture(t)
	tr, _ := posture.NewTracker()
	tr.SetModel(context.Background(), posture.Model{Name: "m", Digest: posture.DigestOf([]byte("w"))})
	att := f.key.Attester(t, softeat.WithClock(f.clock.Now), softeat.WithPosture(tr))
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
	// End to end, the relying party replays the log to the tracker's state.
	res, err := f.exchange(t, att)
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Posture(); st == nil || !reflect.DeepEqual(st, tr.State()) {
		t.Fatalf("posture %+v, want %+v", st, tr.State())
	}
}

func TestAttesterOptions(t *testing.T) {
	f := newFixture(t)
	ueid := append([]byte{1}, bytes.Repeat([]byte{9}, 16)...)
	att := f.key.Attester(t, softeat.WithUEID(ueid), softeat.WithClock(f.clock.Now))
	if !bytes.Equal(att.UEID(), ueid) {
		t.Fatalf("ueid %x", att.UEID())
	}
	ev, err := att.Attest(context.Background(), f.chal)
	if err != nil {
		t.Fatal(err)
	}
	app, err := f.ver.Verify(context.Background(), f.chal, ev)
	if err != nil || !bytes.Equal(app.MachineID, ueid) {
		t.Fatalf("machine id %x: %v", app.MachineID, err)
	}
	// The default UEID derives from the attestation key.
	kid, _ := softeat.KeyID(f.key.Key.Public())
	if !bytes.Equal(f.att.UEID(), append([]byte{0x01}, kid...)) {
		t.Fatalf("default ueid %x", f.att.UEID())
	}
	// The verifier accepts only the machines it is given.
	v := f.key.Verifier(t, softeat.WithClock(f.clock.Now), softeat.WithMachineIDs(ueid))
	if _, err := v.Verify(context.Background(), f.chal, ev); err != nil {
		t.Fatalf("listed machine: %v", err)
	}
	ev, _ = f.att.Attest(context.Background(), f.chal)
	_, err = v.Verify(context.Background(), f.chal, ev)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUnknownMachine)
	if _, err := softeat.NewAttester(f.key.Key, softeat.WithUEID([]byte{1, 2})); err == nil {
		t.Fatal("short ueid accepted")
	}
	// A canceled context gets no Evidence.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.att.Attest(ctx, f.chal); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
}

func TestKeys(t *testing.T) {
	if _, err := softeat.NewAttester(must384(t)); err == nil {
		t.Fatal("P-384 attestation key accepted for ES256")
	}
	if _, err := softeat.NewVerifier(nil); err == nil {
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
