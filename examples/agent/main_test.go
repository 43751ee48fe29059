package main

import (
	"bytes"
	"strings"
	"testing"
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
