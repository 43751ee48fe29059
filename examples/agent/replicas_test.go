package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestReplicasDemo runs `go run ./examples/agent -replicas 2` (embedded
// miniredis) and, with REATTEST_REDIS, `-replicas 3 -redis $REATTEST_REDIS`,
// and checks the transcript's key lines.
func TestReplicasDemo(t *testing.T) {
	runs := [][]string{{"-replicas", "2"}}
	if addr := os.Getenv("REATTEST_REDIS"); addr != "" {
		runs = append(runs, []string{"-replicas", "3", "-redis", addr})
	} else {
		t.Log("REATTEST_REDIS not set: the demo runs on its embedded miniredis only")
	}
	for _, args := range runs {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out bytes.Buffer
			if err := run(args, &out); err != nil {
				t.Fatalf("demo failed: %v\n%s", err, out.String())
			}
			for _, want := range []string{
				"PUT /v1/config on replica-B -> 200",
				"POST /v1/payments on replica-A -> 403",
				"tool:shell forbidden",
				"replica A published the denial; replica B dropped the agent's verdicts",
				"B challenged (verdict_invalidated)",
				"audit stream record: replica=replica-B",
				"on replica-B -> 403 (",
				"attester_revoked",
				"all steps went as expected",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("transcript lacks %q\n%s", want, out.String())
				}
			}
			if strings.Contains(out.String(), "UNEXPECTED") {
				t.Error(out.String())
			}
			if len(args) == 2 && !strings.Contains(out.String(), "EMBEDDED MINIREDIS") {
				t.Error("the embedded miniredis is not labelled")
			}
		})
	}
	if err := run([]string{"-replicas", "1"}, &bytes.Buffer{}); err == nil {
		t.Error("-replicas 1 accepted")
	}
}
