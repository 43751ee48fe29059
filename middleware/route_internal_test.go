package middleware

import (
	"context"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/reattest/reattest/postauth"
)

type nopVerifier struct{}

func (nopVerifier) Verify(context.Context, postauth.Challenge, postauth.Evidence) (*postauth.Appraisal, error) {
	return nil, nil
}

// FuzzOutsideRoutes: the prefilter never declares outside a request that
// ServeMux would put under a route.
func FuzzOutsideRoutes(f *testing.F) {
	g, err := New(nopVerifier{},
		WithRoute("POST /v1/payments", Route{}),
		WithRoute("/admin/", Route{}),
		WithRoute("GET /report/{id}", Route{}),
		WithRoute("PUT example.com/hosted", Route{}),
		WithRoute("DELETE /tree/{rest...}", Route{}),
		WithRoute("POST /exact/{$}", Route{}))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/v1/payments", "/v1//payments", "/admin", "/admin/x", "/report/7", "/hosted", "/tree", "/exact/", "/x/../admin/", "/v1/payments/.", "/v1%2Fpayments"} {
		f.Add("POST", "example.com", s)
		f.Add("GET", "other", s)
	}
	f.Fuzz(func(t *testing.T, method, host, path string) {
		u, err := url.Parse("http://" + host + path)
		if err != nil || method == "" || u.Host == "" {
			return
		}
		r := httptest.NewRequest("GET", "http://example.com/", nil)
		r.Method, r.URL, r.Host = method, u, u.Host
		if g.outsideRoutes(r) && g.matchMux(r) != nil {
			t.Fatalf("%s %s%s: the prefilter says outside, ServeMux matches a route", method, host, path)
		}
	})
}
