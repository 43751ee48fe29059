package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemo runs the whole story over QUIC on loopback, as `go run
// ./examples/migration` does, and checks the transcript's key lines.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(nil, &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"source: destination attested (software-eat evidence, subject CN=destination-migtd)",
		"destination: source attested (software-eat evidence, subject CN=source-migtd)",
		"source: migration key sent; the destination confirmed it",
		"periodic re-attestation every 200ms",
		"source: destination re-attested and denied: connection closed with POLICY_DENIED (posture_denied), closed by us",
		"destination: lost the connection after",
		"POLICY_DENIED (posture_denied), closed by the peer",
		"source: rogue destination (untrusted attestation key) refused: ATTESTATION_INVALID (untrusted_attester)",
		"rogue destination: no migration stream, no key",
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
