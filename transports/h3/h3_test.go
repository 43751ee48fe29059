package h3_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reattest/reattest/middleware/h3attest"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/transports"
	"github.com/reattest/reattest/transports/h3"
)

type h3Env struct {
	pki      *postauthtest.PKI
	addr     string
	agent    tls.Certificate
	server   tls.Certificate
	attester *postauthtest.CountingAttester
	calls    atomic.Int64
}

// newH3Env starts an HTTP/3 server with the middleware on loopback UDP.
func newH3Env(t *testing.T, allow0RTT bool, extra ...func(*h3Env) middleware.Option) *h3Env {
	t.Helper()
	e := &h3Env{pki: postauthtest.New(t)}
	e.server = e.pki.Issue(t, "localhost", postauthtest.ServerAuth())
	e.agent = e.pki.Issue(t, "agent")
	attKey := postauthtest.NewKey(t)
	att, _ := softeat.NewAttester(attKey)
	e.attester = &postauthtest.CountingAttester{Inner: att}
	v, _ := softeat.NewVerifier([]crypto.PublicKey{attKey.Public()})
	opts := []middleware.Option{
		middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation}),
		middleware.WithRoute("PUT /config", middleware.Route{}),
		middleware.WithRoute("GET /early", middleware.Route{}),
	}
	for _, f := range extra {
		opts = append(opts, f(e))
	}
	guard, err := middleware.New(v, opts...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		_, ok := postauth.FromContext(r.Context())
		io.WriteString(w, r.Proto)
		if ok {
			io.WriteString(w, " attested")
		}
	})
	tlsConf := e.pki.ServerConfig(e.server)
	srv := &http3.Server{Handler: guard.Middleware(mux), TLSConfig: http3.ConfigureTLSConfig(tlsConf)}
	h3attest.ConfigureServer(srv)
	if allow0RTT {
		srv.QUICConfig.Allow0RTT = true // deliberately unsafe, to test the middleware's 425
		srv.TLSConfig.SessionTicketsDisabled = false
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = pc.LocalAddr().String()
	go srv.Serve(pc)
	t.Cleanup(func() { srv.Close(); pc.Close() })
	return e
}

func (e *h3Env) client(t *testing.T, opts ...transports.Option) *http.Client {
	t.Helper()
	id, _ := postauth.IdentityFromTLS(&e.agent)
	tr, err := h3.NewTransport(e.pki.ClientConfig(&e.agent), nil, append([]transports.Option{transports.WithAttester(id, e.attester), transports.WithAttestTo("127.0.0.1")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func send(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTP3(t *testing.T) {
	e := newH3Env(t, false)
	c := e.client(t)
	base := "https://" + e.addr
	if s, b := send(t, c, "POST", base+"/pay", "amount=1"); s != 200 || b != "HTTP/3.0 attested" {
		t.Fatalf("payment over HTTP/3: %d %q", s, b)
	}
	for i := range 2 {
		if s, b := send(t, c, "PUT", base+"/config", "v"); s != 200 || b != "HTTP/3.0 attested" {
			t.Fatalf("config %d: %d %q", i, s, b)
		}
	}
	if n := e.attester.Count(); n != 2 {
		t.Fatalf("attestations = %d, want 2 (one payment, one config connection)", n)
	}
	if s, b := send(t, c, "GET", base+"/search", ""); s != 200 || b != "HTTP/3.0" {
		t.Fatalf("search: %d %q", s, b)
	}
}

// Relay over QUIC: an Attestation header made on one QUIC connection does
// not verify on another.
func TestHTTP3Relay(t *testing.T) {
	e := newH3Env(t, false)
	dial := func() (*http3.ClientConn, *postauth.Channel) {
		qc, err := quic.DialAddr(context.Background(), e.addr, http3.ConfigureTLSConfig(e.pki.ClientConfig(&e.agent)), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { qc.CloseWithError(0, "") })
		ch, err := h3.Channel(context.Background(), qc)
		if err != nil {
			t.Fatal(err)
		}
		return (&http3.Transport{}).NewClientConn(qc), ch
	}
	a, chA := dial()
	b, _ := dial()
	rt := func(cc *http3.ClientConn, hdr string) *http.Response {
		req, _ := http.NewRequest("PUT", "https://"+e.addr+"/config", nil)
		if hdr != "" {
			req.Header.Set(middleware.HeaderAttestation, hdr)
		}
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp
	}
	chal := rt(a, "")
	raw, _, err := httpbind.DecodeBytes(chal.Header.Get(middleware.HeaderAttestationRequest), httpbind.MaxRequestHeader)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := postauth.ParseRequest(raw)
	id, _ := postauth.IdentityFromTLS(&e.agent)
	responder, _ := postauth.NewResponder(id, e.attester)
	out, err := responder.Respond(context.Background(), chA, postauth.RoleClient, req)
	if err != nil {
		t.Fatal(err)
	}
	hdr := httpbind.EncodeBytes(out)
	rt(b, "")
	if r := rt(b, hdr); r.StatusCode != 401 {
		t.Fatalf("relayed to another QUIC connection: %d", r.StatusCode)
	}
	if r := rt(a, hdr); r.StatusCode != 200 {
		t.Fatalf("on its own connection: %d", r.StatusCode)
	}
}

// A request that arrives as 0-RTT data (replayable) never reaches a
// high-impact handler: 425 Too Early. The server here allows 0-RTT on
// purpose; ConfigureServer turns it off.
func TestHTTP3EarlyDataRefused(t *testing.T) {
	e := newH3Env(t, true)
	cache := tls.NewLRUClientSessionCache(4)
	tc := http3.ConfigureTLSConfig(e.pki.ClientConfig(&e.agent))
	tc.ClientSessionCache = cache
	// The early connection goes through a proxy that holds back the
	// client's handshake completion, so the server reads the 0-RTT request
	// before its handshake is complete, deterministically.
	proxy := newDelayProxy(t, e.addr, time.Second) // long enough for a loaded machine
	get := func(early bool) (int, bool) {
		var qc *quic.Conn
		var err error
		if early {
			qc, err = quic.DialAddrEarly(context.Background(), proxy.addr(), tc, &quic.Config{})
		} else {
			qc, err = quic.DialAddr(context.Background(), e.addr, tc, &quic.Config{})
		}
		if err != nil {
			t.Fatal(err)
		}
		defer qc.CloseWithError(0, "")
		cc := (&http3.Transport{}).NewClientConn(qc)
		method := http.MethodGet
		if early {
			method = http3.MethodGet0RTT
		}
		req, _ := http.NewRequest(method, "https://"+e.addr+"/early", nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, qc.ConnectionState().Used0RTT
	}
	if s, _ := get(false); s != 401 { // learns a session ticket
		t.Fatalf("first request: %d", s)
	}
	s, used := get(true)
	if !used {
		t.Fatal("the client did not use 0-RTT")
	}
	if s != http.StatusTooEarly {
		t.Fatalf("0-RTT request to a high-impact route: %d, want 425", s)
	}
	if e.calls.Load() != 0 {
		t.Fatal("handler ran")
	}
}

func TestConfigureServerTurnsOff0RTT(t *testing.T) {
	srv := &http3.Server{QUICConfig: &quic.Config{Allow0RTT: true}}
	h3attest.ConfigureServer(srv)
	if srv.QUICConfig.Allow0RTT || srv.ConnContext == nil {
		t.Fatal("0-RTT still allowed or no per-connection state")
	}
}

func TestHTTP3ServerAttests(t *testing.T) {
	serverKey := postauthtest.NewKey(t)
	serverAtt, _ := softeat.NewAttester(serverKey)
	e := newH3Env(t, false, func(e *h3Env) middleware.Option {
		id, _ := postauth.IdentityFromTLS(&e.server)
		return middleware.WithServerAttestation(id, serverAtt)
	})
	trusted, _ := softeat.NewVerifier([]crypto.PublicKey{serverKey.Public()})
	var attested atomic.Int64
	c := e.client(t,
		transports.WithServerAttestation(func(r *http.Request) bool { return r.URL.Path == "/config" }, postauthtest.RelyingParty(t, trusted), time.Minute),
		transports.WithObserver(func(ev transports.Activity) {
			if ev.Kind == transports.ActivityServerAttested {
				attested.Add(1)
			}
		}))
	if s, _ := send(t, c, "PUT", "https://"+e.addr+"/config", "v"); s != 200 {
		t.Fatalf("config: %d", s)
	}
	if attested.Load() != 1 {
		t.Fatalf("server attested %d times", attested.Load())
	}
}
