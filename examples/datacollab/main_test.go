package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemo runs the clean room and its parties over TLS on loopback, as
// `go run ./examples/datacollab` does, and checks the transcript's key
// lines.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(nil, &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"hospital-a: clean room attested (clean-room-analysis 1.4); 3 records uploaded",
		"hospital-b: clean room attested; 3 records uploaded",
		"hospital-c: wants clean-room-analysis 2.0, the clean room runs 1.4: nothing sent: POLICY_DENIED (posture_denied), closed by us",
		"hospital-d: cannot attest: upload refused by the clean room: ATTESTATION_REQUIRED (attestation_refused), closed by the peer",
		"analyst: clean room attested; aggregate: providers=2 records=6 mean=42.0",
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
