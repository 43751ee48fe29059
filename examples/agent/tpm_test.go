//go:build cgo

package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/reattest/reattest/postauth/tpm/tpmtest"
)

// tpmStory are the key lines of the TPM mode's transcript.
var tpmStory = []string{
	"[1] The TPM's endorsement key (EK) certificate",
	"chains to the manufacturer root",
	"AK certificate from \"reattest demo enrollment CA\"",
	"fixedTPM | fixedParent | sensitiveDataOrigin | sign",
	"<- 401 challenge: attestation_required (operation mode)",
	"-> attested: TPM2_Quote + TPM2_Certify",
	"POST /v1/payments -> 200 paid",
	"hardware-backed true",
	"POST /v1/payments -> 403 key_not_resident",
	"POST /v1/payments -> 401 key_hash_mismatch",
	"all steps went as expected",
}

func checkTPMStory(t *testing.T, args ...string) {
	t.Helper()
	var out bytes.Buffer
	if err := run(append([]string{"-attester", "tpm"}, args...), &out); err != nil {
		t.Fatalf("TPM demo failed: %v\n%s", err, out.String())
	}
	for _, want := range tpmStory {
		if !strings.Contains(out.String(), want) {
			t.Errorf("transcript lacks %q\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "UNEXPECTED") {
		t.Error(out.String())
	}
}

// TestDemoTPM runs `go run ./examples/agent -attester tpm` (the simulator,
// no setup) and checks the transcript.
func TestDemoTPM(t *testing.T) { checkTPMStory(t) }

// TestDemoTPMOnSWTPM runs the TPM mode against swtpm (REATTEST_SWTPM),
// whose EK certificate swtpm_setup wrote.
func TestDemoTPMOnSWTPM(t *testing.T) {
	addr := os.Getenv(tpmtest.EnvSWTPM)
	if addr == "" {
		t.Skip(tpmtest.SkipMessage)
	}
	checkTPMStory(t, "-tpm-addr", addr)
}
