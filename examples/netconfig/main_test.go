package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemo runs both management sessions over TLS on loopback, as `go run
// ./examples/netconfig` does, and checks the transcript's key lines.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(nil, &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"client: router attested before any configuration (software-eat evidence, subject CN=vrouter-1)",
		`client: pushed "interface eth0 mtu 9000": ok`,
		"client: re-checked the router",
		`client: session closed, configuration refused: POLICY_DENIED (posture_denied), closed by us [flag:secure_boot want "on" got "off"]`,
		"client: the router announced the change; the verdict was suspended and the router re-attested at once",
		"client: no announcement; caught by the next periodic re-check (interval",
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
