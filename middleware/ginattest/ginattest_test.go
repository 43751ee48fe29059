package ginattest_test

import (
	"context"
	"crypto"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/reattest/reattest/internal/e2e"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/ginattest"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

func TestGin(t *testing.T) {
	gin.SetMode(gin.TestMode)
	for _, h2 := range []bool{false, true} {
		name := "http1"
		if h2 {
			name = "http2"
		}
		t.Run(name, func(t *testing.T) { testGin(t, h2) })
	}
}

func testGin(t *testing.T, h2 bool) {
	pki := postauthtest.New(t)
	attKey := postauthtest.NewKey(t)
	att, _ := softeat.NewAttester(attKey)
	ver, _ := softeat.NewVerifier([]crypto.PublicKey{attKey.Public()})
	guard, err := middleware.New(ver, middleware.WithRoute("PUT /v1/config", middleware.Route{}))
	if err != nil {
		t.Fatal(err)
	}
	pay, err := ginattest.Protect(guard, middleware.Route{Mode: middleware.ModeOperation})
	if err != nil {
		t.Fatal(err)
	}
	var payments, configs atomic.Int64
	r := gin.New()
	r.Use(ginattest.Middleware(guard))
	r.GET("/v1/search", func(c *gin.Context) { c.String(200, "results") })
	r.POST("/v1/payments", pay, func(c *gin.Context) {
		res, ok := ginattest.Result(c)
		if !ok || res.Format() != softeat.Format {
			c.String(500, "no result")
			return
		}
		payments.Add(1)
		c.String(200, "paid")
	})
	r.PUT("/v1/config", func(c *gin.Context) {
		if _, ok := ginattest.Result(c); !ok {
			c.String(500, "no result")
			return
		}
		configs.Add(1)
		c.String(200, "configured")
	})

	srv := httptest.NewUnstartedServer(r)
	srv.EnableHTTP2 = h2
	srv.TLS = pki.ServerConfig(pki.Issue(t, "localhost", postauthtest.ServerAuth()))
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	defer srv.Close()

	clientCert := pki.Issue(t, "agent")
	id, _ := postauth.IdentityFromTLS(&clientCert)
	tr, err := transports.NewTransport(&http.Transport{TLSClientConfig: pki.ClientConfig(&clientCert)}, transports.WithAttester(id, att), transports.WithAttestTo("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	c := &http.Client{Transport: tr}
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(&clientCert)}}

	send := func(c *http.Client, method, path string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("amount=1"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if s, b := send(plain, "GET", "/v1/search"); s != 200 || b != "results" {
		t.Fatalf("search: %d %q", s, b)
	}
	if s, _ := send(plain, "POST", "/v1/payments"); s != 401 {
		t.Fatalf("unattested payment: %d", s)
	}
	if s, _ := send(plain, "PUT", "/v1/config"); s != 401 {
		t.Fatalf("unattested config: %d", s)
	}
	if payments.Load()+configs.Load() != 0 {
		t.Fatal("a protected gin handler ran without attestation")
	}
	if s, b := send(c, "POST", "/v1/payments"); s != 200 || b != "paid" {
		t.Fatalf("attested payment: %d %q", s, b)
	}
	if s, b := send(c, "PUT", "/v1/config"); s != 200 || b != "configured" {
		t.Fatalf("attested config: %d %q", s, b)
	}
	if s, _ := send(plain, "GET", middleware.WellKnownPath); s != 200 {
		t.Fatalf("discovery: %d", s)
	}
	// gin routes on the decoded path: an encoded slash must not slip a
	// request past the pattern route to the protected handler.
	before := configs.Load()
	if s, _ := send(plain, "PUT", "/v1%2Fconfig"); s == 200 || configs.Load() != before {
		t.Fatalf("PUT /v1%%2Fconfig without attestation: %d", s)
	}
}

// The README's server snippet (a WithRoute pattern on the Guard's
// middleware) and its gin snippet (Protect on the same route) work
// together: the request is attested once and the handler runs.
func TestReadmeSnippetsCombine(t *testing.T) {
	gin.SetMode(gin.TestMode)
	policy, err := posture.ParsePolicy([]byte("tools:\n  deny: [shell]\n"), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	tracker, _ := posture.NewTracker()
	tracker.SetModel(context.Background(), posture.Model{Name: "acme-assistant", Version: "2.1", Digest: posture.DigestOf([]byte("weights"))})
	var decisions []middleware.Decision
	var mu sync.Mutex
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithAttester(softeat.WithPosture(tracker)),
		// the server snippet
		e2e.WithGuard(
			middleware.WithRoute("POST /v1/payments", middleware.Route{Mode: middleware.ModeOperation, Posture: policy}),
			middleware.WithRoute("PUT /v1/config", middleware.Route{MaxAge: time.Minute}),
			middleware.WithObserver(func(_ context.Context, d middleware.Decision) {
				mu.Lock()
				decisions = append(decisions, d)
				mu.Unlock()
			})),
		// the gin snippet, on the same Guard
		e2e.WithServer(func(h *e2e.Harness) http.Handler {
			pay, err := ginattest.Protect(h.Guard, middleware.Route{Mode: middleware.ModeOperation, Posture: policy})
			if err != nil {
				t.Fatal(err)
			}
			r := gin.New()
			r.Use(ginattest.Middleware(h.Guard))
			r.POST("/v1/payments", pay, func(c *gin.Context) { c.String(200, "paid") })
			return r
		}))
	c, _ := h.Client()
	if s, body, _ := e2e.Do(t, c, "POST", h.URL("/v1/payments"), `{"amount":25}`); s != 200 || body != "paid" {
		t.Fatalf("payment through both layers: %d %q", s, body)
	}
	if n := h.Attester.Count(); n != 1 {
		t.Fatalf("attestations = %d, want 1 (verified once)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	var verified []string
	for _, d := range decisions {
		if d.Outcome == middleware.OutcomeVerified {
			verified = append(verified, d.Route)
		}
	}
	if len(verified) != 2 || verified[0] != "POST /v1/payments" || verified[1] != "POST /v1/payments" {
		t.Fatalf("verified decisions %v, want the pattern route then the gin route, both named", verified)
	}
}

// A gin route nested in a pattern route of the same Guard that cannot share
// its verdict (here: operation mode inside connection mode) fails closed
// with 500 misconfigured, never a pass.
func TestIncompatibleNestingRefused(t *testing.T) {
	gin.SetMode(gin.TestMode)
	ran := false
	h := e2e.New(t, e2e.HTTP2(true),
		e2e.WithGuard(middleware.WithRoute("POST /v1/payments", middleware.Route{})),
		e2e.WithServer(func(h *e2e.Harness) http.Handler {
			pay, _ := ginattest.Protect(h.Guard, middleware.Route{Mode: middleware.ModeOperation})
			r := gin.New()
			r.Use(ginattest.Middleware(h.Guard))
			r.POST("/v1/payments", pay, func(c *gin.Context) { ran = true })
			return r
		}))
	c, _ := h.Client()
	s, body, _ := e2e.Do(t, c, "POST", h.URL("/v1/payments"), "x")
	if s != http.StatusInternalServerError || !strings.Contains(body, `"reason":"misconfigured"`) || ran {
		t.Fatalf("incompatible nesting: %d %q (handler ran: %v)", s, body, ran)
	}
}

// gin routes carry their real route (method and gin's full path) into
// observer decisions and the discovery document.
func TestGinRouteNames(t *testing.T) {
	gin.SetMode(gin.TestMode)
	var routes []string
	var mu sync.Mutex
	h := e2e.New(t, e2e.HTTP2(true),
		e2e.WithGuard(middleware.WithObserver(func(_ context.Context, d middleware.Decision) {
			mu.Lock()
			routes = append(routes, d.Route)
			mu.Unlock()
		})),
		e2e.WithServer(func(h *e2e.Harness) http.Handler {
			pay, _ := ginattest.Protect(h.Guard, middleware.Route{Mode: middleware.ModeOperation})
			cfg, _ := ginattest.Protect(h.Guard, middleware.Route{Name: "config changes", MaxAge: time.Minute})
			r := gin.New()
			r.Use(ginattest.Middleware(h.Guard))
			r.POST("/v1/accounts/:id/payments", pay, func(c *gin.Context) { c.String(200, "paid") })
			r.PUT("/v1/config", cfg, func(c *gin.Context) { c.String(200, "ok") })
			return r
		}))
	plain := &http.Client{Transport: h.BaseTransport()}
	if s, _, _ := e2e.Do(t, plain, "POST", h.URL("/v1/accounts/7/payments"), "x"); s != 401 {
		t.Fatal(s)
	}
	mu.Lock()
	if len(routes) != 1 || routes[0] != "POST /v1/accounts/:id/payments" {
		t.Fatalf("observed routes %v", routes)
	}
	mu.Unlock()
	_, body, _ := e2e.Do(t, plain, "GET", h.URL(middleware.WellKnownPath), "")
	var d middleware.Discovery
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range d.Routes {
		got[r.Pattern] = r.Mode
	}
	if got["POST /v1/accounts/:id/payments"] != "operation" || got["config changes"] != "connection" || len(d.FreshnessModes) != 2 {
		t.Fatalf("discovery routes %+v modes %v", d.Routes, d.FreshnessModes)
	}
}
