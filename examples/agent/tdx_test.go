package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemoTDX runs the story with TDX Evidence (`go run ./examples/agent
// -attester tdx-test`): quotes of a simulated TD under a test PKI, posture
// in its RTMR3, verified by a gateway that trusts the test root. The same
// steps go as expected, and the transcript says it is not hardware.
func TestDemoTDX(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-attester", "tdx-test"}, &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"agent evidence: Intel TDX quotes from a simulated TD under a test PKI (NOT hardware)",
		"GET /v1/search -> 200",
		"<- 401 challenge: attestation_required (operation mode)",
		"-> attested: answered the challenge with a TDX quote (simulated TD, test PKI)",
		"the gateway verified tdx-quote-test-root evidence (hardware-backed: false)",
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
	if strings.Contains(out.String(), "UNEXPECTED") || strings.Contains(out.String(), "software EAT bound") {
		t.Error(out.String())
	}
}

// TestAttesterFlag: tdx-test needs the in-process demo (its verifier
// trusts a test PKI made at run time); an unknown attester is refused.
func TestAttesterFlag(t *testing.T) {
	for _, args := range [][]string{
		{"-attester", "tdx-test", "-mode", "gateway"},
		{"-attester", "tdx-test", "-mode", "agent"},
		{"-attester", "sgx"},
	} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
