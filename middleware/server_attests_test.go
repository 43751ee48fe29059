package middleware_test

import (
	"context"
	"crypto"
	"errors"
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
	"github.com/reattest/reattest/transports"
)

// serverAttestation configures the harness server to attest with its TLS
// key and a software attester of its own; it returns the verifier a client
// trusts for it.
func serverAttestation(t *testing.T, h *e2e.Harness, key crypto.Signer) (middleware.Option, postauth.Verifier) {
	t.Helper()
	id, err := postauth.IdentityFromTLS(&h.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	att, err := softeat.NewAttester(key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := softeat.NewVerifier([]crypto.PublicKey{key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return middleware.WithServerAttestation(id, att, softeat.MediaType), v
}

func isCritical(r *http.Request) bool { return r.Method == http.MethodPut && r.URL.Path == "/config" }

func TestServerAttests(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		// The harness is built twice: once to learn its certificate for the
		// server identity, then with the option (newHarness takes options).
		serverKey := postauthtest.NewKey(t)
		var verifier postauth.Verifier
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...), e2e.WithGuardFunc(func(h *e2e.Harness) middleware.Option {
			opt, v := serverAttestation(t, h, serverKey)
			verifier = v
			return opt
		}))
		var attested []*postauth.Result
		c, _ := h.Client(
			transports.WithServerAttestation(isCritical, postauthtest.RelyingParty(t, verifier), time.Minute),
			transports.WithObserver(func(e transports.Activity) {
				if e.Kind == transports.ActivityServerAttested {
					attested = append(attested, e.Result)
				}
			}),
		)
		for range 2 {
			if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=1"); s != 200 {
				t.Fatalf("critical request: %d", s)
			}
		}
		if len(attested) != 1 {
			t.Fatalf("server attested %d times, want 1 (max-age)", len(attested))
		}
		res := attested[0]
		if res.Attester() != postauth.RoleServer || res.KeyTrust() != postauth.KeyTrustSamePeer || !strings.Contains(res.Subject(), "localhost") {
			t.Fatalf("server result: %v %v %q", res.Attester(), res.KeyTrust(), res.Subject())
		}
		h.Clock.Advance(2 * time.Minute)
		if s, _, _ := e2e.Do(t, c, "PUT", h.URL("/config"), "v=2"); s != 200 || len(attested) != 2 {
			t.Fatalf("after max-age: %d, %d server attestations", s, len(attested))
		}
	})
}

func TestServerNotAttestedRequestNotSent(t *testing.T) {
	cases := []struct {
		name    string
		attests bool // the server attests, but with a key the client does not trust
	}{{"server-cannot-attest", false}, {"untrusted-server-evidence", true}}
	for _, tc := range cases {
		e2e.EachProto(t, func(t *testing.T, h2 bool) {
			t.Run(tc.name, func(t *testing.T) {
				h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...), e2e.WithGuardFunc(func(h *e2e.Harness) middleware.Option {
					if !tc.attests {
						return nil
					}
					opt, _ := serverAttestation(t, h, postauthtest.NewKey(t))
					return opt
				}))
				trusted, _ := softeat.NewVerifier([]crypto.PublicKey{postauthtest.NewKey(t).Public()})
				c, _ := h.Client(transports.WithServerAttestation(isCritical, postauthtest.RelyingParty(t, trusted), time.Minute))
				req, _ := http.NewRequest("PUT", h.URL("/config"), strings.NewReader("v=1"))
				_, err := c.Do(req)
				if !errors.Is(err, transports.ErrServerNotAttested) {
					t.Fatalf("want ErrServerNotAttested, got %v", err)
				}
				if h.Calls("/config") != 0 {
					t.Fatal("the critical request reached the server")
				}
				// Non-critical requests still go.
				if s, _, _ := e2e.Do(t, c, "GET", h.URL("/search"), ""); s != 200 {
					t.Fatalf("search: %d", s)
				}
			})
		})
	}
}

// The server answers only ClientCertificateRequests: a CertificateRequest
// (the client's own role) is not reflected back.
func TestServerIgnoresCertificateRequest(t *testing.T) {
	serverKey := postauthtest.NewKey(t)
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(e2e.StandardRoutes()...), e2e.WithGuardFunc(func(h *e2e.Harness) middleware.Option {
		opt, _ := serverAttestation(t, h, serverKey)
		return opt
	}))
	rc := h.Raw()
	chal := rc.Send("PUT", "/config", "", nil) // carries a CertificateRequest
	resp := rc.Send("GET", "/search", "", map[string]string{middleware.HeaderAttestationRequest: chal.Header.Get(middleware.HeaderAttestationRequest)})
	if resp.Header.Get(middleware.HeaderAttestation) != "" {
		t.Fatal("server answered a CertificateRequest")
	}
	_ = context.Background()
}

// Server attestation costs the server a signature (and, with hardware,
// TPM or remote work): answers are limited per connection and for the
// whole server, so anonymous connections cannot keep the attester busy.
func TestServerAttestationLimited(t *testing.T) {
	serverKey := postauthtest.NewKey(t)
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(e2e.StandardRoutes()...), e2e.WithGuard(middleware.WithServerAttestationLimit(0.001, 3)), e2e.WithGuardFunc(func(h *e2e.Harness) middleware.Option {
		opt, _ := serverAttestation(t, h, serverKey)
		return opt
	}))
	answered := 0
	for range 4 { // connections
		rc := h.Raw()
		reqr, err := postauthtest.RelyingParty(t, h.Verifier).NewRequester(rc.Channel, postauth.RoleServer)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 { // asks per connection
			areq, _ := reqr.NewRequest(nil)
			b, _ := areq.Marshal()
			resp := rc.Send("GET", middleware.WellKnownPath, "", map[string]string{middleware.HeaderAttestationRequest: httpbind.EncodeBytes(b)})
			if resp.Header.Get(middleware.HeaderAttestation) != "" {
				answered++
			}
		}
	}
	if answered != 3 {
		t.Fatalf("server answered %d attestation requests, want 3 (the global burst)", answered)
	}
}
