package middleware_test

import (
	"context"
	"crypto"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reattest/reattest/internal/wire"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/transports"
)

// serverAttestation configures the harness server to attest with its TLS
// key and a software attester of its own; it returns the verifier a client
// trusts for it.
func serverAttestation(t *testing.T, h *harness, key crypto.Signer) (middleware.Option, postauth.Verifier) {
	t.Helper()
	id, err := postauth.IdentityFromTLS(&h.serverCert)
	if err != nil {
		t.Fatal(err)
	}
	att, err := softeat.NewAttester(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := softeat.NewVerifier([]crypto.PublicKey{key.Public()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return middleware.WithServerAttestation(id, att, softeat.MediaType), v
}

func isCritical(r *http.Request) bool { return r.Method == http.MethodPut && r.URL.Path == "/config" }

func TestServerAttests(t *testing.T) {
	eachProto(t, func(t *testing.T, h2 bool) {
		// The harness is built twice: once to learn its certificate for the
		// server identity, then with the option (newHarness takes options).
		serverKey := postauthtest.NewKey(t)
		var verifier postauth.Verifier
		h := newHarnessWith(t, harnessOpts{h2: h2, guardOpts: standardRoutes}, func(h *harness) middleware.Option {
			opt, v := serverAttestation(t, h, serverKey)
			verifier = v
			return opt
		})
		var attested []*postauth.Result
		c, _ := h.client(
			transports.WithServerAttestation(isCritical, &postauth.Policy{Verifier: verifier}, time.Minute),
			transports.WithObserver(func(e transports.Event) {
				if e.Kind == transports.EventServerAttested {
					attested = append(attested, e.Result)
				}
			}),
		)
		for range 2 {
			if s, _, _ := do(t, c, "PUT", h.url("/config"), "v=1"); s != 200 {
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
		h.clock.advance(2 * time.Minute)
		if s, _, _ := do(t, c, "PUT", h.url("/config"), "v=2"); s != 200 || len(attested) != 2 {
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
		eachProto(t, func(t *testing.T, h2 bool) {
			t.Run(tc.name, func(t *testing.T) {
				h := newHarnessWith(t, harnessOpts{h2: h2, guardOpts: standardRoutes}, func(h *harness) middleware.Option {
					if !tc.attests {
						return nil
					}
					opt, _ := serverAttestation(t, h, postauthtest.NewKey(t))
					return opt
				})
				trusted, _ := softeat.NewVerifier([]crypto.PublicKey{postauthtest.NewKey(t).Public()}, nil)
				c, _ := h.client(transports.WithServerAttestation(isCritical, &postauth.Policy{Verifier: trusted}, time.Minute))
				req, _ := http.NewRequest("PUT", h.url("/config"), strings.NewReader("v=1"))
				_, err := c.Do(req)
				if !errors.Is(err, transports.ErrServerNotAttested) {
					t.Fatalf("want ErrServerNotAttested, got %v", err)
				}
				if h.calledTimes("/config") != 0 {
					t.Fatal("the critical request reached the server")
				}
				// Non-critical requests still go.
				if s, _, _ := do(t, c, "GET", h.url("/search"), ""); s != 200 {
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
	h := newHarnessWith(t, harnessOpts{h2: true, guardOpts: standardRoutes}, func(h *harness) middleware.Option {
		opt, _ := serverAttestation(t, h, serverKey)
		return opt
	})
	rc := h.rawConn()
	chal := rc.send("PUT", "/config", "", nil) // carries a CertificateRequest
	resp := rc.send("GET", "/search", "", map[string]string{middleware.HeaderAttestationRequest: chal.Header.Get(middleware.HeaderAttestationRequest)})
	if resp.Header.Get(middleware.HeaderAttestation) != "" {
		t.Fatal("server answered a CertificateRequest")
	}
	_ = context.Background()
}

func TestPreArmedOperation(t *testing.T) {
	eachProto(t, func(t *testing.T, h2 bool) {
		h := newHarness(t, harnessOpts{h2: h2, guardOpts: []middleware.Option{
			middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation, PreArm: true}),
		}})
		c, _ := h.client()
		for i := range 4 {
			status, body, _ := do(t, c, "POST", h.url("/pay"), "amount="+string(rune('1'+i)))
			if status != 200 || !strings.Contains(body, "attested=true") {
				t.Fatalf("payment %d: %d %q", i, status, body)
			}
		}
		challenges := 0
		proactive := 0
		for {
			select {
			case e := <-h.events:
				switch {
				case e.Kind == transports.EventChallenged:
					challenges++
				case e.Kind == transports.EventAttested && e.Proactive:
					proactive++
				}
				continue
			default:
			}
			break
		}
		if challenges != 1 || proactive != 3 {
			t.Fatalf("challenges = %d, proactive = %d; want 1 and 3 (pre-armed after the first)", challenges, proactive)
		}
		if n := h.attester.Count(); n != 4 {
			t.Fatalf("attestations = %d, want 4", n)
		}
	})
}

// Server attestation costs the server a signature (and, with hardware,
// TPM or remote work): answers are limited per connection and for the
// whole server, so anonymous connections cannot keep the attester busy.
func TestServerAttestationLimited(t *testing.T) {
	serverKey := postauthtest.NewKey(t)
	h := newHarnessWith(t, harnessOpts{h2: true, guardOpts: append([]middleware.Option{
		middleware.WithServerAttestationLimit(0.001, 3),
	}, standardRoutes...)}, func(h *harness) middleware.Option {
		opt, _ := serverAttestation(t, h, serverKey)
		return opt
	})
	answered := 0
	for range 4 { // connections
		rc := h.rawConn()
		reqr, err := postauth.NewRequester(rc.ch, postauth.RoleServer, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 { // asks per connection
			areq, _ := reqr.NewRequest("", nil)
			b, _ := areq.Marshal()
			resp := rc.send("GET", middleware.WellKnownPath, "", map[string]string{middleware.HeaderAttestationRequest: wire.EncodeBytes(b)})
			if resp.Header.Get(middleware.HeaderAttestation) != "" {
				answered++
			}
		}
	}
	if answered != 3 {
		t.Fatalf("server answered %d attestation requests, want 3 (the global burst)", answered)
	}
}
