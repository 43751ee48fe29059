package transports_test

import (
	"crypto"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

type gw struct {
	pki    *postauthtest.PKI
	srv    *httptest.Server
	attKey crypto.Signer
	agent  tls.Certificate
}

func newGateway(t *testing.T, tls12 bool) *gw {
	t.Helper()
	pki := postauthtest.New(t)
	attKey := postauthtest.NewKey(t)
	v, _ := softeat.NewVerifier([]crypto.PublicKey{attKey.Public()})
	guard, err := middleware.New(v, middleware.WithRoute("PUT /config", middleware.Route{}))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := httptest.NewUnstartedServer(guard.Middleware(mux))
	srv.EnableHTTP2 = true
	srv.TLS = pki.ServerConfig(pki.Issue(t, "localhost", postauthtest.ServerAuth()))
	if tls12 {
		srv.TLS.MinVersion, srv.TLS.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		srv.EnableHTTP2 = false
	}
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &gw{pki: pki, srv: srv, attKey: attKey, agent: pki.Issue(t, "agent")}
}

func (g *gw) transport(t *testing.T, withAttester bool, opts ...transports.Option) *transports.Transport {
	t.Helper()
	base := &http.Transport{TLSClientConfig: g.pki.ClientConfig(&g.agent)}
	base.TLSClientConfig.MinVersion = tls.VersionTLS12
	if withAttester {
		att, _ := softeat.NewAttester(g.attKey)
		id, _ := postauth.IdentityFromTLS(&g.agent)
		opts = append(opts, transports.WithAttester(id, att), transports.WithAttestTo("127.0.0.1"))
	}
	tr, err := transports.NewTransport(base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func put(c *http.Client, url string) (*http.Response, error) {
	req, _ := http.NewRequest("PUT", url, strings.NewReader("x"))
	resp, err := c.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func TestTLS12ServesPlainRequestsOnly(t *testing.T) {
	g := newGateway(t, true)
	c := &http.Client{Transport: g.transport(t, true)}
	resp, err := c.Get(g.srv.URL + "/search")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("plain request over TLS 1.2: %v %v", resp, err)
	}
	resp.Body.Close()
	// The server cannot challenge on TLS 1.2: a 401 without a request.
	resp, err = put(c, g.srv.URL+"/config")
	if err != nil || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(middleware.HeaderAttestationRequest) != "" {
		t.Fatalf("protected request over TLS 1.2: %v %v", resp, err)
	}
}

func TestNoAttester(t *testing.T) {
	g := newGateway(t, false)
	c := &http.Client{Transport: g.transport(t, false)}
	if _, err := put(c, g.srv.URL+"/config"); !errors.Is(err, transports.ErrNoAttester) {
		t.Fatalf("want ErrNoAttester, got %v", err)
	}
}

func TestPlainHTTPGoesToBase(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") }))
	defer srv.Close()
	tr, err := transports.NewTransport(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "plain" || tr.Conns() != 0 {
		t.Fatalf("%q, %d pinned connections", b, tr.Conns())
	}
}

func TestIdleConnectionsClosed(t *testing.T) {
	g := newGateway(t, false)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	base := &http.Transport{TLSClientConfig: g.pki.ClientConfig(&g.agent), IdleConnTimeout: time.Minute}
	att, _ := softeat.NewAttester(g.attKey)
	id, _ := postauth.IdentityFromTLS(&g.agent)
	tr, _ := transports.NewTransport(base, transports.WithAttester(id, att), transports.WithAttestTo("127.0.0.1"), transports.WithClock(clock))
	defer tr.Close()
	c := &http.Client{Transport: tr}
	if resp, err := put(c, g.srv.URL+"/config"); err != nil || resp.StatusCode != 200 {
		t.Fatal(resp, err)
	}
	if tr.Conns() != 1 {
		t.Fatalf("conns = %d", tr.Conns())
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	// The next request finds the idle connection expired and dials anew.
	if resp, err := put(c, g.srv.URL+"/config"); err != nil || resp.StatusCode != 200 {
		t.Fatal(resp, err)
	}
	if tr.Conns() != 1 {
		t.Fatalf("conns = %d after idle expiry, want 1 (the old one closed)", tr.Conns())
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := transports.NewTransport(nil, transports.WithAttester(nil, &softeat.Attester{})); err == nil {
		t.Error("attester without identity accepted")
	}
	if _, err := transports.NewTransport(nil, transports.WithServerAttestation(func(*http.Request) bool { return true }, nil, time.Minute)); err == nil {
		t.Error("server attestation without a policy accepted")
	}
}

func TestClosed(t *testing.T) {
	g := newGateway(t, false)
	tr := g.transport(t, true)
	tr.Close()
	if _, err := (&http.Client{Transport: tr}).Get(g.srv.URL + "/search"); !errors.Is(err, transports.ErrClosed) {
		t.Fatalf("want ErrClosed, got %v", err)
	}
}

// A zero Transport is safe: it sends nothing and says how to make one.
func TestZeroTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") }))
	defer srv.Close()
	var tr transports.Transport
	defer tr.Close()
	if _, err := (&http.Client{Transport: &tr}).Get(srv.URL); !errors.Is(err, transports.ErrNotConfigured) {
		t.Fatalf("zero Transport: %v, want ErrNotConfigured", err)
	}
	if tr.Conns() != 0 {
		t.Fatal(tr.Conns())
	}
}

func TestAttesterNeedsTargets(t *testing.T) {
	g := newGateway(t, false)
	att, _ := softeat.NewAttester(g.attKey)
	id, _ := postauth.IdentityFromTLS(&g.agent)
	if _, err := transports.NewTransport(nil, transports.WithAttester(id, att)); err == nil {
		t.Fatal("an attester without WithAttestTo/WithAttestFor was accepted")
	}
}

// Evidence reveals the agent's machine and posture: only the servers named
// with WithAttestTo get it (and the posture hint); another server's
// challenge is returned unanswered.
func TestEvidenceOnlyToAllowedServers(t *testing.T) {
	g := newGateway(t, false)
	var sawHint atomic.Bool
	inner := g.srv.Config.Handler
	g.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(middleware.HeaderPosture) != "" {
			sawHint.Store(true)
		}
		inner.ServeHTTP(w, r)
	})
	inner2, _ := softeat.NewAttester(g.attKey)
	att := &postauthtest.CountingAttester{Inner: inner2}
	id, _ := postauth.IdentityFromTLS(&g.agent)
	tracker, _ := posture.NewTracker()
	tr, err := transports.NewTransport(&http.Transport{TLSClientConfig: g.pki.ClientConfig(&g.agent)},
		transports.WithAttester(id, att), transports.WithAttestTo("gateway.example"), transports.WithPosture(tracker))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	resp, err := put(&http.Client{Transport: tr}, g.srv.URL+"/config")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || att.Count() != 0 || sawHint.Load() {
		t.Fatalf("status %d, %d attestations, hint sent %v: Evidence went to a server not allowed", resp.StatusCode, att.Count(), sawHint.Load())
	}
}

// A request that needs an attested server never leaves over plain http
// (for example after a redirect to http).
func TestCriticalRequestNotSentInClear(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	v, _ := softeat.NewVerifier([]crypto.PublicKey{postauthtest.NewKey(t).Public()})
	tr, _ := transports.NewTransport(nil, transports.WithServerAttestation(func(*http.Request) bool { return true }, postauthtest.RelyingParty(t, v), time.Minute))
	defer tr.Close()
	_, err := put(&http.Client{Transport: tr}, srv.URL+"/config")
	if !errors.Is(err, transports.ErrServerNotAttested) || hits.Load() != 0 {
		t.Fatalf("critical request over http: %v, server hit %d times", err, hits.Load())
	}
}

// Connection-mode challenges of two routes in flight at once on one HTTP/2
// connection: each route gets its own attestation; neither rides on the
// other's (the server's verdicts are per route).
func TestConcurrentRoutesOnOneConnection(t *testing.T) {
	pki := postauthtest.New(t)
	attKey := postauthtest.NewKey(t)
	v, _ := softeat.NewVerifier([]crypto.PublicKey{attKey.Public()})
	guard, err := middleware.New(v, middleware.WithRoute("PUT /config", middleware.Route{}), middleware.WithRoute("POST /pay", middleware.Route{}))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	inner := guard.Middleware(mux)
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/config" && r.Header.Get(middleware.HeaderAttestation) == "" {
			first := false
			once.Do(func() { first = true })
			if first { // hold the first /config request until /pay is attested
				close(arrived)
				<-release
			}
		}
		inner.ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(outer)
	srv.EnableHTTP2 = true
	srv.TLS = pki.ServerConfig(pki.Issue(t, "localhost", postauthtest.ServerAuth()))
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	defer srv.Close()
	agent := pki.Issue(t, "agent")
	att, _ := softeat.NewAttester(attKey)
	id, _ := postauth.IdentityFromTLS(&agent)
	p := new(http.Protocols)
	p.SetHTTP2(true)
	tr, err := transports.NewTransport(&http.Transport{TLSClientConfig: pki.ClientConfig(&agent), Protocols: p},
		transports.WithAttester(id, att), transports.WithAttestTo("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	c := &http.Client{Transport: tr}
	statusX := make(chan int, 1)
	go func() {
		resp, err := put(c, srv.URL+"/config")
		if err != nil {
			statusX <- -1
			return
		}
		statusX <- resp.StatusCode
	}()
	<-arrived
	req, _ := http.NewRequest("POST", srv.URL+"/pay", strings.NewReader("x"))
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pay: %v %v", resp, err)
	}
	resp.Body.Close()
	close(release)
	if s := <-statusX; s != 200 {
		t.Fatalf("PUT /config returned %d", s)
	}
}
