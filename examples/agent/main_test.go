package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth/postauthtest"
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

// -mode gateway and -mode agent as two sides: the gateway logs one line per
// decision (never Evidence), the agent's story goes as expected against
// it, and SIGTERM stops the gateway cleanly.
func TestGatewayAndAgentModes(t *testing.T) {
	var gwOut postauthtest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run([]string{"-mode", "gateway", "-listen", "127.0.0.1:0"}, &gwOut) }()
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; {
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not start:\n%s", gwOut.String())
		}
		if _, rest, ok := strings.Cut(gwOut.String(), "listening on "); ok {
			addr, _, _ = strings.Cut(rest, " ")
		}
		time.Sleep(10 * time.Millisecond)
	}

	var agOut bytes.Buffer
	if err := run([]string{"-mode", "agent", "-gateway", addr}, &agOut); err != nil {
		t.Fatalf("agent: %v\n%s", err, agOut.String())
	}
	if strings.Contains(agOut.String(), "UNEXPECTED") {
		t.Fatal(agOut.String())
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gateway: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not stop the gateway")
	}

	log := gwOut.String()
	var decisions []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, " decision ") {
			decisions = append(decisions, l)
		}
	}
	for _, want := range []string{
		`route="POST /v1/payments" mode=operation outcome=challenged status=401 reason=attestation_required`,
		`route="PUT /v1/config" mode=connection outcome=cache_hit format=software-eat`,
		`route="PUT /v1/config" mode=connection outcome=challenged status=401 reason=posture_changed`,
		`route="POST /v1/payments" mode=operation outcome=denied status=403 reason=posture_denied verify=`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("gateway log lacks %q:\n%s", want, log)
		}
	}
	// The agent's story: 9 protected requests, 4 of them challenged first.
	if len(decisions) != 13 {
		t.Errorf("%d decision lines, want 13 (one per protected request and per challenge):\n%s", len(decisions), log)
	}
	for _, l := range decisions {
		// One line each, and no Evidence: nothing as long as a header value.
		for _, f := range strings.Fields(l) {
			if len(f) > 80 {
				t.Errorf("decision line carries a long value (Evidence?): %q", l)
			}
		}
	}
	if !strings.Contains(log, "terminated: stopping") {
		t.Errorf("gateway did not say it stopped on SIGTERM:\n%s", log)
	}
}

// -mode agent against nothing: one clear error, no story.
func TestAgentModeGatewayUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var out bytes.Buffer
	err = run([]string{"-mode", "agent", "-gateway", "https://" + addr}, &out)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "-mode gateway") {
		t.Fatalf("err = %v, want one error saying the gateway is unreachable and how to start one", err)
	}
	if strings.Contains(out.String(), "[1]") {
		t.Fatalf("the story ran against an unreachable gateway:\n%s", out.String())
	}
}

// -h shows usage examples and exits 0.
func TestHelpShowsExamples(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-h"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Examples:", "go run ./examples/agent -mode gateway", "-mode agent -gateway https://", "-attester tpm", "-replicas 2", "-listen"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h lacks %q:\n%s", want, out.String())
		}
	}
}
