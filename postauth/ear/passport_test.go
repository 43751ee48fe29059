package ear_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/posture"
)

var b64 = base64.RawURLEncoding

// jwtOf builds a compact JWS from a raw header and claims, signed with
// ES256 by key (nil: signature left to sig).
func jwtOf(tb testing.TB, header string, claims any, key *ecdsa.PrivateKey) string {
	tb.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString(payload)
	if key == nil {
		return input + "."
	}
	return input + "." + b64.EncodeToString(es256(tb, key, input))
}

// es256 signs input with ES256 (r || s, 32 bytes each).
func es256(tb testing.TB, key *ecdsa.PrivateKey, input string) []byte {
	tb.Helper()
	d := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		tb.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig
}

// earFixture builds EARs by hand, independently of the service and of
// veraison/ear, signed with a key the Verifier pins.
type earFixture struct {
	key     *ecdsa.PrivateKey // the pinned verifier key
	other   *ecdsa.PrivateKey // not pinned
	authKey *ecdsa.PrivateKey // the authenticator key
	clock   *postauthtest.Clock
	ch      postauth.Challenge
	v       *ear.Verifier
}

func newEARFixture(tb testing.TB, opts ...ear.VerifierOption) *earFixture {
	tb.Helper()
	f := &earFixture{key: postauthtest.NewKey(tb), other: postauthtest.NewKey(tb), authKey: postauthtest.NewKey(tb),
		clock: postauthtest.NewClock(time.Unix(1_800_000_000, 0))}
	binder := sha256.Sum256([]byte("binder of this connection"))
	f.ch = postauth.Challenge{Binder: binder[:], KeyHash: spkiHash(tb, f.authKey.Public()), Hash: crypto.SHA256, Role: postauth.RoleClient}
	var err error
	f.v, err = ear.NewVerifier([]crypto.PublicKey{f.key.Public()}, append([]ear.VerifierOption{ear.WithClock(f.clock.Now)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func akpub(tb testing.TB, pub crypto.PublicKey) string {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return b64.EncodeToString(der)
}

// claims are good passport claims for the fixture's challenge.
func (f *earFixture) claims(tb testing.TB) map[string]any {
	return map[string]any{
		"eat_profile":     ear.Profile,
		"iat":             f.clock.Now().Unix(),
		"eat_nonce":       ear.EncodeNonce(f.ch.Binder),
		"ear.verifier-id": map[string]any{"build": "test", "developer": "test"},
		"submods": map[string]any{
			"software-eat": map[string]any{
				"ear.status": "affirming",
				"ear.trustworthiness-vector": map[string]any{
					"instance-identity": 2, "hardware": 2,
				},
				"ear.veraison.key-attestation": map[string]any{"akpub": akpub(tb, f.authKey.Public())},
				"ear.veraison.annotated-evidence": map[string]any{
					ear.AnnotationMachineID:  b64.EncodeToString([]byte("machine-1")),
					ear.AnnotationAttestedAt: f.clock.Now().Add(-time.Second).Unix(),
				},
			},
		},
	}
}

func submodOf(c map[string]any) map[string]any {
	return c["submods"].(map[string]any)["software-eat"].(map[string]any)
}

const goodHeader = `{"alg":"ES256","typ":"JWT"}`

func (f *earFixture) verify(token string) (*postauth.Appraisal, error) {
	return f.v.Verify(context.Background(), f.ch, postauth.Evidence{Type: ear.MediaType, Value: []byte(token)})
}

func TestPassportVerifierAccepts(t *testing.T) {
	f := newEARFixture(t)
	app, err := f.verify(jwtOf(t, goodHeader, f.claims(t), f.key))
	if err != nil {
		t.Fatal(err)
	}
	if string(app.Nonce) != string(f.ch.Binder) || string(app.KeyHash) != string(f.ch.KeyHash) || !app.HardwareBacked ||
		string(app.MachineID) != "machine-1" || !app.AttestedAt.Equal(f.clock.Now().Add(-time.Second)) ||
		!app.Expiry.Equal(f.clock.Now().Add(ear.DefaultMaxAge)) || app.Format != ear.Format {
		t.Fatalf("appraisal %+v", app)
	}
	// Header variants that are allowed: no typ, a kid, typ in another case.
	for _, h := range []string{`{"alg":"ES256"}`, `{"alg":"ES256","kid":"k1"}`, `{"typ":"jwt","alg":"ES256"}`} {
		if _, err := f.verify(jwtOf(t, h, f.claims(t), f.key)); err != nil {
			t.Fatalf("header %s: %v", h, err)
		}
	}
	// Status as a number, eat_nonce without padding.
	c := f.claims(t)
	submodOf(c)["ear.status"] = 2
	c["eat_nonce"] = b64.EncodeToString(f.ch.Binder)
	if _, err := f.verify(jwtOf(t, goodHeader, c, f.key)); err != nil {
		t.Fatal(err)
	}
}

func TestPassportVerifierRejects(t *testing.T) {
	f := newEARFixture(t, ear.WithPolicy(&ear.Policy{TrustVector: map[string]string{"instance-identity": "affirming"}}))
	good := func(m func(c map[string]any)) string {
		c := f.claims(t)
		m(c)
		return jwtOf(t, goodHeader, c, f.key)
	}
	sub := func(m func(s map[string]any)) string {
		return good(func(c map[string]any) { m(submodOf(c)) })
	}
	payload, _ := json.Marshal(f.claims(t))
	pubDER, _ := x509.MarshalPKIXPublicKey(f.key.Public())
	// The classic confusion: HS256 with the verifier's public key as the
	// HMAC secret.
	hs := func(secret []byte) string {
		input := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64.EncodeToString(payload)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(input))
		return input + "." + b64.EncodeToString(m.Sum(nil))
	}
	embedded, _ := ear.MarshalJWK(&f.other.PublicKey)
	postureLog := func() (string, string) {
		tr, _ := posture.NewTracker()
		_ = tr.SetFlag(context.Background(), "mode", "safe")
		snap, _ := tr.Snapshot()
		return posture.Digest{Alg: posture.AlgSHA256, Value: snap.Head}.String(), b64.EncodeToString(snap.Log)
	}
	head, _ := postureLog()
	cases := []struct {
		name   string
		typ    string // media type; "" means ear.MediaType
		token  string
		code   postauth.Code
		reason postauth.Reason
		cause  error
	}{
		// Media type.
		{name: "not a passport media type", typ: "application/eat+jwt", token: good(func(map[string]any) {}), code: postauth.CodeInvalid, reason: postauth.ReasonFormatNotAccepted},
		{name: "another eat profile", typ: `application/eat+jwt; eat_profile="tag:example.com,2024:other"`, token: good(func(map[string]any) {}), code: postauth.CodeInvalid, reason: postauth.ReasonFormatNotAccepted},
		// Algorithm: none, confusion, others.
		{name: "alg none, no signature", token: jwtOf(t, `{"alg":"none"}`, f.claims(t), nil), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "alg none with an ES256 signature", token: jwtOf(t, `{"alg":"none","typ":"JWT"}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "alg NONE", token: jwtOf(t, `{"alg":"NONE"}`, f.claims(t), nil), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "HS256 keyed with the public key (DER)", token: hs(pubDER), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "HS256 keyed with the JWK", token: hs(embedded), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "ES384 header over an ES256 signature", token: jwtOf(t, `{"alg":"ES384"}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "RS256 header", token: jwtOf(t, `{"alg":"RS256"}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "alg in lower case", token: jwtOf(t, `{"alg":"es256"}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "no alg", token: jwtOf(t, `{"typ":"JWT"}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "alg not a string", token: jwtOf(t, `{"alg":["ES256"]}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "alg twice", token: jwtOf(t, `{"alg":"none","alg":"ES256"}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrMalformed},
		{name: "alg and ALG", token: jwtOf(t, `{"alg":"ES256","ALG":"none"}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrMalformed},
		{name: "embedded jwk of the signer", token: jwtOf(t, `{"alg":"ES256","jwk":`+string(embedded)+`}`, f.claims(t), f.other), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "jku", token: jwtOf(t, `{"alg":"ES256","jku":"https://evil.example/keys"}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "crit", token: jwtOf(t, `{"alg":"ES256","crit":["b64"],"b64":false}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		{name: "typ not JWT", token: jwtOf(t, `{"alg":"ES256","typ":"JOSE+JSON"}`, f.claims(t), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrAlgorithm},
		// Structure.
		{name: "two parts", token: strings.Join(strings.Split(good(func(map[string]any) {}), ".")[:2], "."), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrMalformed},
		{name: "five parts (JWE)", token: good(func(map[string]any) {}) + ".x.y", code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrMalformed},
		{name: "padded base64", token: strings.Replace(good(func(map[string]any) {}), ".", "=.", 1), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrMalformed},
		{name: "JSON serialization", token: `{"payload":"` + b64.EncodeToString(payload) + `","signatures":[]}`, code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrMalformed},
		{name: "short signature", token: good(func(map[string]any) {})[:len(good(func(map[string]any) {}))-4], code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "too large", token: strings.Repeat("a", ear.MaxTokenLen+1), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid, cause: ear.ErrMalformed},
		// Signature.
		{name: "signed by an untrusted key", token: jwtOf(t, goodHeader, f.claims(t), f.other), code: postauth.CodeInvalid, reason: postauth.ReasonEARSignatureInvalid, cause: ear.ErrUntrustedSigner},
		{name: "claims changed after signing", token: func() string {
			tok := good(func(map[string]any) {})
			parts := strings.Split(tok, ".")
			c := f.claims(t)
			submodOf(c)["ear.status"] = "affirming"
			c["iat"] = f.clock.Now().Unix() + 1
			p, _ := json.Marshal(c)
			return parts[0] + "." + b64.EncodeToString(p) + "." + parts[2]
		}(), code: postauth.CodeInvalid, reason: postauth.ReasonEARSignatureInvalid, cause: ear.ErrUntrustedSigner},
		// Claims.
		{name: "wrong profile", token: good(func(c map[string]any) { c["eat_profile"] = "tag:github.com,2024:confidential-containers/Trustee" }), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "no iat", token: good(func(c map[string]any) { delete(c, "iat") }), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "iat not an integer", token: good(func(c map[string]any) { c["iat"] = 1.5e9 + 0.5 }), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "no eat_nonce", token: good(func(c map[string]any) { delete(c, "eat_nonce") }), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "eat_nonce array", token: good(func(c map[string]any) { c["eat_nonce"] = []string{ear.EncodeNonce(f.ch.Binder)} }), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "eat_nonce too short", token: good(func(c map[string]any) { c["eat_nonce"] = ear.EncodeNonce([]byte("short")) }), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "no submods", token: good(func(c map[string]any) { c["submods"] = map[string]any{} }), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "no status", token: sub(func(s map[string]any) { delete(s, "ear.status") }), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "unknown status", token: sub(func(s map[string]any) { s["ear.status"] = "great" }), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "trust claim out of range", token: sub(func(s map[string]any) { s["ear.trustworthiness-vector"] = map[string]any{"hardware": 300} }), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "duplicate claim", token: jwtOf(t, goodHeader, json.RawMessage(strings.Replace(string(payload), `{`, `{"eat_nonce":"AAAAAAAAAAAAAAAAAAAAAA",`, 1)), f.key), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		// Binding.
		{name: "EAR of another connection (binder)", token: good(func(c map[string]any) {
			other := sha256.Sum256([]byte("another connection"))
			c["eat_nonce"] = ear.EncodeNonce(other[:])
		}), code: postauth.CodeInvalid, reason: postauth.ReasonBinderMismatch, cause: postauth.ErrBinderMismatch},
		{name: "key attestation names another key", token: sub(func(s map[string]any) {
			s["ear.veraison.key-attestation"] = map[string]any{"akpub": akpub(t, f.other.Public())}
		}), code: postauth.CodeInvalid, reason: postauth.ReasonKeyHashMismatch, cause: postauth.ErrKeyHashMismatch},
		{name: "no key attestation", token: sub(func(s map[string]any) { delete(s, "ear.veraison.key-attestation") }), code: postauth.CodeInvalid, reason: postauth.ReasonEARKeyAttestationMissing, cause: ear.ErrNoKeyAttestation},
		{name: "two submodules attest different keys", token: good(func(c map[string]any) {
			c["submods"].(map[string]any)["other"] = map[string]any{"ear.status": "affirming",
				"ear.trustworthiness-vector":   map[string]any{"instance-identity": 2},
				"ear.veraison.key-attestation": map[string]any{"akpub": akpub(t, f.other.Public())}}
		}), code: postauth.CodeInvalid, reason: postauth.ReasonEARKeyAttestationMissing},
		{name: "akpub not a key", token: sub(func(s map[string]any) {
			s["ear.veraison.key-attestation"] = map[string]any{"akpub": b64.EncodeToString([]byte("nope"))}
		}), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		{name: "annotated key hash of another key", token: sub(func(s map[string]any) {
			s["ear.veraison.annotated-evidence"].(map[string]any)[ear.AnnotationKeyHash] = posture.Digest{Alg: posture.AlgSHA256, Value: spkiHash(t, f.other.Public())}.String()
		}), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		// Freshness.
		{name: "expired (older than max age)", token: good(func(c map[string]any) { c["iat"] = f.clock.Now().Add(-ear.DefaultMaxAge - time.Second).Unix() }), code: postauth.CodeStale, reason: postauth.ReasonEARStale, cause: ear.ErrStale},
		{name: "exp passed", token: good(func(c map[string]any) { c["exp"] = f.clock.Now().Unix() }), code: postauth.CodeStale, reason: postauth.ReasonEARStale, cause: ear.ErrStale},
		{name: "iat in the future", token: good(func(c map[string]any) { c["iat"] = f.clock.Now().Add(time.Minute).Unix() }), code: postauth.CodeStale, reason: postauth.ReasonEARStale, cause: ear.ErrStale},
		// Posture (a log that does not replay to its head: the relying
		// party's check, TestPassportPostureReplayedByRelyingParty).
		{name: "posture head without log", token: sub(func(s map[string]any) {
			s["ear.veraison.annotated-evidence"].(map[string]any)[ear.AnnotationPostureHead] = head
		}), code: postauth.CodeInvalid, reason: postauth.ReasonEARInvalid},
		// Policy.
		{name: "status warning", token: sub(func(s map[string]any) { s["ear.status"] = "warning" }), code: postauth.CodePolicyDenied, reason: postauth.ReasonEARPolicyDenied, cause: ear.ErrDenied},
		{name: "status contraindicated", token: sub(func(s map[string]any) { s["ear.status"] = "contraindicated" }), code: postauth.CodePolicyDenied, reason: postauth.ReasonEARPolicyDenied, cause: ear.ErrDenied},
		{name: "status none", token: sub(func(s map[string]any) { s["ear.status"] = "none" }), code: postauth.CodePolicyDenied, reason: postauth.ReasonEARPolicyDenied, cause: ear.ErrDenied},
		{name: "required claim missing", token: sub(func(s map[string]any) { s["ear.trustworthiness-vector"] = map[string]any{"hardware": 2} }), code: postauth.CodePolicyDenied, reason: postauth.ReasonEARPolicyDenied, cause: ear.ErrDenied},
		{name: "required claim warning", token: sub(func(s map[string]any) { s["ear.trustworthiness-vector"] = map[string]any{"instance-identity": 32} }), code: postauth.CodePolicyDenied, reason: postauth.ReasonEARPolicyDenied, cause: ear.ErrDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			typ := tc.typ
			if typ == "" {
				typ = ear.MediaType
			}
			app, err := f.v.Verify(context.Background(), f.ch, postauth.Evidence{Type: typ, Value: []byte(tc.token)})
			if app != nil {
				t.Fatal("an appraisal with an error")
			}
			postauthtest.WantError(t, err, tc.code, tc.reason)
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Fatalf("want cause %v, got %v", tc.cause, err)
			}
		})
	}
}

// handEAR is a passport attester that answers every challenge with a
// hand-built EAR from the fixture's verifier key: eat_nonce the binder,
// the key attestation authPub, then edit applied to the claims.
type handEAR struct {
	tb      testing.TB
	f       *earFixture
	authPub crypto.PublicKey
	edit    func(c map[string]any)
}

func (h handEAR) Attest(_ context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	c := h.f.claims(h.tb)
	c["eat_nonce"] = ear.EncodeNonce(ch.Binder)
	submodOf(c)["ear.veraison.key-attestation"] = map[string]any{"akpub": akpub(h.tb, h.authPub)}
	if h.edit != nil {
		h.edit(c)
	}
	return postauth.Evidence{Type: ear.MediaType, Value: []byte(jwtOf(h.tb, goodHeader, c, h.f.key)), Kind: postauth.KindAttestationResult}, nil
}

// The passport Verifier reports the EAR's posture (head and log) without
// replaying it, as every format Verifier does; the relying party replays
// it once (postauth.RelyingParty.Verify), so a passport whose posture log
// does not reproduce its head never passes, and one that does gives the
// Result its replayed posture.
func TestPassportPostureReplayedByRelyingParty(t *testing.T) {
	f := newEARFixture(t)
	tr, err := posture.NewTracker()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.SetFlag(context.Background(), "mode", "safe"); err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	withPosture := func(head []byte) func(c map[string]any) {
		return func(c map[string]any) {
			a := submodOf(c)["ear.veraison.annotated-evidence"].(map[string]any)
			a[ear.AnnotationPostureHead] = posture.Digest{Alg: posture.AlgSHA256, Value: head}.String()
			a[ear.AnnotationPostureLog] = b64.EncodeToString(snap.Log)
		}
	}
	ep := postauthtest.MutualTLS(t)

	res, err := exchange(t, ep, handEAR{t, f, clientKey(ep), withPosture(snap.Head)}, f.v)
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Posture(); st == nil || st.Flags["mode"] != "safe" {
		t.Fatalf("replayed posture %+v", st)
	}

	wrongHead := make([]byte, 32)
	// The Verifier alone reports what the EAR carries...
	tok, _ := handEAR{t, f, f.authKey.Public(), withPosture(wrongHead)}.Attest(context.Background(), f.ch)
	app, err := f.v.Verify(context.Background(), f.ch, tok)
	if err != nil || string(app.PostureHead) != string(wrongHead) || len(app.PostureLog) == 0 {
		t.Fatalf("the Verifier did not report the EAR's posture: %+v, %v", app, err)
	}
	// ...and the relying party refuses it.
	_, err = exchange(t, ep, handEAR{t, f, clientKey(ep), withPosture(wrongHead)}, f.v)
	postauthtest.WantErrorIs(t, err, posture.ErrHeadMismatch, postauth.CodeInvalid, postauth.ReasonPostureInvalid)
}

func TestPassportPolicyViolations(t *testing.T) {
	f := newEARFixture(t, ear.WithPolicy(&ear.Policy{MinStatus: "warning", TrustVector: map[string]string{"hardware": "affirming", "executables": "warning"}}))
	c := f.claims(t)
	submodOf(c)["ear.status"] = "warning"
	submodOf(c)["ear.trustworthiness-vector"] = map[string]any{"hardware": 32}
	_, err := f.verify(jwtOf(t, goodHeader, c, f.key))
	var pe *postauth.Error
	if !errors.As(err, &pe) || pe.Code != postauth.CodePolicyDenied {
		t.Fatalf("want a policy denial, got %v", err)
	}
	want := []string{"trust_vector:software-eat/executables missing", "trust_vector:software-eat/hardware warning below affirming"}
	if strings.Join(pe.Violations, "|") != strings.Join(want, "|") {
		t.Fatalf("violations %q, want %q", pe.Violations, want)
	}
	// Warning is enough for the status; a warning-tier executables claim
	// and an affirming hardware claim pass.
	submodOf(c)["ear.trustworthiness-vector"] = map[string]any{"hardware": 2, "executables": 33}
	if _, err := f.verify(jwtOf(t, goodHeader, c, f.key)); err != nil {
		t.Fatal(err)
	}
}

func TestPassportHardwareBacked(t *testing.T) {
	f := newEARFixture(t)
	for _, tc := range []struct {
		name   string
		vector map[string]any
		want   bool
	}{
		{"hardware affirming", map[string]any{"hardware": 2}, true},
		{"hardware negative affirming", map[string]any{"hardware": -2}, true},
		{"hardware none", map[string]any{"hardware": 0}, false},
		{"hardware absent", map[string]any{"instance-identity": 2}, false},
		{"hardware warning", map[string]any{"hardware": 32}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.claims(t)
			submodOf(c)["ear.trustworthiness-vector"] = tc.vector
			app, err := f.verify(jwtOf(t, goodHeader, c, f.key))
			if err != nil {
				t.Fatal(err)
			}
			if app.HardwareBacked != tc.want {
				t.Fatalf("HardwareBacked %v, want %v", app.HardwareBacked, tc.want)
			}
		})
	}
}

func TestNewVerifierRefuses(t *testing.T) {
	rsaLike := big.NewInt(3) // not a key at all
	for _, tc := range []struct {
		name string
		keys []crypto.PublicKey
		opts []ear.VerifierOption
	}{
		{"no key", nil, nil},
		{"not an ECDSA key", []crypto.PublicKey{rsaLike}, nil},
		{"a private key", []crypto.PublicKey{postauthtest.NewKey(t)}, nil},
		{"invalid policy", []crypto.PublicKey{postauthtest.NewKey(t).Public()}, []ear.VerifierOption{ear.WithPolicy(&ear.Policy{MinStatus: "fine"})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ear.NewVerifier(tc.keys, tc.opts...); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// The passport attacks, over real TLS 1.3 with a real service on loopback.
func TestPassportAttacks(t *testing.T) {
	t.Run("EAR of another connection", func(t *testing.T) {
		w := newWorld(t)
		ep1 := postauthtest.MutualTLS(t)
		// The same client identity on both connections, so that only the
		// binder differs.
		ep2 := reconnect(t, ep1)
		rp := &replaying{inner: w.passport(t, ep1)}
		if _, err := exchange(t, ep1, rp, w.passportVerifier(t)); err != nil {
			t.Fatal(err)
		}
		_, err := exchange(t, ep2, rp, w.passportVerifier(t))
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
	})
	t.Run("EAR signed by an untrusted verifier", func(t *testing.T) {
		w, rogue := newWorld(t), newWorld(t)
		ep := postauthtest.MutualTLS(t)
		_, err := exchange(t, ep, rogue.passport(t, ep), w.passportVerifier(t))
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonEARSignatureInvalid)
	})
	t.Run("expired EAR", func(t *testing.T) {
		w := newWorld(t)
		ep := postauthtest.MutualTLS(t)
		late := func() time.Time { return time.Now().Add(ear.DefaultMaxAge + time.Minute) }
		_, err := exchange(t, ep, w.passport(t, ep), w.passportVerifier(t, ear.WithClock(late)))
		postauthtest.WantError(t, err, postauth.CodeStale, postauth.ReasonEARStale)
	})
	t.Run("key attestation names another key", func(t *testing.T) {
		w := newWorld(t)
		ep := postauthtest.MutualTLS(t)
		// The attester asks for a passport for another key than the one
		// that signs the authenticator: its own guard refuses, and a
		// verifier that does not check (stripping the guard) is caught by
		// the relying party.
		other := postauthtest.NewKey(t)
		a, err := ear.NewAttester(w.att, w.srv.URL(), other.Public())
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if _, err := exchange(t, ep, a, w.passportVerifier(t)); err == nil {
			t.Fatal("a passport for another key was produced")
		}
		// A trusted verifier that attests another key (signed here by
		// hand with the pinned key).
		forged := forgedPassport{key: w.signKey, akpub: other.Public()}
		_, err = exchange(t, ep, forged, w.passportVerifier(t))
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonKeyHashMismatch)
	})
	t.Run("none algorithm", func(t *testing.T) {
		w := newWorld(t)
		ep := postauthtest.MutualTLS(t)
		_, err := exchange(t, ep, forgedPassport{none: true, akpub: clientKey(ep)}, w.passportVerifier(t))
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonEARInvalid)
	})
}

// reconnect opens a second TLS connection with the same identities as ep.
func reconnect(tb testing.TB, ep *postauthtest.Endpoints) *postauthtest.Endpoints {
	tb.Helper()
	c, s := postauthtest.Pair(tb, ep.PKI.ClientConfig(&ep.ClientCert), ep.PKI.ServerConfig(ep.ServerCert))
	return &postauthtest.Endpoints{Client: c, Server: s, ClientCert: ep.ClientCert, ServerCert: ep.ServerCert, PKI: ep.PKI}
}

// forgedPassport answers with a hand-built EAR bound to the challenge's
// binder, attesting akpub, signed by key (or, with none, unsigned with
// alg none).
type forgedPassport struct {
	key   *ecdsa.PrivateKey
	akpub crypto.PublicKey
	none  bool
}

func (f forgedPassport) Attest(_ context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	sub := map[string]any{"ear.status": "affirming", "ear.trustworthiness-vector": map[string]any{"instance-identity": 2}}
	if f.akpub != nil {
		der, err := x509.MarshalPKIXPublicKey(f.akpub)
		if err != nil {
			return postauth.Evidence{}, err
		}
		sub["ear.veraison.key-attestation"] = map[string]any{"akpub": b64.EncodeToString(der)}
	}
	claims := map[string]any{"eat_profile": ear.Profile, "iat": time.Now().Unix(), "eat_nonce": ear.EncodeNonce(ch.Binder),
		"ear.verifier-id": map[string]any{"build": "x", "developer": "x"}, "submods": map[string]any{"x": sub}}
	payload, _ := json.Marshal(claims)
	header := goodHeader
	if f.none {
		header = `{"alg":"none"}`
	}
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString(payload)
	var sig []byte
	if f.key != nil {
		d := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, f.key, d[:])
		if err != nil {
			return postauth.Evidence{}, err
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return postauth.Evidence{Type: ear.MediaType, Value: []byte(input + "." + b64.EncodeToString(sig))}, nil
}
