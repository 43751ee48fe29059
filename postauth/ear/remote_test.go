package ear_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/verifier"
)

// A deliberately broken verifier endpoint that affirms Evidence over any
// nonce (as Veraison's TPM_ENACTTRUST did) must not make replayed Evidence
// pass: the local binding check refuses it.
func TestBackgroundCheckBrokenVerifierAffirmsWrongNonce(t *testing.T) {
	w := newWorld(t)
	broken, err := verifier.NewService(w.signKey,
		verifier.WithFormat(softeat.Format, softeat.MediaType, nonceBlindVerifier{w.local}, softeat.Binding))
	if err != nil {
		t.Fatal(err)
	}
	brokenSrv := start(t, broken)
	ep1 := postauthtest.MutualTLS(t)
	ep2 := reconnect(t, ep1)
	replay := &replaying{inner: w.att}
	withLocal := remoteAt(t, brokenSrv.URL(), ear.WithVerifierKeys(broken.PublicKey()))
	if _, err := exchange(t, ep1, replay, withLocal); err != nil {
		t.Fatal(err)
	}
	// The broken endpoint really affirms the replayed Evidence: a relying
	// party that trusts its verdict for freshness accepts the replay.
	trusting, err := ear.NewRemoteVerifier(brokenSrv.URL(), ear.WithVerifierKeys(broken.PublicKey()), ear.WithInsecureRemoteBinding(softeat.MediaType))
	if err != nil {
		t.Fatal(err)
	}
	defer trusting.Close()
	if _, err := exchange(t, ep2, replay, trusting); err == nil {
		// The EAR's key hash comes from the Evidence, which was made for
		// the same key: only the binder differs, and only a local check sees it.
		t.Log("as expected, the remote verdict alone accepts the replay")
	} else {
		t.Fatalf("the broken endpoint did not affirm the replay (%v): the test proves nothing", err)
	}
	_, err = exchange(t, ep2, replay, withLocal)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
	if !errors.Is(err, ear.ErrLocalBinding) {
		t.Fatalf("want the local check, got %v", err)
	}
}

func TestBackgroundCheckLocalChecksBeforeSending(t *testing.T) {
	w := newWorld(t)
	hits := &counting{h: w.svc}
	srv := start(t, hits)
	rv := remoteAt(t, srv.URL(), ear.WithVerifierKeys(w.svc.PublicKey()))
	ep1 := postauthtest.MutualTLS(t)
	ep2 := reconnect(t, ep1)
	replay := &replaying{inner: w.att}
	if _, err := exchange(t, ep1, replay, rv); err != nil {
		t.Fatal(err)
	}
	rv.Close() // wait for the background delete of the first session
	before := hits.n.Load()
	t.Run("replayed Evidence", func(t *testing.T) {
		_, err := exchange(t, ep2, replay, rv)
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
	})
	t.Run("Evidence for another key", func(t *testing.T) {
		_, err := exchange(t, ep2, keySwap{inner: w.att, key: postauthtest.NewKey(t).Public()}, rv)
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonKeyHashMismatch)
	})
	t.Run("media type without a local checker", func(t *testing.T) {
		_, err := exchange(t, ep2, retype{inner: w.att, typ: "application/vnd.reattest.tpm-quote+cbor"}, rv)
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonFormatNotAccepted)
	})
	t.Run("garbage Evidence", func(t *testing.T) {
		_, err := exchange(t, ep2, garbageEvidence{}, rv)
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonEvidenceInvalid)
	})
	if n := hits.n.Load(); n != before {
		t.Fatalf("%d requests reached the verifier for Evidence refused locally", n-before)
	}
}

func TestBackgroundCheckVerdicts(t *testing.T) {
	w := newWorld(t)
	ep := postauthtest.MutualTLS(t)
	t.Run("untrusted attestation key: contraindicated", func(t *testing.T) {
		stranger, _ := postauthtest.Software(t)
		_, err := exchange(t, ep, stranger, w.remote(t))
		postauthtest.WantError(t, err, postauth.CodePolicyDenied, postauth.ReasonEARPolicyDenied)
	})
	t.Run("software Evidence under a hardware policy", func(t *testing.T) {
		p := &ear.Policy{TrustVector: map[string]string{"hardware": "affirming"}}
		_, err := exchange(t, ep, w.att, w.remote(t, ear.WithPolicy(p)))
		postauthtest.WantError(t, err, postauth.CodePolicyDenied, postauth.ReasonEARPolicyDenied)
	})
	t.Run("contraindicated accepted by a permissive policy is still no pass without binding", func(t *testing.T) {
		// min_status contraindicated accepts the verdict, but the Evidence
		// must still be bound: a stranger's Evidence is bound (it is fresh)
		// and the relying party learns "contraindicated" from its policy.
		stranger, _ := postauthtest.Software(t)
		p := &ear.Policy{MinStatus: "contraindicated"}
		res, err := exchange(t, ep, stranger, w.remote(t, ear.WithPolicy(p)))
		if err != nil {
			t.Fatal(err)
		}
		if res.Format() != softeat.Format {
			t.Fatalf("format %q", res.Format())
		}
	})
	t.Run("sessions are deleted", func(t *testing.T) {
		rv := w.remote(t)
		for range 3 {
			if _, err := exchange(t, ep, w.att, rv); err != nil {
				t.Fatal(err)
			}
		}
		rv.Close()
		ss, err := http.Get(w.srv.URL() + "/challenge-response/v1/session/00000000-0000-4000-8000-000000000000")
		if err != nil {
			t.Fatal(err)
		}
		ss.Body.Close()
		if ss.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d", ss.StatusCode)
		}
	})
}

// keySwap attests for another authenticator key than the challenge's.
type keySwap struct {
	inner postauth.Attester
	key   crypto.PublicKey
}

func (k keySwap) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	der, err := x509.MarshalPKIXPublicKey(k.key)
	if err != nil {
		return postauth.Evidence{}, err
	}
	sum := sha256.Sum256(der)
	ch.KeyHash = sum[:]
	return k.inner.Attest(ctx, ch)
}

// retype relabels Evidence with another media type.
type retype struct {
	inner postauth.Attester
	typ   string
}

func (r retype) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	ev, err := r.inner.Attest(ctx, ch)
	ev.Type = r.typ
	return ev, err
}

type garbageEvidence struct{}

func (garbageEvidence) Attest(context.Context, postauth.Challenge) (postauth.Evidence, error) {
	return postauth.Evidence{Type: softeat.MediaType, Value: []byte("not a COSE_Sign1")}, nil
}

func TestBackgroundCheckVerifierFailures(t *testing.T) {
	w := newWorld(t)
	ep := postauthtest.MutualTLS(t)
	// timeout cuts the slow verifiers short; every other case must fail
	// for its own reason however slow the machine, so it gets a timeout it
	// never reaches.
	const timeout, generous = 200 * time.Millisecond, 30 * time.Second

	// fake serves the API with scripted answers: newSession and the
	// Evidence POST.
	type script struct {
		newSession func(w http.ResponseWriter, r *http.Request)
		evidence   func(w http.ResponseWriter, r *http.Request)
	}
	session := func(status int, nonce string, result *string) []byte {
		b, _ := json.Marshal(map[string]any{"status": map[int]string{201: "waiting", 200: "complete"}[status], "nonce": nonce,
			"expiry": time.Now().Add(time.Minute).Format(time.RFC3339), "accept": []string{softeat.MediaType}, "result": result})
		return b
	}
	serve := func(s script) string {
		mux := http.NewServeMux()
		mux.HandleFunc("POST "+ear.NewSessionPath, s.newSession)
		if s.evidence != nil {
			mux.HandleFunc("POST "+ear.SessionPath+"{id}", s.evidence)
		}
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	status := func(code int) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", code) }
	}
	// realThen forwards newSession to the real service and answers the
	// Evidence POST with f.
	realThen := func(f func(w http.ResponseWriter, r *http.Request)) script {
		return script{newSession: w.svc.ServeHTTP, evidence: f}
	}
	// earFor answers the Evidence POST with an EAR the test signs: key,
	// nonce and status chosen per case.
	earFor := func(key *ecdsa.PrivateKey, nonceOf func(sent []byte) []byte) func(w http.ResponseWriter, r *http.Request) {
		return func(rw http.ResponseWriter, r *http.Request) {
			// Ask the real service for the session to learn its nonce.
			req := httptest.NewRequest(http.MethodGet, r.URL.Path, nil)
			rec := httptest.NewRecorder()
			w.svc.ServeHTTP(rec, req)
			var s struct{ Nonce string }
			_ = json.Unmarshal(rec.Body.Bytes(), &s)
			sent, _ := b64URLPadded(s.Nonce)
			claims := map[string]any{"eat_profile": ear.Profile, "iat": time.Now().Unix(), "eat_nonce": ear.EncodeNonce(nonceOf(sent)),
				"ear.verifier-id": map[string]any{"build": "x", "developer": "x"},
				"submods":         map[string]any{"x": map[string]any{"ear.status": "affirming"}}}
			tok := jwtOf(t, goodHeader, claims, key)
			rw.Header().Set("Content-Type", ear.SessionMediaType)
			rw.Write(session(200, s.Nonce, &tok))
		}
	}
	same := func(n []byte) []byte { return n }
	cases := []struct {
		name   string
		url    func() string
		reason postauth.Reason
	}{
		{"verifier down", func() string {
			srv := httptest.NewServer(http.NotFoundHandler())
			srv.Close()
			return srv.URL
		}, postauth.ReasonVerifierUnavailable},
		{"500 on newSession", func() string { return serve(script{newSession: status(500)}) }, postauth.ReasonVerifierUnavailable},
		{"503 on newSession", func() string { return serve(script{newSession: status(503)}) }, postauth.ReasonVerifierUnavailable},
		{"500 on the Evidence", func() string { return serve(realThen(status(500))) }, postauth.ReasonVerifierUnavailable},
		{"415 on the Evidence", func() string { return serve(realThen(status(415))) }, postauth.ReasonVerifierError},
		{"200 instead of 201", func() string {
			return serve(script{newSession: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }})
		}, postauth.ReasonVerifierError},
		{"garbage session body", func() string {
			return serve(script{newSession: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "session/1")
				w.Header().Set("Content-Type", ear.SessionMediaType)
				w.WriteHeader(201)
				w.Write([]byte("\x00garbage"))
			}})
		}, postauth.ReasonVerifierError},
		{"wrong content type", func() string {
			return serve(script{newSession: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "session/1")
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(201)
				w.Write(session(201, r.URL.Query().Get("nonce"), nil))
			}})
		}, postauth.ReasonVerifierError},
		{"session for another nonce", func() string {
			return serve(script{newSession: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "session/1")
				w.Header().Set("Content-Type", ear.SessionMediaType)
				w.WriteHeader(201)
				w.Write(session(201, "AAAAAAAAAAAAAAAAAAAAAA==", nil))
			}})
		}, postauth.ReasonVerifierError},
		{"session echoes another nonce, then a good EAR", func() string {
			// A real session (for the nonce sent) whose creation answer
			// names another nonce; the EAR that follows is bound to the
			// nonce sent, so only the echo check sees the lie.
			return serve(script{newSession: func(rw http.ResponseWriter, r *http.Request) {
				rec := httptest.NewRecorder()
				w.svc.ServeHTTP(rec, r)
				var body map[string]any
				_ = json.Unmarshal(rec.Body.Bytes(), &body)
				body["nonce"] = "AAAAAAAAAAAAAAAAAAAAAA=="
				for k, v := range rec.Header() {
					rw.Header()[k] = v
				}
				rw.WriteHeader(rec.Code)
				_ = json.NewEncoder(rw).Encode(body)
			}, evidence: earFor(w.signKey, same)})
		}, postauth.ReasonVerifierError},
		{"Location on another host", func() string {
			return serve(script{newSession: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "http://evil.example/challenge-response/v1/session/1")
				w.Header().Set("Content-Type", ear.SessionMediaType)
				w.WriteHeader(201)
				w.Write(session(201, r.URL.Query().Get("nonce"), nil))
			}})
		}, postauth.ReasonVerifierError},
		{"Location outside the sessions", func() string {
			return serve(script{newSession: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "../../admin/steal")
				w.Header().Set("Content-Type", ear.SessionMediaType)
				w.WriteHeader(201)
				w.Write(session(201, r.URL.Query().Get("nonce"), nil))
			}})
		}, postauth.ReasonVerifierError},
		{"no Location", func() string {
			return serve(script{newSession: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ear.SessionMediaType)
				w.WriteHeader(201)
				w.Write(session(201, r.URL.Query().Get("nonce"), nil))
			}})
		}, postauth.ReasonVerifierError},
		{"redirect", func() string {
			return serve(script{newSession: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://evil.example/", http.StatusTemporaryRedirect)
			}})
		}, postauth.ReasonVerifierError},
		{"huge answer", func() string {
			return serve(script{newSession: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ear.SessionMediaType)
				w.Header().Set("Location", "session/1")
				w.WriteHeader(201)
				w.Write([]byte(`{"status":"waiting","x":"` + strings.Repeat("a", 300<<10) + `"}`))
			}})
		}, postauth.ReasonVerifierError},
		{"result not a JWT", func() string {
			return serve(realThen(func(rw http.ResponseWriter, r *http.Request) {
				req := httptest.NewRequest(http.MethodGet, r.URL.Path, nil)
				rec := httptest.NewRecorder()
				w.svc.ServeHTTP(rec, req)
				var s struct{ Nonce string }
				_ = json.Unmarshal(rec.Body.Bytes(), &s)
				junk := "garbage"
				rw.Header().Set("Content-Type", ear.SessionMediaType)
				rw.Write(session(200, s.Nonce, &junk))
			}))
		}, postauth.ReasonVerifierError},
		{"EAR signed by another key", func() string { return serve(realThen(earFor(postauthtest.NewKey(t), same))) }, postauth.ReasonVerifierError},
		{"EAR for another nonce", func() string {
			return serve(realThen(earFor(w.signKey, func([]byte) []byte { return make([]byte, 32) })))
		}, postauth.ReasonVerifierError},
		{"slow verifier", func() string {
			return start(t, delayed{h: w.svc, d: generous}).URL()
		}, postauth.ReasonVerifierTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			to := generous
			if tc.reason == postauth.ReasonVerifierTimeout {
				to = timeout
			}
			rv := remoteAt(t, tc.url(), ear.WithVerifierKeys(w.svc.PublicKey()), ear.WithTimeout(to))
			began := time.Now()
			_, err := exchange(t, ep, w.att, rv)
			postauthtest.WantError(t, err, postauth.CodeUnavailable, tc.reason)
			// No case waits for the slow verifier's answer.
			if d := time.Since(began); d > generous/2 {
				t.Fatalf("took %v with a %v timeout", d, to)
			}
		})
	}
	t.Run("late answer after the deadline", func(t *testing.T) {
		// A transport that ignores the request's context delivers the
		// verifier's (valid) answer after the deadline: it is not used.
		srv := start(t, delayed{h: w.svc, d: 2 * timeout, only: http.MethodPost + " evidence"})
		deaf := &http.Client{Transport: deafTransport{}}
		rv := remoteAt(t, srv.URL(), ear.WithVerifierKeys(w.svc.PublicKey()), ear.WithTimeout(timeout), ear.WithHTTPClient(deaf))
		_, err := exchange(t, ep, w.att, rv)
		postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierTimeout)
	})
}

func b64URLPadded(s string) ([]byte, error) {
	return base64.URLEncoding.DecodeString(s)
}

// delayed holds requests for d before serving them (all of them, or only
// the Evidence POSTs with only set), giving up if the client goes away
// unless the client ignores contexts.
type delayed struct {
	h    http.Handler
	d    time.Duration
	only string
}

func (d delayed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d.only == "" || (r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/session/")) {
		select {
		case <-time.After(d.d):
		case <-r.Context().Done():
			return
		}
	}
	d.h.ServeHTTP(w, r)
}

// deafTransport sends requests without their context: answers arrive
// whenever the server sends them, deadline or not.
type deafTransport struct{}

func (deafTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return http.DefaultTransport.RoundTrip(r.WithContext(context.Background()))
}

func TestCircuitBreaker(t *testing.T) {
	w := newWorld(t)
	ep := postauthtest.MutualTLS(t)
	var mu sync.Mutex
	failing := true
	h := &counting{h: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := failing
		mu.Unlock()
		if f {
			http.Error(rw, "down", http.StatusInternalServerError)
			return
		}
		w.svc.ServeHTTP(rw, r)
	})}
	srv := start(t, h)
	clock := postauthtest.NewClock(time.Now())
	rv := remoteAt(t, srv.URL(), ear.WithVerifierKeys(w.svc.PublicKey()), ear.WithCircuitBreaker(3, time.Minute), ear.WithClock(clock.Now),
		ear.WithPolicy(&ear.Policy{MaxAge: ear.Duration(time.Hour)}))
	for range 3 {
		_, err := exchange(t, ep, w.att, rv)
		postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierUnavailable)
	}
	if h.n.Load() != 3 {
		t.Fatalf("%d requests", h.n.Load())
	}
	_, err := exchange(t, ep, w.att, rv)
	postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierCircuitOpen)
	var pe *postauth.Error
	if errors.As(err, &pe) && pe.RetryAfter <= 0 {
		t.Fatal("no Retry-After while open")
	}
	if h.n.Load() != 3 {
		t.Fatal("a request reached the verifier while the circuit was open")
	}
	// After the cooldown one probe goes through; it fails: open again.
	clock.Advance(time.Minute)
	_, err = exchange(t, ep, w.att, rv)
	postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierUnavailable)
	_, err = exchange(t, ep, w.att, rv)
	postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierCircuitOpen)
	// The verifier recovers: the next probe closes the circuit.
	mu.Lock()
	failing = false
	mu.Unlock()
	clock.Advance(time.Minute)
	for range 2 {
		if _, err := exchange(t, ep, w.att, rv); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMaxInFlight(t *testing.T) {
	w := newWorld(t)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	srv := start(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ear.NewSessionPath {
			entered <- struct{}{}
			<-release
		}
		w.svc.ServeHTTP(rw, r)
	}))
	rv := remoteAt(t, srv.URL(), ear.WithVerifierKeys(w.svc.PublicKey()), ear.WithMaxInFlight(1))
	ep1, ep2 := postauthtest.MutualTLS(t), postauthtest.MutualTLS(t)
	done := make(chan error, 1)
	go func() {
		_, err := exchange(t, ep1, w.att, rv)
		done <- err
	}()
	<-entered
	_, err := exchange(t, ep2, w.att, rv)
	postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierBusy)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestTrustOnFirstFetch(t *testing.T) {
	w := newWorld(t)
	h := &counting{h: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.svc.ServeHTTP(rw, r)
	})}
	wellKnown := &counting{h: h}
	mux := http.NewServeMux()
	mux.Handle(ear.WellKnownPath, wellKnown)
	mux.Handle("/", h)
	srv := start(t, mux)
	if _, err := ear.NewRemoteVerifier(srv.URL(), ear.WithLocalBinding(softeat.MediaType, softeat.Binding)); err == nil {
		t.Fatal("a RemoteVerifier without a key or the opt-in")
	}
	rv := remoteAt(t, srv.URL(), ear.WithTrustOnFirstFetch())
	ep := postauthtest.MutualTLS(t)
	for range 3 {
		if _, err := exchange(t, ep, w.att, rv); err != nil {
			t.Fatal(err)
		}
	}
	if n := wellKnown.n.Load(); n != 1 {
		t.Fatalf("the key was fetched %d times", n)
	}
	// A pinned key wins over the opt-in: nothing is fetched.
	pinned := remoteAt(t, srv.URL(), ear.WithTrustOnFirstFetch(), ear.WithVerifierKeys(w.svc.PublicKey()))
	if _, err := exchange(t, ep, w.att, pinned); err != nil {
		t.Fatal(err)
	}
	if n := wellKnown.n.Load(); n != 1 {
		t.Fatalf("the key was fetched %d times", n)
	}
	// The first fetch pins: a verifier whose key changes afterwards is
	// not trusted.
	rogue := newWorld(t)
	swap := &swapping{h: w.svc}
	swapSrv := start(t, swap)
	rv2 := remoteAt(t, swapSrv.URL(), ear.WithTrustOnFirstFetch())
	if _, err := exchange(t, ep, w.att, rv2); err != nil {
		t.Fatal(err)
	}
	swap.set(rogue.svc)
	_, err := exchange(t, ep, rogue.att, rv2)
	postauthtest.WantError(t, err, postauth.CodeUnavailable, postauth.ReasonVerifierError)
}

// swapping serves one handler, then another.
type swapping struct {
	mu sync.Mutex
	h  http.Handler
}

func (s *swapping) set(h http.Handler) {
	s.mu.Lock()
	s.h = h
	s.mu.Unlock()
}

func (s *swapping) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.h
	s.mu.Unlock()
	h.ServeHTTP(w, r)
}

func TestBackgroundCheckAsyncSession(t *testing.T) {
	// A verifier that answers 202 (processing) and completes on a later
	// GET, as Veraison may.
	w := newWorld(t)
	var mu sync.Mutex
	pending := map[string]*httptest.ResponseRecorder{}
	h := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/session/") || r.Method == http.MethodDelete {
			w.svc.ServeHTTP(rw, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPost {
			rec := httptest.NewRecorder()
			w.svc.ServeHTTP(rec, r)
			pending[r.URL.Path] = rec
			var s map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &s)
			s["status"] = "processing"
			delete(s, "result")
			rw.Header().Set("Content-Type", ear.SessionMediaType)
			rw.WriteHeader(http.StatusAccepted)
			_ = json.NewEncoder(rw).Encode(s)
			return
		}
		rec := pending[r.URL.Path]
		rw.Header().Set("Content-Type", ear.SessionMediaType)
		rw.Write(rec.Body.Bytes())
	})
	srv := start(t, h)
	rv := remoteAt(t, srv.URL(), ear.WithVerifierKeys(w.svc.PublicKey()), ear.WithPollInterval(time.Millisecond))
	ep := postauthtest.MutualTLS(t)
	if _, err := exchange(t, ep, w.att, rv); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteVerifierCallerCancels(t *testing.T) {
	w := newWorld(t)
	srv := start(t, delayed{h: w.svc, d: 300 * time.Millisecond, only: "evidence"})
	rv := remoteAt(t, srv.URL(), ear.WithVerifierKeys(w.svc.PublicKey()), ear.WithCircuitBreaker(1, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	binder := sha256.Sum256([]byte("b"))
	ch := postauth.Challenge{Binder: binder[:], KeyHash: spkiHash(t, postauthtest.NewKey(t).Public()), Hash: crypto.SHA256}
	ev, err := w.att.Attest(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := rv.Verify(ctx, ch, ev); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	// A caller that hung up does not open the circuit (threshold 1).
	if _, err := rv.Verify(context.Background(), ch, ev); postauth.CodeOf(err) == postauth.CodeUnavailable && strings.Contains(err.Error(), "circuit") {
		t.Fatalf("circuit opened by a cancellation: %v", err)
	}
}

func TestNewRemoteVerifierRefuses(t *testing.T) {
	key := postauthtest.NewKey(t).Public()
	bind := ear.WithLocalBinding(softeat.MediaType, softeat.Binding)
	for _, tc := range []struct {
		name string
		url  string
		opts []ear.RemoteOption
	}{
		{"no key", "http://127.0.0.1:1", []ear.RemoteOption{bind}},
		{"no media type", "http://127.0.0.1:1", []ear.RemoteOption{ear.WithVerifierKeys(key)}},
		{"bad URL", "ftp://x", []ear.RemoteOption{ear.WithVerifierKeys(key), bind}},
		{"URL with a query", "http://x/?a=b", []ear.RemoteOption{ear.WithVerifierKeys(key), bind}},
		{"private key", "http://x", []ear.RemoteOption{ear.WithVerifierKeys(postauthtest.NewKey(t)), bind}},
		{"nil binding", "http://x", []ear.RemoteOption{ear.WithVerifierKeys(key), ear.WithLocalBinding(softeat.MediaType, nil)}},
		{"bad media type", "http://x", []ear.RemoteOption{ear.WithVerifierKeys(key), ear.WithLocalBinding("not a type", softeat.Binding)}},
		{"bad policy", "http://x", []ear.RemoteOption{ear.WithVerifierKeys(key), bind, ear.WithPolicy(&ear.Policy{MaxAge: -1})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ear.NewRemoteVerifier(tc.url, tc.opts...); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
