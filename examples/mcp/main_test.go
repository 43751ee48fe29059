package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemo runs the whole story end to end, as `go run ./examples/mcp`
// does, and checks the transcript's key lines.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(nil, &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"routes: mcp tools/call payments.* (operation)",
		`tools/call search -> "2 invoices`,
		"<- 401 challenge: attestation_required (operation mode)",
		`tools/call payments.transfer -> "paid 25 EUR to acme-supplies"`,
		"tools/call payments.transfer -> JSON-RPC error -32051",
		"retried: HTTP 403 posture_denied",
		"violations: tool:mcp:workstation not allowed, tool:mcp:workstation/shell.exec not allowed",
		`tools/call payments.transfer -> "paid 900 EUR to acme-supplies"`,
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
