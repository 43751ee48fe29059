package posture_test

import (
	"bytes"
	"context"
	"crypto"
	"reflect"
	"slices"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/posture"
)

// The posture a Tracker keeps reaches the relying party through real
// Evidence on a real TLS 1.3 connection, and the relying party rebuilds it
// by replaying the log (Result.Posture).
func TestEvidenceCarriesPosture(t *testing.T) {
	e := newEnv(t)
	tr := agentTracker(t)
	res := e.mustAttest(tr)
	if !bytes.Equal(res.PostureHead(), tr.Head()) {
		t.Fatalf("result head %x, tracker head %x", res.PostureHead(), tr.Head())
	}
	st := res.Posture()
	if st == nil {
		t.Fatal("no posture in the Result")
	}
	if !reflect.DeepEqual(st, tr.State()) {
		t.Fatalf("state from the result %+v, tracker state %+v", st, tr.State())
	}
	if tool, ok := st.Tool("shell"); !ok || tool.Version != "1.2" {
		t.Fatalf("shell: %+v %v", tool, ok)
	}
}

// A lying agent runtime signs Evidence whose log is not the one that
// produced its register value. Verification fails with posture_invalid.
func TestEvidenceManipulatedLogRejected(t *testing.T) {
	e := newEnv(t)
	tr := agentTracker(t)
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	evs := rawEvents(t, snap) // model, search, shell, template, grant, flag
	noShell := mustEncode(t, evTool(posture.OpEnableTool, "calculator", digest("calc")))
	cases := []struct {
		name   string
		events [][]byte
	}{
		// The agent hides its shell tool behind a harmless one.
		{"tampered", [][]byte{evs[0], evs[1], noShell, evs[3], evs[4], evs[5]}},
		{"reordered", [][]byte{evs[1], evs[0], evs[2], evs[3], evs[4], evs[5]}},
		// The agent leaves out that it enabled the shell.
		{"dropped", slices.Concat(evs[:2], evs[3:])},
		// The agent claims it disabled the shell.
		{"added", append(slices.Clone(evs), mustEncode(t, evTool(posture.OpDisableTool, "shell", digest("shell"))))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forged := *snap
			forged.Log = encodeLog(t, posture.AlgSHA256, tc.events...)
			_, err := e.attest(fixedSource{&forged})
			postauthtest.WantErrorIs(t, err, posture.ErrHeadMismatch, postauth.CodeInvalid, postauth.ReasonPostureInvalid)
		})
	}
	// The honest snapshot through the same path passes.
	if _, err := e.attest(fixedSource{snap}); err != nil {
		t.Fatalf("honest snapshot rejected: %v", err)
	}
}

// The register value in the Evidence must be the one the log reproduces.
func TestEvidenceRegisterMismatchRejected(t *testing.T) {
	e := newEnv(t)
	tr := agentTracker(t)
	stale, _ := tr.Snapshot()
	if err := tr.EnableTool(context.Background(), posture.Tool{Name: "browser", Digest: digest("browser")}); err != nil {
		t.Fatal(err)
	}
	snap, _ := tr.Snapshot()

	flipped := *snap
	flipped.Head = bytes.Clone(snap.Head)
	flipped.Head[0] ^= 1
	oldHead := *snap // current log, the register value from before the change
	oldHead.Head = stale.Head
	oldLog := *snap // the log from before the change, the current register
	oldLog.Log = stale.Log
	sha384 := *snap // a SHA-384 register value for a SHA-256 log
	sha384.Alg, sha384.Head = crypto.SHA384, make([]byte, 48)
	cases := map[string]*posture.Snapshot{"flipped": &flipped, "stale-head": &oldHead, "stale-log": &oldLog, "alg-mismatch": &sha384}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := e.attest(fixedSource{s})
			postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonPostureInvalid)
		})
	}
	if res := e.mustAttest(fixedSource{snap}); !bytes.Equal(res.PostureHead(), snap.Head) {
		t.Fatal("honest snapshot: wrong head")
	}
}

// Evidence without posture gives a Result without posture.
func TestResultWithoutPosture(t *testing.T) {
	e := newEnv(t)
	res := e.mustAttest(nil)
	if res.Posture() != nil || res.PostureHead() != nil || res.PostureLog() != nil {
		t.Fatal("posture reported without posture")
	}
}
