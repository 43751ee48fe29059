package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemo runs both stories over HTTPS on loopback, as `go run
// ./examples/keyrelease` does, and checks the transcript's key lines.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(nil, &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"payments-1 (genuine): db-password -> 200 s3cr3t-db (released to CN=payments-1)",
		"payments-1: challenged: attestation_required, operation mode; attested: accepted (Evidence bound to this very request)",
		"payments-1: api-key -> 200, with a fresh attestation of its own",
		"payments-2 (patched code): db-password -> 403 posture_denied model:payments-service not allowed",
		"payments-3 (unknown attestation key): db-password -> 401 untrusted_attester",
		"key-release service: 2 secrets released",
		"operator -> genuine controller: controller attested first (accepted), then the command ran: 200 executed open valve 3",
		"operator -> rogue controller: attestation refused, command never sent: untrusted_attester",
		"all steps went as expected",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("transcript lacks %q\n%s", want, out.String())
		}
	}
}

func TestHelp(t *testing.T) {
	if err := run([]string{"-h"}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
}
