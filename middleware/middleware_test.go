package middleware_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reattest/reattest/internal/e2e"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

func TestHappyPathAndCache(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		c, _ := h.Client()
		status, body, hdr := e2e.Do(t, c, "PUT", h.URL("/config"), "v=1")
		if status != 200 || !strings.Contains(body, "attested=true format=software-eat") {
			t.Fatalf("first config change: %d %q", status, body)
		}
		if hdr.Get(middleware.HeaderResult) == "" {
			t.Error("no Attestation-Result on the verified response")
		}
		if n := h.Attester.Count(); n != 1 {
			t.Fatalf("attestations = %d, want 1", n)
		}
		// Second request: served from the connection's cached verdict.
		status, body, _ = e2e.Do(t, c, "PUT", h.URL("/config"), "v=2")
		if status != 200 || !strings.Contains(body, "attested=true") {
			t.Fatalf("second config change: %d %q", status, body)
		}
		if n := h.Attester.Count(); n != 1 {
			t.Fatalf("attestations = %d after a cached request, want 1", n)
		}
		if h.Calls("/config") != 2 {
			t.Fatalf("handler ran %d times", h.Calls("/config"))
		}
		wantProto := "HTTP/1.1"
		if h2 {
			wantProto = "HTTP/2.0"
		}
		resp, err := c.Get(h.URL("/search"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Proto != wantProto {
			t.Fatalf("protocol %s, want %s", resp.Proto, wantProto)
		}
	})
}

func TestMaxAgeExpiry(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		c, _ := h.Client()
		if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=1"); s != 200 {
			t.Fatal(s)
		}
		h.Clock.Advance(61 * time.Second) // route MaxAge is one minute
		status, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=2")
		if status != 200 {
			t.Fatalf("after expiry: %d", status)
		}
		if n := h.Attester.Count(); n != 2 {
			t.Fatalf("attestations = %d, want 2 (re-challenged after max-age)", n)
		}
		if e := h.FindActivity(transports.ActivityChallenged, postauth.ReasonAttestationStale); e == nil {
			t.Error("no attestation_stale challenge seen")
		}
	})
}

func TestUnannotatedRoutesUntouched(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		// A client with no attestation support at all.
		c := &http.Client{Transport: h.BaseTransport()}
		status, body, hdr := e2e.Do(t, c, "GET", h.URL("/search"), "")
		if status != 200 || !strings.Contains(body, "attested=false") {
			t.Fatalf("search: %d %q", status, body)
		}
		if hdr.Get("WWW-Authenticate") != "" || hdr.Get(middleware.HeaderAttestationRequest) != "" {
			t.Fatal("unannotated route got attestation headers")
		}
	})
}

// Downgrade: a client that does not support attestation gets no way in.
func TestDowngradeRefused(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		c := &http.Client{Transport: h.BaseTransport()}
		for _, tc := range []struct{ method, path string }{{"POST", "/pay"}, {"PUT", "/config"}} {
			status, _, hdr := e2e.Do(t, c, tc.method, h.URL(tc.path), "amount=1")
			if status != http.StatusUnauthorized {
				t.Fatalf("%s %s without attestation: %d", tc.method, tc.path, status)
			}
			ch, ok := httpbind.ParseChallenge(hdr.Values("WWW-Authenticate"))
			if !ok || ch.Error != postauth.ReasonAttestationRequired || hdr.Get(middleware.HeaderAttestationRequest) == "" {
				t.Fatalf("bad challenge: %v %q", ok, hdr.Values("WWW-Authenticate"))
			}
			if hdr.Get("Content-Type") != "application/problem+json" {
				t.Errorf("content type %q", hdr.Get("Content-Type"))
			}
		}
		if h.Calls("/pay")+h.Calls("/config") != 0 {
			t.Fatal("a protected handler ran without attestation")
		}
	})
}

func TestOperationMode(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		c, _ := h.Client()
		for i := range 3 {
			status, body, _ := e2e.Do(t, c, "POST", h.URL("/pay"), "amount=1")
			if status != 200 || !strings.Contains(body, "attested=true") {
				t.Fatalf("payment %d: %d %q", i, status, body)
			}
		}
		if n := h.Attester.Count(); n != 3 {
			t.Fatalf("attestations = %d, want one per payment (3)", n)
		}
	})
}

// Operation swap: the authenticator made for amount=1 is sent with
// amount=1000.
func TestAttackOperationSwap(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		rc := h.Raw()
		chal := rc.Send("POST", "/pay", "amount=1", nil)
		if chal.StatusCode != 401 {
			t.Fatalf("no challenge: %d", chal.StatusCode)
		}
		att := rc.Answer(chal)
		swapped := rc.Send("POST", "/pay", "amount=1000", map[string]string{middleware.HeaderAttestation: att})
		if swapped.StatusCode != http.StatusUnauthorized {
			t.Fatalf("swapped operation: %d", swapped.StatusCode)
		}
		if h.Calls("/pay") != 0 {
			t.Fatal("payment handler ran for a swapped operation")
		}
		// Another target is another operation too.
		chal = rc.Send("POST", "/pay", "amount=1", nil)
		att = rc.Answer(chal)
		if r := rc.Send("POST", "/pay?to=mallory", "amount=1", map[string]string{middleware.HeaderAttestation: att}); r.StatusCode != 401 {
			t.Fatalf("swapped target: %d", r.StatusCode)
		}
		// The honest retry works.
		chal = rc.Send("POST", "/pay", "amount=1", nil)
		att = rc.Answer(chal)
		if r := rc.Send("POST", "/pay", "amount=1", map[string]string{middleware.HeaderAttestation: att}); r.StatusCode != 200 {
			t.Fatalf("honest retry: %d", r.StatusCode)
		}
	})
}

// Relay: an Attestation header made on connection A is sent on B.
func TestAttackRelay(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		a, b := h.Raw(), h.Raw()
		att := a.Answer(a.Send("PUT", "/config", "", nil))
		b.Send("PUT", "/config", "", nil) // B has its own challenge pending
		if r := b.Send("PUT", "/config", "", map[string]string{middleware.HeaderAttestation: att}); r.StatusCode != 401 {
			t.Fatalf("relayed attestation accepted on another connection: %d", r.StatusCode)
		}
		if h.Calls("/config") != 0 {
			t.Fatal("handler ran")
		}
		// Still good on A, where it was made... no: a relay attempt does not
		// consume A's context, so the owner can still use it.
		if r := a.Send("PUT", "/config", "", map[string]string{middleware.HeaderAttestation: att}); r.StatusCode != 200 {
			t.Fatalf("owner's attestation: %d", r.StatusCode)
		}
	})
}

func TestAttackReplay(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		rc := h.Raw()
		att := rc.Answer(rc.Send("POST", "/pay", "amount=1", nil))
		hdr := map[string]string{middleware.HeaderAttestation: att}
		if r := rc.Send("POST", "/pay", "amount=1", hdr); r.StatusCode != 200 {
			t.Fatalf("first use: %d", r.StatusCode)
		}
		r := rc.Send("POST", "/pay", "amount=1", hdr)
		if r.StatusCode != 401 {
			t.Fatalf("replayed payment: %d", r.StatusCode)
		}
		if h.Calls("/pay") != 1 {
			t.Fatalf("payment handler ran %d times", h.Calls("/pay"))
		}
	})
}

func TestProblemBodyNamesReason(t *testing.T) {
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(e2e.StandardRoutes()...))
	rc := h.Raw()
	att := rc.Answer(rc.Send("POST", "/pay", "amount=1", nil))
	req, _ := http.NewRequest("POST", h.URL("/pay"), strings.NewReader("amount=1000"))
	req.Header.Set(middleware.HeaderAttestation, att)
	resp, err := rc.CC.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p middleware.Problem
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.Status != 401 || p.Reason != "operation_mismatch" || p.Type != middleware.ProblemType("invalid-attestation") {
		t.Fatalf("problem = %+v", p)
	}
}

func TestPostureHintChangeRechallenges(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		tr, err := posture.NewTracker()
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		tr.SetModel(ctx, posture.Model{Name: "m", Version: "1", Digest: posture.DigestOf([]byte("weights"))})
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...), e2e.WithAttester(softeat.WithPosture(tr)))
		c, _ := h.Client(transports.WithPosture(tr))
		if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=1"); s != 200 {
			t.Fatal(s)
		}
		if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=2"); s != 200 || h.Attester.Count() != 1 {
			t.Fatalf("cached request: %d, %d attestations", s, h.Attester.Count())
		}
		tr.EnableTool(ctx, posture.Tool{Name: "shell", Version: "1", Digest: posture.DigestOf([]byte("sh"))})
		if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=3"); s != 200 {
			t.Fatal(s)
		}
		if n := h.Attester.Count(); n != 2 {
			t.Fatalf("attestations = %d, want 2 (posture changed)", n)
		}
		if h.FindActivity(transports.ActivityChallenged, postauth.ReasonPostureChanged) == nil {
			t.Error("no posture_changed challenge seen")
		}
	})
}

func TestPolicyDenial(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		deny := func(ctx context.Context, res *postauth.Result) error {
			return &postauth.Error{Code: postauth.CodePolicyDenied, Reason: "posture_denied", Violations: []string{"tool:shell forbidden", "model:x not allowed"}}
		}
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(
			middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation, Appraise: deny})))
		c, _ := h.Client()
		status, body, hdr := e2e.Do(t, c, "POST", h.URL("/pay"), "amount=1")
		if status != http.StatusForbidden {
			t.Fatalf("status %d", status)
		}
		var p middleware.Problem
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Violations) != 2 || p.Violations[0] != "tool:shell forbidden" || p.Reason != "posture_denied" {
			t.Fatalf("problem = %+v", p)
		}
		if hdr.Get("Content-Type") != "application/problem+json" {
			t.Error(hdr.Get("Content-Type"))
		}
		if strings.Contains(body, "cwt") || strings.Contains(body, "nonce") || strings.Contains(body, "ueid") {
			t.Errorf("problem leaks evidence details: %s", body)
		}
		if h.Calls("/pay") != 0 {
			t.Fatal("denied payment ran")
		}
	})
}

// verifierFunc adapts a function to postauth.Verifier.
type verifierFunc func(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error)

func (f verifierFunc) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	return f(ctx, ch, ev)
}

func TestVerifierDownOrSlowFailsClosed(t *testing.T) {
	cases := []struct {
		name string
		v    verifierFunc
	}{
		{"down", func(context.Context, postauth.Challenge, postauth.Evidence) (*postauth.Appraisal, error) {
			return nil, postauth.NewError(postauth.CodeUnavailable, "verifier_unreachable", errors.New("connection refused"))
		}},
		{"slow", func(ctx context.Context, _ postauth.Challenge, _ postauth.Evidence) (*postauth.Appraisal, error) {
			<-ctx.Done() // never answers in time
			return nil, ctx.Err()
		}},
	}
	for _, tc := range cases {
		e2e.EachProto(t, func(t *testing.T, h2 bool) {
			t.Run(tc.name, func(t *testing.T) {
				h := e2e.New(t, e2e.HTTP2(h2), e2e.WithVerifier(tc.v), e2e.WithGuard(append([]middleware.Option{
					middleware.WithVerifyTimeout(50 * time.Millisecond), middleware.WithRetryAfter(7 * time.Second),
				}, e2e.StandardRoutes()...)...))
				c, _ := h.Client()
				status, _, hdr := e2e.Do(t, c, "POST", h.URL("/pay"), "amount=1")
				if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "7" {
					t.Fatalf("status %d Retry-After %q", status, hdr.Get("Retry-After"))
				}
				if h.Calls("/pay") != 0 {
					t.Fatal("handler ran without a verdict")
				}
			})
		})
	}
}

func TestMalformedAndOversizedHeaders(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		rc := h.Raw()
		rc.Send("PUT", "/config", "", nil)
		for _, tc := range []struct{ name, hdr, val string }{
			{"not-sf", middleware.HeaderAttestation, "hello"},
			{"bad-base64", middleware.HeaderAttestation, ":!!!:"},
			{"garbage-authenticator", middleware.HeaderAttestation, ":AAAA:"},
			{"huge", middleware.HeaderAttestation, ":" + strings.Repeat("A", 200_000) + ":"},
			{"bad-params", middleware.HeaderAttestation, ":AAAA:;BAD"},
			{"posture-garbage", middleware.HeaderPosture, strings.Repeat("x", 5000)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := rc.Send("PUT", "/config", "", map[string]string{tc.hdr: tc.val})
				if r.StatusCode < 400 || r.StatusCode >= 500 {
					t.Fatalf("status %d", r.StatusCode)
				}
			})
		}
		if h.Calls("/config") != 0 {
			t.Fatal("handler ran")
		}
	})
}

func TestFallbackWithoutConnHooks(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithoutConnHooks(), e2e.WithGuard(e2e.StandardRoutes()...))
		c, _ := h.Client()
		for i := range 3 {
			if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v"); s != 200 {
				t.Fatalf("request %d: %d", i, s)
			}
		}
		if n := h.Attester.Count(); n != 1 {
			t.Fatalf("attestations = %d, want 1 (cached by exporter-derived id)", n)
		}
	})
}

func TestConnStateEvictedOnClose(t *testing.T) {
	h := e2e.New(t, e2e.HTTP2(false), e2e.WithGuard(e2e.StandardRoutes()...))
	c, tr := h.Client()
	e2e.Do(t, c, "PUT", h.URL("/config"), "v")
	if h.Conns.Len() != 1 {
		t.Fatalf("live connections %d", h.Conns.Len())
	}
	tr.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for h.Conns.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.Conns.Len() != 0 {
		t.Fatalf("state of a closed connection kept (%d)", h.Conns.Len())
	}
}

func TestTooEarly(t *testing.T) {
	g, err := middleware.New(verifierFunc(nil), e2e.StandardRoutes()...)
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	hd := g.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran = true }))
	req, _ := http.NewRequest("PUT", "https://example/config", nil)
	// What a server sees for 0-RTT data: TLS 1.3, handshake not complete.
	req.TLS = &tlsStateEarly
	rec := newRecorder()
	hd.ServeHTTP(rec, req)
	if rec.code != http.StatusTooEarly || ran {
		t.Fatalf("early data on a high-impact route: %d, handler ran %v", rec.code, ran)
	}
}

func TestDiscovery(t *testing.T) {
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(append([]middleware.Option{middleware.WithProtocol(postauth.WithFormats(softeat.MediaType))}, e2e.StandardRoutes()...)...))
	c := &http.Client{Transport: h.BaseTransport()}
	status, body, hdr := e2e.Do(t, c, "GET", h.URL(middleware.WellKnownPath), "")
	if status != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", status, hdr.Get("Content-Type"))
	}
	var d middleware.Discovery
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if d.Version != 1 || len(d.Routes) != 3 || d.Routes[0].Pattern != "POST /pay" || d.Routes[0].Mode != "operation" ||
		d.Routes[1].MaxAge != 60 || len(d.EvidenceFormats) != 1 || d.ServerAttests || len(d.FreshnessModes) != 2 {
		t.Fatalf("discovery = %s", body)
	}
}

func TestNotTLS(t *testing.T) {
	g, err := middleware.New(verifierFunc(nil), e2e.StandardRoutes()...)
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	hd := g.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran = true }))
	req, _ := http.NewRequest("PUT", "http://example/config", nil)
	rec := newRecorder()
	hd.ServeHTTP(rec, req)
	if rec.code != http.StatusUnauthorized || ran || rec.h.Get(middleware.HeaderAttestationRequest) != "" {
		t.Fatalf("plain HTTP on a high-impact route: %d ran=%v", rec.code, ran)
	}
}

var tlsStateEarly = tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: false}

type recorder struct {
	*httptest.ResponseRecorder
	code int
	h    http.Header
}

func newRecorder() *recorder {
	return &recorder{ResponseRecorder: httptest.NewRecorder()}
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.h = r.ResponseRecorder.Header()
	r.ResponseRecorder.WriteHeader(code)
}

// Route patterns follow http.ServeMux: a pattern without a method covers
// every method, GET covers HEAD, and unclean paths are matched as the
// redirect they lead to.
func TestPatternMatching(t *testing.T) {
	g, err := middleware.New(verifierFunc(nil),
		middleware.WithRoute("/admin/", middleware.Route{}),
		middleware.WithRoute("GET /report", middleware.Route{}),
		middleware.WithRoute("POST /pay/{id}", middleware.Route{}),
		middleware.WithRoute("PUT example.com/hosted", middleware.Route{}),
		middleware.WithRoute("DELETE /tree/{rest...}", middleware.Route{}))
	if err != nil {
		t.Fatal(err)
	}
	hd := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(299) }))
	for _, tc := range []struct {
		method, path string
		protected    bool
	}{
		{"GET", "/admin/users", true},
		{"DELETE", "/admin/users", true},
		{"GET", "/report", true},
		{"HEAD", "/report", true},
		{"POST", "/report", false},
		{"POST", "/pay/42", true},
		{"POST", "//pay/42", true},
		{"POST", "/pay/42/../42", true},
		{"GET", "/admin%2Fusers", true}, // gin and httprouter route it to /admin/users
		{"GET", "/rep%6Frt", true},      // an escaped letter
		{"POST", "/pay%2F42", true},     // ServeMux: one segment; gin: /pay/42
		{"GET", "/pay/42", false},
		{"GET", "/public", false},
		// the prefilter (static prefixes) agrees with ServeMux
		{"GET", "/admin", true}, // redirects to /admin/
		{"GET", "/admin/./users", true},
		{"GET", "/x/../admin/users", true},
		{"POST", "/pay/", false},
		{"POST", "/payments", false},
		{"DELETE", "/tree", true}, // redirects to /tree/
		{"DELETE", "/tree/a/b/c", true},
		{"DELETE", "/trees", false},
		{"PUT", "/hosted", false}, // another host
		{"PUT", "http://example.com/hosted", true},
	} {
		target := "http://example" + tc.path
		if strings.HasPrefix(tc.path, "http://") {
			target = tc.path
		}
		req := httptest.NewRequest(tc.method, target, nil)
		rec := httptest.NewRecorder()
		hd.ServeHTTP(rec, req)
		if got := rec.Code != 299; got != tc.protected {
			t.Errorf("%s %s: protected=%v (status %d), want %v", tc.method, tc.path, got, rec.Code, tc.protected)
		}
	}
}

func TestBadConfiguration(t *testing.T) {
	if _, err := middleware.New(verifierFunc(nil), middleware.WithRoute("GET /x", middleware.Route{}), middleware.WithRoute("GET /x", middleware.Route{})); err == nil {
		t.Error("duplicate pattern accepted")
	}
	if _, err := middleware.New(nil, middleware.WithRoute("GET /x", middleware.Route{})); err == nil {
		t.Error("route without a verifier accepted")
	}
	if _, err := middleware.New(verifierFunc(nil), middleware.WithRoute("GET /x", middleware.Route{Mode: 7})); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestObserverOutcomes(t *testing.T) {
	var mu sync.Mutex
	var events []middleware.Decision
	obs := middleware.WithObserver(func(_ context.Context, e middleware.Decision) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	})
	deny := func(context.Context, *postauth.Result) error {
		return &postauth.Error{Code: postauth.CodePolicyDenied, Reason: "posture_denied", Violations: []string{"tool:shell forbidden"}}
	}
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(obs,
		middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation, Appraise: deny}),
		middleware.WithRoute("PUT /config", middleware.Route{})))
	c, _ := h.Client()
	e2e.Do(t, c, "POST", h.URL("/pay"), "amount=1")
	e2e.Do(t, c, "PUT", h.URL("/config"), "v")
	e2e.Do(t, c, "PUT", h.URL("/config"), "v")
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, e := range events {
		got = append(got, e.Route+" "+string(e.Outcome))
		if (e.Outcome == middleware.OutcomeDenied || e.Outcome == middleware.OutcomeVerified) && (e.VerifyStart.IsZero() || e.VerifyDuration <= 0) {
			t.Errorf("%s: no verification timing", e.Outcome)
		}
	}
	want := "POST /pay challenged,POST /pay denied,PUT /config challenged,PUT /config verified,PUT /config cache_hit"
	if strings.Join(got, ",") != want {
		t.Fatalf("events:\n got %s\nwant %s", strings.Join(got, ","), want)
	}
}

// New(nil) fails at once with a clear error, not at the first request.
func TestNewNeedsVerifier(t *testing.T) {
	_, err := middleware.New(nil)
	if err == nil || !strings.Contains(err.Error(), "needs a postauth.Verifier") {
		t.Fatalf("New(nil): %v", err)
	}
	h := e2e.New(t)
	if _, err := h.Guard.Handler(nil, middleware.Route{}); err == nil {
		t.Error("Handler(nil) accepted")
	}
}

// The normal challenge logs at DEBUG; a refusal that ends a request (an
// invalid answer) logs at WARN, with its reason and without Evidence.
func TestLogLevels(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) }), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(append([]middleware.Option{middleware.WithLogger(log)}, e2e.StandardRoutes()...)...))
	rc := h.Raw()
	first := rc.Send("POST", "/pay", "amount=1", nil)
	att := rc.Answer(first)
	rc.Send("POST", "/pay", "amount=2", map[string]string{middleware.HeaderAttestation: att}) // another operation
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, `level=DEBUG msg="reattest: challenge"`) || !strings.Contains(out, "reason=attestation_required") {
		t.Errorf("no DEBUG challenge line:\n%s", out)
	}
	if !strings.Contains(out, `level=WARN msg="reattest: request refused"`) || !strings.Contains(out, "reason=operation_mismatch") {
		t.Errorf("no WARN refusal line:\n%s", out)
	}
	if strings.Contains(out, "level=INFO msg=\"reattest: challenge\"") {
		t.Errorf("a challenge logged at INFO:\n%s", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A route's ErrorHandler writes its refusals in place of the Guard's, with
// the decision table's status and the challenge headers already set; other
// routes keep the Guard's handler.
func TestRouteErrorHandler(t *testing.T) {
	var guardCalls, routeCalls int
	var mu sync.Mutex
	h := e2e.New(t, e2e.WithGuard(
		middleware.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, status int, err error) {
			mu.Lock()
			guardCalls++
			mu.Unlock()
			w.WriteHeader(status)
		}),
		middleware.WithRoute("PUT /config", middleware.Route{}),
		middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation,
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, status int, err error) {
				mu.Lock()
				routeCalls++
				mu.Unlock()
				if w.Header().Get(middleware.HeaderAttestationRequest) == "" || postauth.ReasonOf(err) != postauth.ReasonAttestationRequired {
					t.Errorf("route error handler: no challenge, or reason %q", postauth.ReasonOf(err))
				}
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(status)
				w.Write([]byte("route says no"))
			}}),
	))
	plain := &http.Client{Transport: h.BaseTransport()}
	if status, body, _ := e2e.Do(t, plain, "POST", h.URL("/pay"), "x"); status != 401 || body != "route says no" {
		t.Fatalf("POST /pay: %d %q", status, body)
	}
	if status, _, _ := e2e.Do(t, plain, "PUT", h.URL("/config"), "x"); status != 401 {
		t.Fatalf("PUT /config: %d", status)
	}
	if routeCalls != 1 || guardCalls != 1 {
		t.Fatalf("route handler %d calls, guard handler %d calls; want 1 and 1", routeCalls, guardCalls)
	}
}
