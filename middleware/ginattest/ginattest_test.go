package ginattest_test

import (
	"crypto"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/ginattest"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
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
	att, _ := softeat.NewAttester(attKey, nil)
	ver, _ := softeat.NewVerifier([]crypto.PublicKey{attKey.Public()}, nil)
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
	srv.TLS = pki.ServerConfig(pki.Issue(t, "localhost", true, nil))
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	defer srv.Close()

	clientCert := pki.Issue(t, "agent", false, nil)
	id, _ := postauth.IdentityFromTLS(&clientCert)
	tr, err := transports.New(&http.Transport{TLSClientConfig: pki.ClientConfig(&clientCert)}, transports.WithAttester(id, att, nil), transports.WithAttestTo("127.0.0.1"))
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
