package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reattest/reattest/middleware"
)

// TestDemo runs the whole story, as `go run ./examples/agent` does, and
// checks the transcript's key lines.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(nil, &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"GET /v1/search -> 200",
		"<- 401 challenge: attestation_required (operation mode)",
		"<- gateway attested: software-eat evidence",
		"PUT /v1/config -> 200",
		"POST /v1/payments -> 403",
		"violations: tool:shell forbidden",
		"stolen TLS key -> 401",
		"all steps went as expected",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("transcript lacks %q\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "UNEXPECTED") {
		t.Error(out.String())
	}
}

func TestUnknownMode(t *testing.T) {
	if err := run([]string{"-mode", "nope"}, &bytes.Buffer{}); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

// The demo gateway's discovery document lists its high-impact routes (gin
// routes) and their modes, without a client certificate.
func TestGatewayDiscovery(t *testing.T) {
	g, err := newGateway(gatewayConfig{listen: "127.0.0.1:0", configTTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go g.serve()
	defer g.close()
	pool, err := loadCertPool("")
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}}}
	resp, err := c.Get("https://" + g.addr() + middleware.WellKnownPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d middleware.Discovery
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range d.Routes {
		got[r.Pattern] = r.Mode
	}
	if got["POST /v1/payments"] != "operation" || got["PUT /v1/config"] != "connection" || len(got) != 2 {
		t.Fatalf("routes %+v", d.Routes)
	}
	if !slices.Equal(d.FreshnessModes, []string{"connection", "operation"}) || !d.ServerAttests {
		t.Fatalf("discovery %+v", d)
	}
}
