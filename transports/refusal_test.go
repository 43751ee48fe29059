package transports_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/reattest/reattest/internal/e2e"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/transports"
)

// A final refusal reaches the application as a response (RoundTripper
// contract); ResponseError decodes its problem body into a typed error, and
// the transport reports the refused retry as refused, not as attested.
func TestRefusalIsTyped(t *testing.T) {
	deny := func(context.Context, *postauth.Result) error {
		return &postauth.Error{Code: postauth.CodePolicyDenied, Reason: postauth.ReasonPostureDenied, Violations: []string{"tool:shell forbidden"}}
	}
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation, Appraise: deny})))
	c, _ := h.Client()
	resp, err := c.Post(h.URL("/pay"), "text/plain", strings.NewReader("amount=1"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rerr := transports.ResponseError(resp)
	var refusal *transports.RefusalError
	if !errors.As(rerr, &refusal) {
		t.Fatalf("ResponseError = %v, want a *RefusalError", rerr)
	}
	if refusal.Status != 403 || refusal.Reason != postauth.ReasonPostureDenied || len(refusal.Violations) != 1 || refusal.Violations[0] != "tool:shell forbidden" {
		t.Fatalf("refusal = %+v", refusal)
	}
	if postauth.CodeOf(rerr) != postauth.CodePolicyDenied {
		t.Fatalf("CodeOf = %v", postauth.CodeOf(rerr))
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "posture_denied") {
		t.Fatalf("body not readable after ResponseError: %q", body)
	}
	a := h.FindActivity(transports.ActivityAttested, "")
	if a == nil || a.Outcome != transports.OutcomeRefused || a.Reason != postauth.ReasonPostureDenied || a.Status != 403 {
		t.Fatalf("activity = %+v, want attested/refused/posture_denied/403", a)
	}
	if a.Kind.String() != "attested" || a.Outcome.String() != "refused" {
		t.Fatalf("names: %s %s", a.Kind, a.Outcome)
	}
}

// ResponseError ignores what is not a reattest refusal.
func TestResponseErrorIgnoresOthers(t *testing.T) {
	for _, resp := range []*http.Response{
		nil,
		{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok"))},
		{StatusCode: 403, Header: http.Header{"Content-Type": {"application/problem+json"}}, Body: io.NopCloser(strings.NewReader(`{"type":"https://example.com/other","status":403}`))},
		{StatusCode: 401, Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(strings.NewReader("no"))},
	} {
		if err := transports.ResponseError(resp); err != nil {
			t.Errorf("ResponseError = %v for a response that is not a reattest refusal", err)
		}
	}
}

// ResponseError also decodes the JSON-RPC form of a refusal that MCP
// gateways send (middleware/mcpattest), single or batched, and nothing
// else in application/json.
func TestResponseErrorJSONRPC(t *testing.T) {
	resp := func(body string) *http.Response {
		return &http.Response{StatusCode: 403, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body))}
	}
	one := `{"jsonrpc":"2.0","id":1,"error":{"code":-32051,"message":"denied","data":{"type":"tag:github.com,2026:reattest/problem/policy-denied","status":403,"reason":"posture_denied","violations":["tool:shell forbidden"]}}}`
	for _, body := range []string{one, "[" + one + "," + one + "]"} {
		var refusal *transports.RefusalError
		if err := transports.ResponseError(resp(body)); !errors.As(err, &refusal) || refusal.Reason != postauth.ReasonPostureDenied ||
			refusal.Violations[0] != "tool:shell forbidden" || refusal.Title != "denied" || refusal.Status != 403 {
			t.Fatalf("%s: %v", body, err)
		}
	}
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"method not found"}}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32051,"message":"x","data":{"type":"https://example.com/other"}}}`,
		`[]`, `not json`,
	} {
		if err := transports.ResponseError(resp(body)); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
	}
}
