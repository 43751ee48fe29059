package middleware

import (
	"context"
	"net/http"
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
		WithRoute("POST /exact/{$}", Route{}),
		WithRoute("/a%20b", Route{}),
		WithRoute("/p%61y", Route{}),
		WithRoute("GET\t /tabbed", Route{}))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/v1/payments", "/v1//payments", "/admin", "/admin/x", "/report/7", "/hosted", "/tree", "/exact/", "/x/../admin/", "/v1/payments/.", "/v1%2Fpayments", "/a%20b", "/pay", "/tabbed"} {
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

// exactGuard has literal patterns of every kind the index holds beside
// patterns it leaves to ServeMux, and no host pattern.
func exactGuard(tb testing.TB) *Guard {
	g, err := New(nopVerifier{},
		WithRoute("POST /v1/payments", Route{}),
		WithRoute("/admin/", Route{}),
		WithRoute("/admin/config", Route{}),
		WithRoute("GET /report/{id}", Route{}),
		WithRoute("GET /report/latest", Route{}),
		WithRoute("/pay", Route{}),
		WithRoute("PUT /pay", Route{}),
		WithRoute("GET /h", Route{}),
		WithRoute("HEAD /h", Route{}),
		WithRoute("GET /g", Route{}),
		WithRoute("DELETE /tree/{rest...}", Route{}),
		WithRoute("POST /exact/{$}", Route{}),
		WithRoute("/x-y_z.~", Route{}),
		WithRoute("/a%20b", Route{}),
		WithRoute("POST  /two-spaces", Route{}))
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

func requestFor(method, host, path string) (*http.Request, bool) {
	u, err := url.Parse("http://" + host + path)
	if err != nil || method == "" || u.Host == "" {
		return nil, false
	}
	r := httptest.NewRequest("GET", "http://example.com/", nil)
	r.Method, r.URL, r.Host = method, u, u.Host
	return r, true
}

// The literal-path index never disagrees with ServeMux: when it finds a
// route, it is the route ServeMux (with the decoded-path reading) finds.
func FuzzMatchExact(f *testing.F) {
	g := exactGuard(f)
	for _, s := range []string{"/v1/payments", "/admin/config", "/admin/other", "/report/latest", "/report/7", "/pay", "/h", "/g", "/tree/a", "/exact/", "/x-y_z.~", "/a%20b", "/a b", "/two-spaces", "/pay/", "/PAY", "/v1//payments", "/pay%2F"} {
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "get"} {
			f.Add(m, "example.com", s)
		}
	}
	f.Fuzz(func(t *testing.T, method, host, path string) {
		r, ok := requestFor(method, host, path)
		if !ok {
			return
		}
		if rt := g.matchExact(r); rt != nil && rt != g.matchMux(r) {
			t.Fatalf("%s %s%s: the literal index and ServeMux disagree", method, host, path)
		}
	})
}

func TestMatchExact(t *testing.T) {
	g := exactGuard(t)
	for _, tc := range []struct {
		method, path, want string // want: the pattern, "" for no indexed route
	}{
		{"POST", "/v1/payments", "POST /v1/payments"},
		{"GET", "/v1/payments", ""},
		{"GET", "/admin/config", "/admin/config"},
		{"GET", "/report/latest", "GET /report/latest"},
		{"HEAD", "/report/latest", "GET /report/latest"},
		{"PUT", "/pay", "PUT /pay"},
		{"POST", "/pay", "/pay"},
		{"HEAD", "/h", "HEAD /h"},
		{"GET", "/h", "GET /h"},
		{"HEAD", "/g", "GET /g"},
		{"POST", "/g", ""},
		{"GET", "/x-y_z.~", "/x-y_z.~"},
		{"POST", "/two-spaces", "POST  /two-spaces"},
		{"GET", "/a%20b", ""}, // not literal: ServeMux decides
		{"GET", "/pay/", ""},
		{"GET", "/PAY", ""},
	} {
		r, _ := requestFor(tc.method, "example.com", tc.path)
		got := g.matchExact(r)
		if want := g.byPattern[tc.want]; got != want {
			t.Errorf("%s %s: got %v, want the route of %q", tc.method, tc.path, got, tc.want)
		}
		if got != nil && got != g.matchMux(r) {
			t.Errorf("%s %s: ServeMux finds another route", tc.method, tc.path)
		}
	}
	// A host pattern turns the index off.
	h, err := New(nopVerifier{}, WithRoute("POST /pay", Route{}), WithRoute("PUT example.com/pay", Route{}))
	if err != nil {
		t.Fatal(err)
	}
	if h.exact != nil {
		t.Fatal("index built beside a host pattern")
	}
}

// Patterns that ServeMux reads differently from a naive split: a method
// followed by a tab, and escaped path segments (ServeMux unescapes them).
// Each was once left unprotected by the prefilters (routeMethods split on
// a space only; staticPrefix kept the escape while requests are decoded).
func TestTabbedAndEscapedPatternsProtect(t *testing.T) {
	for _, tc := range []struct{ pattern, method, path string }{
		{"GET\t /pay", "GET", "/pay"},
		{"GET\t/pay", "HEAD", "/pay"},
		{"POST \t /pay", "POST", "/pay"},
		{"/a%20b", "GET", "/a%20b"},
		{"/p%61y", "POST", "/pay"},
		{"/caf%C3%A9", "GET", "/caf%C3%A9"},
		{"PUT /v1/%7Euser/{id}", "PUT", "/v1/~user/7"},
	} {
		g, err := New(nopVerifier{}, WithRoute(tc.pattern, Route{}))
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		r, _ := requestFor(tc.method, "example.com", tc.path)
		if g.matchMux(r) == nil {
			t.Fatalf("%q: ServeMux does not match %s %s (test premise)", tc.pattern, tc.method, tc.path)
		}
		if g.match(r) == nil {
			t.Errorf("%q: %s %s is unprotected", tc.pattern, tc.method, tc.path)
		}
	}
}
