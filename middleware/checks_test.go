package middleware_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reattest/reattest/internal/e2e"
	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

// A policy denial of a fresh attestation revokes the connection's cached
// verdict for the route: the peer's current state is denied, so its older
// verdict must not serve the route any more.
func TestDenialRevokesCachedVerdict(t *testing.T) {
	pol, _ := posture.ParsePolicy([]byte(noShellPolicy), "yaml")
	tr := agentTracker(t)
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithAttester(softeat.WithPosture(tr)), e2e.WithGuard(
		middleware.WithRoute("POST /echo", middleware.Route{Posture: pol, PreArm: true})))
	rc := h.Raw() // sends no posture hint
	first := rc.Send("POST", "/echo", "a", nil)
	ok := rc.Send("POST", "/echo", "a", map[string]string{middleware.HeaderAttestation: rc.Answer(first)})
	if ok.StatusCode != 200 || ok.Header.Get(middleware.HeaderAttestationRequest) == "" {
		t.Fatalf("first attestation: %d (pre-armed request %q)", ok.StatusCode, ok.Header.Get(middleware.HeaderAttestationRequest))
	}
	if r := rc.Send("POST", "/echo", "b", nil); r.StatusCode != 200 {
		t.Fatalf("cache hit: %d", r.StatusCode)
	}
	tr.EnableTool(context.Background(), posture.Tool{Name: "shell", Version: "5", Digest: posture.DigestOf([]byte("sh"))})
	if r := rc.Send("POST", "/echo", "c", map[string]string{middleware.HeaderAttestation: rc.Answer(ok)}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("attestation with a forbidden tool: %d", r.StatusCode)
	}
	if r := rc.Send("POST", "/echo", "d", nil); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after a denial, the old verdict still served the route: %d", r.StatusCode)
	}
}

// The verifier's expiry ends a cached verdict before the route's max age.
func TestVerifierExpiry(t *testing.T) {
	var inner postauth.Verifier
	var clock *postauthtest.Clock
	expiring := verifierFunc(func(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
		app, err := inner.Verify(ctx, ch, ev)
		if app != nil {
			app.Expiry = clock.Now().Add(10 * time.Second)
		}
		return app, err
	})
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithVerifier(expiring), e2e.WithGuard(middleware.WithRoute("POST /echo", middleware.Route{MaxAge: time.Hour})))
	inner, clock = h.AttKey.Verifier(t, softeat.WithClock(h.Clock.Now), softeat.WithMaxAge(time.Hour)), h.Clock
	c, _ := h.Client()
	for range 2 {
		if s, _, _ := e2e.Do(t, c, "POST", h.URL("/echo"), "x"); s != 200 {
			t.Fatal(s)
		}
	}
	if h.Attester.Count() != 1 {
		t.Fatalf("attestations = %d, want 1", h.Attester.Count())
	}
	h.Clock.Advance(11 * time.Second)
	if s, _, _ := e2e.Do(t, c, "POST", h.URL("/echo"), "x"); s != 200 || h.Attester.Count() != 2 {
		t.Fatalf("after the verifier's expiry: %d, attestations %d (want a new attestation)", s, h.Attester.Count())
	}
}

// Operation mode reads at most MaxBody bytes: a declared length over the
// limit is refused before the body is read, and a chunked body that turns
// out longer is refused too (never truncated into the digest).
func TestBodyLimits(t *testing.T) {
	h := e2e.New(t, e2e.WithGuard(middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation, MaxBody: 10})))
	conf := h.PKI.ClientConfig(&h.ClientCert)
	send := func(req string) (int, string) {
		c, err := tls.Dial("tcp", h.Server.Listener.Addr().String(), conf)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err.Error() // no answer: the server waits for the body
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return resp.StatusCode, string(b)
	}
	// A huge declared length, and only a few bytes sent: the answer comes
	// from the declared length alone.
	if s, body := send("POST /pay HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\nabcde"); s != http.StatusRequestEntityTooLarge || !strings.Contains(body, "body_too_large") {
		t.Fatalf("declared length over the limit: %d %s", s, body)
	}
	// A chunked body of 20 bytes.
	if s, body := send("POST /pay HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n01234567890123456789\r\n0\r\n\r\n"); s != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked body over the limit: %d %s", s, body)
	}
	// Within the limit: an ordinary challenge.
	if s, _ := send("POST /pay HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nabcde"); s != http.StatusUnauthorized {
		t.Fatalf("body within the limit: %d", s)
	}
	if h.Calls("/pay") != 0 {
		t.Fatal("handler ran")
	}
}

// One connection gets at most 5 server attestations at once (then one per
// second), whatever the server-wide budget.
func TestServerAttestationLimitedPerConnection(t *testing.T) {
	serverKey := postauthtest.NewKey(t)
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(e2e.StandardRoutes()...), e2e.WithGuardFunc(func(h *e2e.Harness) middleware.Option {
		opt, _ := serverAttestation(t, h, serverKey)
		return opt
	}))
	rc := h.Raw()
	reqr, err := postauthtest.RelyingParty(t, h.Verifier).NewRequester(rc.Channel, postauth.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	answered := 0
	for range 8 {
		areq, _ := reqr.NewRequest(nil)
		b, _ := areq.Marshal()
		resp := rc.Send("GET", middleware.WellKnownPath, "", map[string]string{middleware.HeaderAttestationRequest: httpbind.EncodeBytes(b)})
		if resp.Header.Get(middleware.HeaderAttestation) != "" {
			answered++
		}
	}
	if answered != 5 {
		t.Fatalf("one connection got %d server attestations in a burst, want 5", answered)
	}
}

// HTTP/2 connection coalescing: one connection may carry requests for
// several hosts. An operation-mode authenticator binds the authority, so it
// cannot be presented for the same path on another host.
func TestOperationBindsAuthority(t *testing.T) {
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(e2e.StandardRoutes()...))
	rc := h.Raw()
	send := func(host, att string) int {
		req, _ := http.NewRequest("POST", h.URL("/pay"), strings.NewReader("amount=1"))
		req.Host = host
		if att != "" {
			req.Header.Set(middleware.HeaderAttestation, att)
		}
		resp, err := rc.CC.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	req, _ := http.NewRequest("POST", h.URL("/pay"), strings.NewReader("amount=1"))
	req.Host = "pay.example"
	resp, err := rc.CC.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	att := rc.Answer(resp) // made for POST pay.example /pay
	if s := send("other.example", att); s != http.StatusUnauthorized {
		t.Fatalf("authenticator for pay.example accepted for other.example: %d", s)
	}
	// the same answer on its own host: consumed by the attempt above
	// (single use), so a fresh one for pay.example passes
	resp, _ = rc.CC.RoundTrip(mustReq(t, h.URL("/pay"), "pay.example"))
	resp.Body.Close()
	if s := send("PAY.example:443", rc.Answer(resp)); s != 200 {
		t.Fatalf("authenticator on its own host (normalised authority): %d", s)
	}
}

func mustReq(t *testing.T, url, host string) *http.Request {
	req, err := http.NewRequest("POST", url, strings.NewReader("amount=1"))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	return req
}
