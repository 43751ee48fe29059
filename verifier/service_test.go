package verifier_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	vear "github.com/veraison/ear"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/verifier"
)

// fixture is a service on loopback with a software EAT attester it trusts.
type fixture struct {
	key  *ecdsa.PrivateKey
	svc  *verifier.Service
	srv  *verifier.Server
	att  *softeat.Attester
	sv   *softeat.Verifier
	auth *ecdsa.PrivateKey // the authenticator key
	hc   *http.Client
}

func newFixture(tb testing.TB, opts ...verifier.Option) *fixture {
	tb.Helper()
	f := &fixture{auth: postauthtest.NewKey(tb), hc: &http.Client{}}
	f.att, f.sv = postauthtest.Software(tb)
	var err error
	if f.key, err = verifier.GenerateKey(); err != nil {
		tb.Fatal(err)
	}
	if f.svc, err = verifier.NewService(f.key, append([]verifier.Option{verifier.SoftEAT(f.sv)}, opts...)...); err != nil {
		tb.Fatal(err)
	}
	if f.srv, err = verifier.Start(nil, f.svc, nil); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.srv.Close() })
	return f
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(tb testing.TB, method, path string, header map[string]string, body []byte) response {
	tb.Helper()
	req, err := http.NewRequest(method, f.srv.URL()+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := f.hc.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{res.StatusCode, res.Header, b}
}

type sessionBody struct {
	Status string   `json:"status"`
	Nonce  string   `json:"nonce"`
	Expiry string   `json:"expiry"`
	Accept []string `json:"accept"`
	Result *string  `json:"result"`
}

func decodeSession(tb testing.TB, r response) sessionBody {
	tb.Helper()
	if ct := r.header.Get("Content-Type"); ct != ear.SessionMediaType {
		tb.Fatalf("content type %q (%s)", ct, r.body)
	}
	var s sessionBody
	if err := json.Unmarshal(r.body, &s); err != nil {
		tb.Fatal(err)
	}
	return s
}

var locationRE = regexp.MustCompile(`^session/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// open creates a session with nonce (nil: server-chosen) and returns its
// path and nonce.
func (f *fixture) open(tb testing.TB, nonce []byte) (string, []byte) {
	tb.Helper()
	q := ""
	if nonce != nil {
		q = "?nonce=" + base64.URLEncoding.EncodeToString(nonce)
	}
	r := f.do(tb, http.MethodPost, ear.NewSessionPath+q, map[string]string{"Accept": ear.SessionMediaType}, nil)
	if r.status != http.StatusCreated {
		tb.Fatalf("newSession: %d %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	if !locationRE.MatchString(loc) {
		tb.Fatalf("Location %q", loc)
	}
	s := decodeSession(tb, r)
	n, err := base64.URLEncoding.DecodeString(s.Nonce)
	if err != nil {
		tb.Fatal(err)
	}
	return "/challenge-response/v1/" + loc, n
}

// challenge is the Challenge of a session nonce for the fixture's
// authenticator key.
func (f *fixture) challenge(tb testing.TB, nonce []byte) postauth.Challenge {
	tb.Helper()
	return postauth.Challenge{Binder: nonce, KeyHash: keyHash(tb, f.auth.Public()), Hash: crypto.SHA256, Role: postauth.RoleClient}
}

func spki(tb testing.TB, pub crypto.PublicKey) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func keyHash(tb testing.TB, pub crypto.PublicKey) []byte {
	sum := sha256.Sum256(spki(tb, pub))
	return sum[:]
}

func (f *fixture) evidence(tb testing.TB, ch postauth.Challenge) postauth.Evidence {
	tb.Helper()
	ev, err := f.att.Attest(context.Background(), ch)
	if err != nil {
		tb.Fatal(err)
	}
	return ev
}

// submit posts ev to a session.
func (f *fixture) submit(tb testing.TB, path string, ev postauth.Evidence, extra map[string]string) response {
	tb.Helper()
	h := map[string]string{"Content-Type": ev.Type, "Accept": ear.SessionMediaType}
	for k, v := range extra {
		h[k] = v
	}
	return f.do(tb, http.MethodPost, path, h, ev.Value)
}

// claimsOf verifies an EAR with veraison/ear (jwx), independently of this
// module's own parser.
func claimsOf(tb testing.TB, token string, pub *ecdsa.PublicKey) *vear.AttestationResult {
	tb.Helper()
	var ar vear.AttestationResult
	if err := ar.Verify([]byte(token), jwa.ES256(), pub); err != nil {
		tb.Fatalf("veraison/ear does not verify the EAR: %v", err)
	}
	return &ar
}

func TestNewSession(t *testing.T) {
	f := newFixture(t)
	n32 := bytes.Repeat([]byte{0xfb}, 32) // base64 with + and / or - and _
	cases := []struct {
		name    string
		query   string
		accept  string
		status  int
		nonce   []byte // expected nonce, if fixed
		nonceSz int
	}{
		{name: "default nonce", status: 201, nonceSz: 32},
		{name: "nonceSize 8", query: "nonceSize=8", status: 201, nonceSz: 8},
		{name: "nonceSize 64", query: "nonceSize=64", status: 201, nonceSz: 64},
		{name: "nonceSize 7", query: "nonceSize=7", status: 400},
		{name: "nonceSize 65", query: "nonceSize=65", status: 400},
		{name: "nonceSize 256", query: "nonceSize=256", status: 400},
		{name: "nonceSize not a number", query: "nonceSize=x", status: 400},
		{name: "empty nonce is absent", query: "nonce=", status: 201, nonceSz: 32},
		{name: "nonce base64url padded", query: "nonce=" + base64.URLEncoding.EncodeToString(n32), status: 201, nonce: n32},
		{name: "nonce base64url raw", query: "nonce=" + base64.RawURLEncoding.EncodeToString(n32), status: 201, nonce: n32},
		{name: "nonce standard base64 (apiclient)", query: "nonce=" + strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(base64.StdEncoding.EncodeToString(n32)), status: 201, nonce: n32},
		{name: "nonce 7 bytes", query: "nonce=" + base64.URLEncoding.EncodeToString(make([]byte, 7)), status: 400},
		{name: "nonce 65 bytes", query: "nonce=" + base64.URLEncoding.EncodeToString(make([]byte, 65)), status: 400},
		{name: "nonce not base64", query: "nonce=!!!!", status: 400},
		{name: "nonce and nonceSize", query: "nonceSize=32&nonce=" + base64.URLEncoding.EncodeToString(n32), status: 400},
		{name: "nonce twice", query: "nonce=AAAAAAAAAAA%3D&nonce=AAAAAAAAAAA%3D", status: 400},
		{name: "query too long", query: "x=" + strings.Repeat("a", 600), status: 400},
		{name: "Accept any", accept: "*/*", status: 201, nonceSz: 32},
		{name: "Accept application/*", accept: "text/html, application/*;q=0.5", status: 201, nonceSz: 32},
		{name: "Accept JSON only", accept: "application/json", status: 406},
		{name: "Accept with q=0", accept: ear.SessionMediaType + ";q=0", status: 406},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.accept != "" {
				h["Accept"] = tc.accept
			}
			path := ear.NewSessionPath
			if tc.query != "" {
				path += "?" + tc.query
			}
			before := time.Now()
			r := f.do(t, http.MethodPost, path, h, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (%s)", r.status, tc.status, r.body)
			}
			if r.status != 201 {
				wantProblem(t, r)
				return
			}
			if !locationRE.MatchString(r.header.Get("Location")) {
				t.Fatalf("Location %q", r.header.Get("Location"))
			}
			s := decodeSession(t, r)
			n, err := base64.URLEncoding.Strict().DecodeString(s.Nonce)
			if err != nil {
				t.Fatalf("nonce %q not padded base64url", s.Nonce)
			}
			if tc.nonce != nil && !bytes.Equal(n, tc.nonce) || tc.nonce == nil && len(n) != tc.nonceSz {
				t.Fatalf("nonce %x", n)
			}
			exp, err := time.Parse(time.RFC3339, s.Expiry)
			if err != nil || exp.Before(before.Add(verifier.DefaultSessionTTL-time.Second)) || exp.After(time.Now().Add(verifier.DefaultSessionTTL+time.Second)) {
				t.Fatalf("expiry %q", s.Expiry)
			}
			if s.Status != "waiting" || s.Result != nil || len(s.Accept) != 1 || s.Accept[0] != softeat.MediaType {
				t.Fatalf("session %+v", s)
			}
		})
	}
	if r := f.do(t, http.MethodGet, ear.NewSessionPath, nil, nil); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET newSession: %d", r.status)
	}
}

func wantProblem(tb testing.TB, r response) {
	tb.Helper()
	if ct := r.header.Get("Content-Type"); ct != ear.ProblemMediaType {
		tb.Fatalf("problem content type %q", ct)
	}
	var p struct {
		Type   string
		Title  string
		Status int
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != r.status || p.Title == "" {
		tb.Fatalf("problem %s", r.body)
	}
}

func TestSubmitEvidence(t *testing.T) {
	f := newFixture(t)
	pv, err := ear.NewVerifier([]crypto.PublicKey{f.svc.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	keyHeader := map[string]string{ear.HeaderAuthenticatorKey: httpbind.EncodeBytes(spki(t, f.auth.Public()))}

	t.Run("affirming, with the authenticator key", func(t *testing.T) {
		path, nonce := f.open(t, nil)
		ch := f.challenge(t, nonce)
		r := f.submit(t, path, f.evidence(t, ch), keyHeader)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		s := decodeSession(t, r)
		if s.Status != "complete" || s.Result == nil {
			t.Fatalf("%+v", s)
		}
		ar := claimsOf(t, *s.Result, f.svc.PublicKey())
		sub := ar.Submods[softeat.Format]
		if sub == nil || *sub.Status != vear.TrustTierAffirming || sub.TrustVector.InstanceIdentity != vear.TrustworthyInstanceClaim ||
			sub.TrustVector.Hardware != vear.NoClaim || *ar.Nonce != ear.EncodeNonce(nonce) || *ar.Profile != ear.Profile {
			t.Fatalf("EAR %+v", ar)
		}
		ak, err := sub.GetKeyAttestation()
		if err != nil || !ak.(*ecdsa.PublicKey).Equal(f.auth.Public()) {
			t.Fatalf("key attestation %v %v", ak, err)
		}
		ann := *sub.VeraisonAnnotatedEvidence
		if ann[ear.AnnotationFormat] != softeat.Format || ann[ear.AnnotationMachineID] != base64.RawURLEncoding.EncodeToString(f.att.UEID()) ||
			ann[ear.AnnotationKeyHash] != "sha-256:"+hex.EncodeToString(ch.KeyHash) {
			t.Fatalf("annotations %v", ann)
		}
		// The passport Verifier accepts it too.
		if _, err := pv.Verify(context.Background(), ch, postauth.Evidence{Type: ear.MediaType, Value: []byte(*s.Result)}); err != nil {
			t.Fatal(err)
		}
		// GET returns the result; one Evidence per session; DELETE.
		g := f.do(t, http.MethodGet, path, map[string]string{"Accept": ear.SessionMediaType}, nil)
		if g.status != 200 || decodeSession(t, g).Result == nil || *decodeSession(t, g).Result != *s.Result {
			t.Fatalf("GET %d %s", g.status, g.body)
		}
		if r := f.submit(t, path, f.evidence(t, ch), nil); r.status != http.StatusConflict {
			t.Fatalf("second Evidence: %d", r.status)
		}
		if d := f.do(t, http.MethodDelete, path, nil, nil); d.status != http.StatusNoContent {
			t.Fatalf("DELETE %d", d.status)
		}
		if g := f.do(t, http.MethodGet, path, nil, nil); g.status != 404 {
			t.Fatalf("GET after DELETE %d", g.status)
		}
		if d := f.do(t, http.MethodDelete, path, nil, nil); d.status != 404 {
			t.Fatalf("second DELETE %d", d.status)
		}
	})
	t.Run("affirming, without the key: the Evidence's key hash, no key attestation", func(t *testing.T) {
		path, nonce := f.open(t, nil)
		ch := f.challenge(t, nonce)
		r := f.submit(t, path, f.evidence(t, ch), nil)
		s := decodeSession(t, r)
		sub := claimsOf(t, *s.Result, f.svc.PublicKey()).Submods[softeat.Format]
		if *sub.Status != vear.TrustTierAffirming || sub.VeraisonKeyAttestation != nil ||
			(*sub.VeraisonAnnotatedEvidence)[ear.AnnotationKeyHash] != "sha-256:"+hex.EncodeToString(ch.KeyHash) {
			t.Fatalf("submod %+v", sub)
		}
	})
	t.Run("CMW-wrapped Evidence", func(t *testing.T) {
		path, nonce := f.open(t, nil)
		rec, err := postauth.EncodeCMW(f.evidence(t, f.challenge(t, nonce)), postauth.CMWCBOR)
		if err != nil {
			t.Fatal(err)
		}
		r := f.submit(t, path, postauth.Evidence{Type: "application/cmw+cbor", Value: rec}, nil)
		if r.status != 200 || *claimsOf(t, *decodeSession(t, r).Result, f.svc.PublicKey()).Submods[softeat.Format].Status != vear.TrustTierAffirming {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	contra := []struct {
		name    string
		ev      func(nonce []byte) postauth.Evidence
		header  map[string]string
		problem string
	}{
		{"Evidence over another nonce", func(nonce []byte) postauth.Evidence {
			return f.evidence(t, f.challenge(t, bytes.Repeat([]byte{1}, 32)))
		}, keyHeader, "binder_mismatch"},
		{"Evidence for another key than the one sent", func(nonce []byte) postauth.Evidence {
			ch := f.challenge(t, nonce)
			ch.KeyHash = keyHash(t, postauthtest.NewKey(t).Public())
			return f.evidence(t, ch)
		}, keyHeader, "key_hash_mismatch"},
		{"untrusted attester", func(nonce []byte) postauth.Evidence {
			stranger, _ := postauthtest.Software(t)
			ev, err := stranger.Attest(context.Background(), f.challenge(t, nonce))
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}, nil, "untrusted_attester"},
		{"garbage", func([]byte) postauth.Evidence {
			return postauth.Evidence{Type: softeat.MediaType, Value: []byte("garbage")}
		}, nil, "evidence_invalid"},
	}
	for _, tc := range contra {
		t.Run(tc.name, func(t *testing.T) {
			path, nonce := f.open(t, nil)
			r := f.submit(t, path, tc.ev(nonce), tc.header)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			sub := claimsOf(t, *decodeSession(t, r).Result, f.svc.PublicKey()).Submods[softeat.Format]
			if *sub.Status != vear.TrustTierContraindicated || sub.VeraisonKeyAttestation != nil || sub.VeraisonAnnotatedEvidence != nil ||
				(*sub.VeraisonPolicyClaims)["problem"] != tc.problem {
				t.Fatalf("submod %+v %v", sub, sub.VeraisonPolicyClaims)
			}
		})
	}
	errs := []struct {
		name   string
		path   func() string
		header map[string]string
		body   []byte
		status int
	}{
		{"unknown session", func() string { return ear.SessionPath + "00000000-0000-4000-8000-000000000000" }, nil, []byte("x"), 404},
		{"bad session id", func() string { return ear.SessionPath + "not-a-uuid" }, nil, []byte("x"), 400},
		{"empty body", func() string { p, _ := f.open(t, nil); return p }, nil, nil, 400},
		{"too large", func() string { p, _ := f.open(t, nil); return p }, nil, make([]byte, verifier.MaxEvidenceBody+1), 413},
		{"unsupported media type", func() string { p, _ := f.open(t, nil); return p }, map[string]string{"Content-Type": "application/vnd.enacttrust.tpm-evidence"}, []byte("x"), 415},
		{"no media type", func() string { p, _ := f.open(t, nil); return p }, map[string]string{"Content-Type": ""}, []byte("x"), 415},
		{"bad CMW", func() string { p, _ := f.open(t, nil); return p }, map[string]string{"Content-Type": "application/cmw+json"}, []byte("[1,2"), 400},
		{"Accept mismatch", func() string { p, _ := f.open(t, nil); return p }, map[string]string{"Accept": "text/plain"}, []byte("x"), 406},
		{"key header garbage", func() string { p, _ := f.open(t, nil); return p }, map[string]string{ear.HeaderAuthenticatorKey: ":AAAA:"}, []byte("x"), 400},
		{"key header not a byte sequence", func() string { p, _ := f.open(t, nil); return p }, map[string]string{ear.HeaderAuthenticatorKey: "abc"}, []byte("x"), 400},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Content-Type": softeat.MediaType, "Accept": ear.SessionMediaType}
			for k, v := range tc.header {
				h[k] = v
			}
			r := f.do(t, http.MethodPost, tc.path(), h, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (%s)", r.status, tc.status, r.body)
			}
			wantProblem(t, r)
			if tc.status == 415 && r.header.Get("Accept") != softeat.MediaType {
				t.Fatalf("Accept %q", r.header.Get("Accept"))
			}
		})
	}
	t.Run("non-canonical key", func(t *testing.T) {
		// An SPKI with explicit curve parameters is not what the EAR would
		// carry: refused.
		path, nonce := f.open(t, nil)
		der := spki(t, f.auth.Public())
		long := append([]byte{0x30, 0x81, byte(len(der) - 2)}, der[2:]...)
		r := f.submit(t, path, f.evidence(t, f.challenge(t, nonce)), map[string]string{ear.HeaderAuthenticatorKey: httpbind.EncodeBytes(long)})
		if r.status != 400 {
			t.Fatalf("status %d", r.status)
		}
	})
}

func TestWellKnown(t *testing.T) {
	f := newFixture(t)
	for _, accept := range []string{"", ear.DiscoveryMediaType, "application/json"} {
		r := f.do(t, http.MethodGet, ear.WellKnownPath, map[string]string{"Accept": accept}, nil)
		if r.status != 200 || r.header.Get("Content-Type") != ear.DiscoveryMediaType {
			t.Fatalf("%q: %d %q", accept, r.status, r.header.Get("Content-Type"))
		}
		var doc struct {
			Key       json.RawMessage   `json:"ear-verification-key"`
			Media     []string          `json:"media-types"`
			Version   string            `json:"version"`
			State     string            `json:"service-state"`
			Endpoints map[string]string `json:"api-endpoints"`
		}
		if err := json.Unmarshal(r.body, &doc); err != nil {
			t.Fatal(err)
		}
		pub, err := ear.ParseJWK(doc.Key)
		if err != nil || !pub.Equal(f.svc.PublicKey()) {
			t.Fatalf("key %s %v", doc.Key, err)
		}
		if len(doc.Media) != 1 || doc.Media[0] != softeat.MediaType || doc.State != "READY" || doc.Version == "" ||
			doc.Endpoints["newChallengeResponseSession"] != ear.NewSessionPath {
			t.Fatalf("%+v", doc)
		}
	}
	if r := f.do(t, http.MethodGet, ear.WellKnownPath, map[string]string{"Accept": "text/html"}, nil); r.status != 406 {
		t.Fatalf("status %d", r.status)
	}
}

func TestSessionLifetime(t *testing.T) {
	clock := postauthtest.NewClock(time.Unix(1_800_000_000, 0))
	f := newFixture(t, verifier.WithClock(clock.Now), verifier.WithSessionTTL(time.Minute), verifier.WithMaxSessions(2))
	p1, _ := f.open(t, nil)
	f.open(t, nil)
	r := f.do(t, http.MethodPost, ear.NewSessionPath, nil, nil)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("third session: %d", r.status)
	}
	clock.Advance(59 * time.Second)
	if g := f.do(t, http.MethodGet, p1, nil, nil); g.status != 200 {
		t.Fatalf("before expiry: %d", g.status)
	}
	clock.Advance(time.Second)
	if g := f.do(t, http.MethodGet, p1, nil, nil); g.status != 404 {
		t.Fatalf("after expiry: %d", g.status)
	}
	// Expired sessions make room.
	f.open(t, nil)
	f.open(t, nil)
}

func TestSessionExpiredBeforeEvidence(t *testing.T) {
	clock := postauthtest.NewClock(time.Unix(1_800_000_000, 0))
	f := newFixture(t, verifier.WithClock(clock.Now), verifier.WithSessionTTL(time.Minute))
	path, nonce := f.open(t, nil)
	ev := f.evidence(t, f.challenge(t, nonce))
	clock.Advance(time.Minute)
	if r := f.submit(t, path, ev, nil); r.status != 404 {
		t.Fatalf("Evidence for an expired session: %d", r.status)
	}
}

func TestResultBudget(t *testing.T) {
	f := newFixture(t, verifier.WithMaxResultBytes(2000))
	path, nonce := f.open(t, nil)
	if r := f.submit(t, path, f.evidence(t, f.challenge(t, nonce)), nil); r.status != 200 {
		t.Fatalf("first: %d", r.status)
	}
	path, nonce = f.open(t, nil)
	if r := f.submit(t, path, f.evidence(t, f.challenge(t, nonce)), nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("second: %d", r.status)
	}
}

// blocking is a format verifier that waits until released.
type blocking struct {
	entered chan struct{}
	release chan struct{}
	inner   postauth.Verifier
}

func (b *blocking) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.inner.Verify(ctx, ch, ev)
}

func TestMaxConcurrent(t *testing.T) {
	base := newFixture(t)
	b := &blocking{entered: make(chan struct{}, 1), release: make(chan struct{}), inner: base.sv}
	key, _ := verifier.GenerateKey()
	svc, err := verifier.NewService(key, verifier.WithFormat("x", softeat.MediaType, b, softeat.Binding), verifier.WithMaxConcurrent(1))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := verifier.Start(nil, svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f := &fixture{svc: svc, srv: srv, att: base.att, auth: base.auth, hc: &http.Client{}}
	p1, n1 := f.open(t, nil)
	p2, n2 := f.open(t, nil)
	done := make(chan response, 1)
	go func() { done <- f.submit(t, p1, f.evidence(t, f.challenge(t, n1)), nil) }()
	<-b.entered
	if r := f.submit(t, p2, f.evidence(t, f.challenge(t, n2)), nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("second appraisal: %d", r.status)
	}
	close(b.release)
	if r := <-done; r.status != 200 {
		t.Fatalf("first appraisal: %d", r.status)
	}
	// The refused session was not consumed.
	if r := f.submit(t, p2, f.evidence(t, f.challenge(t, n2)), nil); r.status != 200 {
		t.Fatalf("retry: %d", r.status)
	}
}

// down is a format verifier that cannot reach a verdict.
type down struct{}

func (down) Verify(context.Context, postauth.Challenge, postauth.Evidence) (*postauth.Appraisal, error) {
	return nil, postauth.NewError(postauth.CodeUnavailable, "verifier_unavailable", errors.New("backend down"))
}

func TestNoVerdictIs500(t *testing.T) {
	key, _ := verifier.GenerateKey()
	svc, err := verifier.NewService(key, verifier.WithFormat("x", softeat.MediaType, down{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := verifier.Start(nil, svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f := &fixture{svc: svc, srv: srv, hc: &http.Client{}}
	path, _ := f.open(t, nil)
	r := f.submit(t, path, postauth.Evidence{Type: softeat.MediaType, Value: []byte("x")}, nil)
	if r.status != 500 {
		t.Fatalf("status %d", r.status)
	}
	wantProblem(t, r)
	if s := decodeSession(t, f.do(t, http.MethodGet, path, nil, nil)); s.Status != "failed" || s.Result != nil {
		t.Fatalf("%+v", s)
	}
}

func TestNoEvidenceInLogs(t *testing.T) {
	var buf postauthtest.SyncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFixture(t, verifier.WithLogger(logger))
	var secrets []string
	for _, stale := range []bool{false, true} {
		path, nonce := f.open(t, nil)
		ch := f.challenge(t, nonce)
		if stale {
			ch.Binder = bytes.Repeat([]byte{3}, 32)
		}
		ev := f.evidence(t, ch)
		r := f.submit(t, path, ev, nil)
		s := decodeSession(t, r)
		for _, b := range [][]byte{ev.Value, ev.Value[len(ev.Value)-24:], nonce} {
			secrets = append(secrets, hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b))
		}
		secrets = append(secrets, *s.Result, strings.Split(*s.Result, ".")[1][:24])
	}
	out := buf.String()
	if !strings.Contains(out, "verifier request") {
		t.Fatal("nothing logged")
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("the log carries Evidence, a nonce or an EAR:\n%s", out)
		}
	}
}

func TestTLS(t *testing.T) {
	pki := postauthtest.New(t)
	cert := pki.Issue(t, "localhost", postauthtest.ServerAuth())
	att, sv := postauthtest.Software(t)
	key, _ := verifier.GenerateKey()
	svc, err := verifier.NewService(key, verifier.SoftEAT(sv))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := verifier.Start(nil, svc, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !strings.HasPrefix(srv.URL(), "https://") {
		t.Fatal(srv.URL())
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS13}}}
	rv, err := ear.NewRemoteVerifier(srv.URL(), ear.WithHTTPClient(hc), ear.WithTrustOnFirstFetch(),
		ear.WithLocalBinding(softeat.MediaType, softeat.Binding))
	if err != nil {
		t.Fatal(err)
	}
	defer rv.Close()
	auth := postauthtest.NewKey(t)
	b := sha256.Sum256([]byte("binder"))
	ch := postauth.Challenge{Binder: b[:], KeyHash: keyHash(t, auth.Public()), Hash: crypto.SHA256}
	ev, err := att.Attest(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rv.Verify(context.Background(), ch, ev); err != nil {
		t.Fatal(err)
	}
	// Without trusting the verifier's certificate there is no verdict.
	rv2, _ := ear.NewRemoteVerifier(srv.URL(), ear.WithVerifierKeys(svc.PublicKey()), ear.WithLocalBinding(softeat.MediaType, softeat.Binding))
	defer rv2.Close()
	if _, err := rv2.Verify(context.Background(), ch, ev); postauth.CodeOf(err) != postauth.CodeUnavailable {
		t.Fatalf("untrusted TLS: %v", err)
	}
}

func TestNewServiceRefuses(t *testing.T) {
	_, sv := postauthtest.Software(t)
	key, _ := verifier.GenerateKey()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, tc := range []struct {
		name string
		key  *ecdsa.PrivateKey
		opts []verifier.Option
	}{
		{"nil key", nil, []verifier.Option{verifier.SoftEAT(sv)}},
		{"P-384 key", p384, []verifier.Option{verifier.SoftEAT(sv)}},
		{"no format", key, nil},
		{"bad media type", key, []verifier.Option{verifier.WithFormat("x", "nope", sv, nil)}},
		{"nil verifier", key, []verifier.Option{verifier.WithFormat("x", softeat.MediaType, nil, nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := verifier.NewService(tc.key, tc.opts...); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// Options ignore nil and zero values: the default stays (CONTRIBUTING.md,
// configuration style).
func TestZeroOptionsKeepDefaults(t *testing.T) {
	f := newFixture(t, verifier.WithSessionTTL(0), verifier.WithMaxSessions(0), verifier.WithMaxConcurrent(0),
		verifier.WithMaxResultBytes(0), verifier.WithVerifierID("", ""), verifier.WithRand(nil), verifier.WithClock(nil), verifier.WithLogger(nil))
	before := time.Now()
	path, nonce := f.open(t, nil)
	g := decodeSession(t, f.do(t, http.MethodGet, path, map[string]string{"Accept": ear.SessionMediaType}, nil))
	if exp, err := time.Parse(time.RFC3339, g.Expiry); err != nil || exp.Before(before.Add(verifier.DefaultSessionTTL-time.Second)) {
		t.Fatalf("expiry %q: not the default TTL", g.Expiry)
	}
	r := f.submit(t, path, f.evidence(t, f.challenge(t, nonce)), nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	ar := claimsOf(t, *decodeSession(t, r).Result, f.svc.PublicKey())
	if ar.VerifierID == nil || *ar.VerifierID.Build != verifier.DefaultBuild || *ar.VerifierID.Developer != verifier.DefaultDeveloper {
		t.Fatalf("verifier id %+v", ar.VerifierID)
	}
}

// keyBlindVerifier is a DELIBERATELY CARELESS format verifier: it accepts
// Evidence for whatever key it names (it passes the Evidence's own key
// hash as the Challenge's) and reports that key hash. The service must
// still not attest a key the Evidence does not vouch for.
type keyBlindVerifier struct{ inner *softeat.Verifier }

func (k keyBlindVerifier) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	_, kh, err := softeat.Binding(ch, ev)
	if err != nil {
		return nil, err
	}
	ch.KeyHash = kh
	return k.inner.Verify(ctx, ch, ev)
}

func TestServiceAttestsOnlyTheKeyTheEvidenceNames(t *testing.T) {
	base := newFixture(t)
	key, _ := verifier.GenerateKey()
	svc, err := verifier.NewService(key, verifier.WithFormat(softeat.Format, softeat.MediaType, keyBlindVerifier{base.sv}, softeat.Binding))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := verifier.Start(nil, svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f := &fixture{svc: svc, srv: srv, att: base.att, auth: base.auth, hc: &http.Client{}}
	path, nonce := f.open(t, nil)
	// Evidence for the fixture's key, but the caller claims another key.
	other := postauthtest.NewKey(t)
	r := f.submit(t, path, f.evidence(t, f.challenge(t, nonce)), map[string]string{ear.HeaderAuthenticatorKey: httpbind.EncodeBytes(spki(t, other.Public()))})
	sub := claimsOf(t, *decodeSession(t, r).Result, svc.PublicKey()).Submods[softeat.Format]
	if *sub.Status != vear.TrustTierAffirming {
		t.Fatalf("status %v", *sub.Status)
	}
	if sub.VeraisonKeyAttestation != nil {
		t.Fatal("the EAR attests a key the Evidence does not vouch for")
	}
	// The claimed key is attested when the Evidence names it.
	path, nonce = f.open(t, nil)
	r = f.submit(t, path, f.evidence(t, f.challenge(t, nonce)), map[string]string{ear.HeaderAuthenticatorKey: httpbind.EncodeBytes(spki(t, f.auth.Public()))})
	if sub := claimsOf(t, *decodeSession(t, r).Result, svc.PublicKey()).Submods[softeat.Format]; sub.VeraisonKeyAttestation == nil {
		t.Fatal("no key attestation for the named key")
	}
}
