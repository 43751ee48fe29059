package posture_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/reattest/reattest/posture"
)

func TestVerifyAcceptsTrackerLog(t *testing.T) {
	tr := agentTracker(t)
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	st, err := posture.Verify(snap.Log, snap.Head)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !reflect.DeepEqual(st, snap.State) {
		t.Errorf("replayed state differs from the tracker's:\n got %+v\nwant %+v", st, snap.State)
	}
	reg, _ := tr.Register().Read(context.Background())
	if !bytes.Equal(reg, snap.Head) {
		t.Errorf("register %x, snapshot head %x", reg, snap.Head)
	}
	// The hand-written extend rule and encoder agree with the package.
	evs := rawEvents(t, snap)
	if got := headOf(evs...); !bytes.Equal(got, snap.Head) {
		t.Errorf("head by the extend rule %x, tracker head %x", got, snap.Head)
	}
	if got := encodeLog(t, posture.AlgSHA256, evs...); !bytes.Equal(got, snap.Log) {
		t.Errorf("hand-encoded log differs from Log.Encode:\n%x\n%x", got, snap.Log)
	}
}

func TestVerifyEmptyLog(t *testing.T) {
	tr, err := posture.NewTracker()
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := tr.Snapshot()
	if !bytes.Equal(snap.Log, []byte{0xa2, 0x01, 0x01, 0x02, 0x80}) {
		t.Errorf("empty log encodes as %x", snap.Log)
	}
	st, err := posture.Verify(snap.Log, make([]byte, 32))
	if err != nil || st.Model != nil || len(st.Tools) != 0 {
		t.Fatalf("empty log: %+v, %v", st, err)
	}
}

// A log that does not reproduce the register value is rejected, whatever
// was done to it. Every manipulated log here is well formed and replays
// without error: only the register comparison catches it.
func TestVerifyRejectsManipulatedLog(t *testing.T) {
	snap, err := agentTracker(t).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	evs := rawEvents(t, snap) // model, search, shell, template, grant, flag
	other := mustEncode(t, evTool(posture.OpEnableTool, "shell", digest("evil shell")))
	cases := []struct {
		name   string
		events [][]byte
	}{
		{"tampered", [][]byte{evs[0], evs[1], other, evs[3], evs[4], evs[5]}},
		{"reordered", [][]byte{evs[0], evs[2], evs[1], evs[3], evs[4], evs[5]}},
		{"dropped-first", evs[1:]},
		{"dropped-middle", slices.Concat(evs[:2], evs[3:])},
		{"dropped-last", evs[:5]},
		{"added-last", append(slices.Clone(evs), mustEncode(t, evFlag("debug", "on")))},
		{"added-first", append([][]byte{mustEncode(t, evFlag("debug", "on"))}, evs...)},
		{"duplicated", append(slices.Clone(evs), evs[5])},
		{"emptied", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log := encodeLog(t, posture.AlgSHA256, tc.events...)
			if _, _, err := mustDecode(t, log).Replay(); err != nil {
				t.Fatalf("the manipulated log should replay cleanly: %v", err)
			}
			_, err := posture.Verify(log, snap.Head)
			if !errors.Is(err, posture.ErrHeadMismatch) {
				t.Fatalf("want ErrHeadMismatch, got %v", err)
			}
			// And the log is accepted with the head it does reproduce: the
			// check is the comparison, not an accident of decoding.
			if _, err := posture.Verify(log, headOf(tc.events...)); err != nil {
				t.Fatalf("log rejected with its own head: %v", err)
			}
		})
	}
}

// A bit flip inside an event's bytes never passes: it breaks either the
// canonical encoding, the event's shape or the head.
func TestVerifyRejectsBitFlips(t *testing.T) {
	snap, err := agentTracker(t).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for i := range snap.Log {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(snap.Log)
			bad[i] ^= bit
			if _, err := posture.Verify(bad, snap.Head); err == nil {
				t.Fatalf("flip of bit %#x at byte %d accepted", bit, i)
			}
		}
	}
}

func TestVerifyRejectsWrongHead(t *testing.T) {
	tr := agentTracker(t)
	old, _ := tr.Snapshot()
	if err := tr.SetFlag(context.Background(), "fips_mode", "off"); err != nil {
		t.Fatal(err)
	}
	snap, _ := tr.Snapshot()
	flipped := bytes.Clone(snap.Head)
	flipped[31] ^= 1
	for name, head := range map[string][]byte{
		"flipped":    flipped,
		"stale":      old.Head,
		"zero":       make([]byte, 32),
		"truncated":  snap.Head[:31],
		"extended":   append(bytes.Clone(snap.Head), 0),
		"sha-384":    make([]byte, 48),
		"nil":        nil,
		"older-log":  snap.Head, // checked against old.Log below
		"future-log": old.Head,  // checked against snap.Log below
	} {
		t.Run(name, func(t *testing.T) {
			log := snap.Log
			if name == "older-log" {
				log = old.Log
			}
			if _, err := posture.Verify(log, head); !errors.Is(err, posture.ErrHeadMismatch) {
				t.Fatalf("want ErrHeadMismatch, got %v", err)
			}
		})
	}
}

// Replay refuses events that make no sense in the state so far, even when
// the head matches (an attester that measured nonsense).
func TestReplayRejectsNonsense(t *testing.T) {
	cases := []struct {
		name   string
		events []posture.Event
		want   string
	}{
		{"disable-unknown-tool", []posture.Event{evTool(posture.OpDisableTool, "shell", digest("shell"))}, "not enabled"},
		{"disable-twice", []posture.Event{
			evTool(posture.OpEnableTool, "shell", digest("shell")),
			evTool(posture.OpDisableTool, "shell", digest("shell")),
			evTool(posture.OpDisableTool, "shell", digest("shell")),
		}, "not enabled"},
		{"revoke-unknown", []posture.Event{evRevoke("payments")}, "not granted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var raws [][]byte
			for _, e := range tc.events {
				raws = append(raws, mustEncode(t, e))
			}
			_, err := posture.Verify(encodeLog(t, posture.AlgSHA256, raws...), headOf(raws...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestDecodeLogRejects(t *testing.T) {
	ev := mustEncode(t, evFlag("fips_mode", "on"))
	cases := map[string][]byte{
		"empty":              {},
		"not-a-map":          {0x80},
		"missing-events":     {0xa1, 0x01, 0x01},
		"missing-alg":        {0xa1, 0x02, 0x80},
		"alg-not-shortest":   {0xa2, 0x01, 0x18, 0x01, 0x02, 0x80},
		"keys-unsorted":      {0xa2, 0x02, 0x80, 0x01, 0x01},
		"unknown-key":        {0xa3, 0x01, 0x01, 0x02, 0x80, 0x03, 0x00},
		"duplicate-key":      {0xa3, 0x01, 0x01, 0x01, 0x01, 0x02, 0x80},
		"indefinite-array":   {0xa2, 0x01, 0x01, 0x02, 0x9f, 0xff},
		"unknown-alg":        {0xa2, 0x01, 0x02, 0x02, 0x80},
		"alg-zero":           {0xa2, 0x01, 0x00, 0x02, 0x80},
		"events-not-array":   {0xa2, 0x01, 0x01, 0x02, 0xa0},
		"event-not-array":    encodeLog(t, posture.AlgSHA256, []byte{0x01}),
		"trailing-byte":      append(encodeLog(t, posture.AlgSHA256, ev), 0x00),
		"event-noncanon":     encodeLog(t, posture.AlgSHA256, append([]byte{0x82, 0x18, 0x07}, ev[2:]...)),
		"array-not-shortest": append([]byte{0xa2, 0x01, 0x01, 0x02, 0x98, 0x01}, ev...),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if l, err := posture.DecodeLog(b); err == nil {
				enc, _ := l.Encode()
				t.Fatalf("accepted %x (re-encodes as %x)", b, enc)
			}
		})
	}
	// The well-formed version of the same log is accepted, so the cases
	// above fail for their own reason.
	if _, err := posture.DecodeLog(encodeLog(t, posture.AlgSHA256, ev)); err != nil {
		t.Fatalf("well-formed log rejected: %v", err)
	}
}

func TestDecodeLogLimits(t *testing.T) {
	ev := mustEncode(t, evFlag("f", "v"))
	many := make([][]byte, posture.MaxEvents+1)
	for i := range many {
		many[i] = ev
	}
	if _, err := posture.DecodeLog(encodeLog(t, posture.AlgSHA256, many...)); err == nil {
		t.Error("accepted a log of MaxEvents+1 events")
	}
	if _, err := posture.DecodeLog(encodeLog(t, posture.AlgSHA256, many[:posture.MaxEvents]...)); err != nil {
		t.Errorf("rejected a log of MaxEvents events: %v", err)
	}
	big := make([]byte, posture.MaxLogLen+1)
	if _, err := posture.DecodeLog(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized input: %v", err)
	}
}

// The canonical encodings of the events, one per op. docs/posture.md shows
// the same bytes; keep them in step.
func TestEventEncodingVectors(t *testing.T) {
	ctx := context.Background()
	tr, err := posture.NewTracker()
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		change func() error
		event  string
		head   string
	}{
		{func() error {
			return tr.SetModel(ctx, posture.Model{Name: "gpt-x", Version: "2025-06", Digest: digest("weights")})
		}, "8201a20182656770742d788167323032352d303602820158209a129038d9a00aed0cf6a7ea059ca50a813449061ab87848cf1a13eafdf33b2c",
			"eeeec833a28a515e94baba6dc37a53ded8a3ad6b89f679e20275403b369b6e4b"},
		{func() error { return tr.EnableTool(ctx, posture.Tool{Name: "search", Digest: digest("search")}) },
			"8202a201816673656172636802820158202419329067823cab5b4e5ac5dd18a6abf1f57f45e753f5fc934292f3085a3717",
			"9f3fa4b83a667ef0551f99c80d1d19e9d1cdc05726d322bf845d7f2d2fc61cd1"},
		{func() error {
			return tr.EnableTool(ctx, posture.Tool{Name: "shell", Version: "1.2", Digest: digest("shell")})
		}, "8202a20182657368656c6c8163312e320282015820ce635c4eabff5e4f56dba8fb1e39ca235530aa2b6b18533eef1af3862016c577",
			"715aa43a3c8dc386ae52c1c528353439c3ff82583acf3b121fef52e581bd0db7"},
		{func() error { return tr.DisableTool(ctx, "shell") },
			"8203a20182657368656c6c8163312e320282015820ce635c4eabff5e4f56dba8fb1e39ca235530aa2b6b18533eef1af3862016c577",
			"0ce7c583e4b77a0be23158fadf62461fa6d9eed93b3a0cb1cfee60862d8315a1"},
		{func() error {
			return tr.SetTemplate(ctx, posture.Template{Name: "support", Digest: digest("template")})
		},
			"8204a2018167737570706f727402820158205cde0f1298f41f7d1c8b907a36992a7a513225a2615bd6e307bf1a9149b06b40",
			"1de6e29c6a88a72cb8994bebc317895fcc5fba6d762bbebf5ab3fa5a75522cc4"},
		{func() error { return tr.Grant(ctx, "payments", "write", "read") },
			"8205a20181687061796d656e7473054c826472656164657772697465",
			"0b6d484051a50935311f31212a779d64d0193837ff458a0537b88d11e0fd3d5d"},
		{func() error { return tr.Revoke(ctx, "payments") },
			"8206a20181687061796d656e74730540",
			"bb4d6feec276fef59e2b038e0e4440aa56eb189ad3ba1feea25a8c7871b52aab"},
		{func() error { return tr.SetFlag(ctx, "fips_mode", "on") },
			"8207a2018169666970735f6d6f646505426f6e",
			"3b7db9838e1d433962f1f43a8d30ecd3eb3262faaa4977bfb867a79c18e6c732"},
	}
	var raws [][]byte
	for i, s := range steps {
		if err := s.change(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		want, _ := hex.DecodeString(s.event)
		raws = append(raws, want)
		snap, _ := tr.Snapshot()
		got := rawEvents(t, snap)[i]
		if !bytes.Equal(got, want) {
			t.Errorf("step %d: event %x, want %x", i, got, want)
		}
		if h := hex.EncodeToString(snap.Head); h != s.head {
			t.Errorf("step %d: head %s, want %s", i, h, s.head)
		}
		if h := hex.EncodeToString(headOf(raws...)); h != s.head {
			t.Errorf("step %d: extend rule gives %s, want %s", i, h, s.head)
		}
	}
}

func TestDecodeEventRejects(t *testing.T) {
	good := mustEncode(t, evModel("gpt-x", digest("w")))
	if _, err := posture.DecodeEvent(good); err != nil {
		t.Fatalf("good event rejected: %v", err)
	}
	d := digest("x")
	short := posture.Digest{Alg: posture.AlgSHA256, Value: d.Value[:31]}
	d384 := posture.Digest{Alg: posture.AlgSHA384, Value: make([]byte, 32)}
	unknownAlg := posture.Digest{Alg: 2, Value: d.Value}
	raw := func(b []byte) *[]byte { return &b }
	cid := func(name, version string) posture.ComponentID {
		return posture.ComponentID{Name: name, Version: version}
	}
	cases := map[string]posture.Event{
		"unknown-op":            {Op: 9, Component: posture.Component{ID: cid("x", ""), Digest: &d}},
		"op-zero":               {Op: 0, Component: posture.Component{ID: cid("x", ""), Digest: &d}},
		"model-no-digest":       {Op: posture.OpSetModel, Component: posture.Component{ID: cid("x", "")}},
		"model-raw":             {Op: posture.OpSetModel, Component: posture.Component{ID: cid("x", ""), Raw: raw([]byte("a"))}},
		"model-both":            {Op: posture.OpSetModel, Component: posture.Component{ID: cid("x", ""), Digest: &d, Raw: raw(nil)}},
		"digest-short":          {Op: posture.OpEnableTool, Component: posture.Component{ID: cid("x", ""), Digest: &short}},
		"digest-alg-size":       {Op: posture.OpEnableTool, Component: posture.Component{ID: cid("x", ""), Digest: &d384}},
		"digest-unknown-alg":    {Op: posture.OpEnableTool, Component: posture.Component{ID: cid("x", ""), Digest: &unknownAlg}},
		"template-version":      {Op: posture.OpSetTemplate, Component: posture.Component{ID: cid("x", "1"), Digest: &d}},
		"flag-digest":           {Op: posture.OpSetFlag, Component: posture.Component{ID: cid("x", ""), Digest: &d}},
		"flag-version":          {Op: posture.OpSetFlag, Component: posture.Component{ID: cid("x", "1"), Raw: raw([]byte("on"))}},
		"flag-nonprintable":     {Op: posture.OpSetFlag, Component: posture.Component{ID: cid("x", ""), Raw: raw([]byte("o\nn"))}},
		"flag-too-long":         {Op: posture.OpSetFlag, Component: posture.Component{ID: cid("x", ""), Raw: raw(bytes.Repeat([]byte("a"), posture.MaxValueLen+1))}},
		"revoke-nonempty":       {Op: posture.OpRevoke, Component: posture.Component{ID: cid("x", ""), Raw: raw([]byte{0x80})}},
		"grant-unsorted":        {Op: posture.OpGrant, Component: posture.Component{ID: cid("x", ""), Raw: raw([]byte{0x82, 0x61, 'b', 0x61, 'a'})}},
		"grant-duplicate":       {Op: posture.OpGrant, Component: posture.Component{ID: cid("x", ""), Raw: raw([]byte{0x82, 0x61, 'a', 0x61, 'a'})}},
		"grant-not-array":       {Op: posture.OpGrant, Component: posture.Component{ID: cid("x", ""), Raw: raw([]byte{0x61, 'a'})}},
		"grant-empty-scope":     {Op: posture.OpGrant, Component: posture.Component{ID: cid("x", ""), Raw: raw([]byte{0x81, 0x60})}},
		"name-empty":            {Op: posture.OpSetModel, Component: posture.Component{ID: cid("", ""), Digest: &d}},
		"name-nonprintable":     {Op: posture.OpSetModel, Component: posture.Component{ID: cid("a\x00b", ""), Digest: &d}},
		"name-too-long":         {Op: posture.OpSetModel, Component: posture.Component{ID: cid(strings.Repeat("n", posture.MaxNameLen+1), ""), Digest: &d}},
		"version-too-long":      {Op: posture.OpSetModel, Component: posture.Component{ID: cid("x", strings.Repeat("v", posture.MaxVersionLen+1)), Digest: &d}},
		"version-nonprintable":  {Op: posture.OpSetModel, Component: posture.Component{ID: cid("x", "1\t2"), Digest: &d}},
		"permission-no-raw":     {Op: posture.OpGrant, Component: posture.Component{ID: cid("x", "")}},
		"disable-with-raw-only": {Op: posture.OpDisableTool, Component: posture.Component{ID: cid("x", ""), Raw: raw(nil)}},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := e.Encode(); err == nil {
				t.Fatal("Encode accepted a malformed event")
			}
		})
	}
	// Byte-level forms Encode cannot produce.
	byteCases := map[string][]byte{
		"trailing":         append(bytes.Clone(good), 0),
		"op-not-shortest":  append([]byte{0x82, 0x18, 0x01}, good[2:]...),
		"one-element":      {0x81, 0x01},
		"three-elements":   append(append([]byte{0x83}, good[1:]...), 0x00),
		"op-negative":      append([]byte{0x82, 0x20}, good[2:]...),
		"op-too-big":       append([]byte{0x82, 0x19, 0x01, 0x01}, good[2:]...),
		"empty-version":    hexBytes(t, "8201a20182617881600282015820"+hex.EncodeToString(digest("w").Value)),
		"version-two":      hexBytes(t, "8201a201826178826131613202820158"+"20"+hex.EncodeToString(digest("w").Value)),
		"name-bytes":       hexBytes(t, "8201a2018141780282015820"+hex.EncodeToString(digest("w").Value)),
		"component-key-3":  hexBytes(t, "8201a30181617802820158"+"20"+hex.EncodeToString(digest("w").Value)+"0340"),
		"digest-tagged":    hexBytes(t, "8201a201816178028201d8405820"+hex.EncodeToString(digest("w").Value)),
		"raw-null-revoke":  hexBytes(t, "8206a20181617805f6"),
		"indefinite-array": hexBytes(t, "9f06a20181617805 40ff"),
	}
	for name, b := range byteCases {
		t.Run(name, func(t *testing.T) {
			if _, err := posture.DecodeEvent(b); err == nil {
				t.Fatalf("DecodeEvent accepted %x", b)
			}
		})
	}
}

func hexBytes(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustDecode(t testing.TB, b []byte) *posture.Log {
	t.Helper()
	l, err := posture.DecodeLog(b)
	if err != nil {
		t.Fatalf("DecodeLog: %v", err)
	}
	return l
}

func TestSHA384Register(t *testing.T) {
	reg, err := posture.NewSoftwareRegister(crypto.SHA384)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := posture.NewTracker(posture.WithRegister(reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.SetFlag(context.Background(), "fips_mode", "on"); err != nil {
		t.Fatal(err)
	}
	snap, _ := tr.Snapshot()
	if snap.Alg != crypto.SHA384 || len(snap.Head) != 48 {
		t.Fatalf("alg %v head %d bytes", snap.Alg, len(snap.Head))
	}
	if snap.Log[2] != posture.AlgSHA384 {
		t.Errorf("log alg byte %#x, want %d", snap.Log[2], posture.AlgSHA384)
	}
	l := mustDecode(t, snap.Log)
	ev := mustEncode(t, l.Events()[0])
	want := posture.Extend(crypto.SHA384, make([]byte, 48), posture.Measure(crypto.SHA384, ev))
	if !bytes.Equal(snap.Head, want) {
		t.Errorf("head %x, want %x", snap.Head, want)
	}
	if _, err := posture.Verify(snap.Log, snap.Head); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// The same events under the SHA-256 rule give another head.
	if _, err := posture.Verify(snap.Log, headOf(ev)); !errors.Is(err, posture.ErrHeadMismatch) {
		t.Fatalf("SHA-256 head accepted for a SHA-384 log: %v", err)
	}
}

func TestLogEventsIsACopy(t *testing.T) {
	snap, _ := agentTracker(t).Snapshot()
	l := mustDecode(t, snap.Log)
	_, before, _ := l.Replay()
	evs := l.Events()
	evs[0].Component.Digest.Value[0] ^= 0xff
	evs[0].Component.ID.Name = "changed"
	head, after, err := l.Replay()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) || !bytes.Equal(head, snap.Head) {
		t.Fatal("changing Events() changed the log")
	}
	// Nor does changing a replayed State.
	after.Model.Digest.Value[0] ^= 0xff
	_, again, _ := l.Replay()
	if !reflect.DeepEqual(before, again) {
		t.Fatal("changing a replayed State changed the log")
	}
}

func TestParseDigest(t *testing.T) {
	d := digest("x")
	s := d.String()
	if !strings.HasPrefix(s, "sha-256:") || len(s) != len("sha-256:")+64 {
		t.Fatalf("String = %q", s)
	}
	got, err := posture.ParseDigest(strings.ToUpper(s[:0]) + "sha-256:" + strings.ToUpper(s[8:]))
	if err != nil || !got.Equal(d) {
		t.Fatalf("upper-case hex: %v %v", got, err)
	}
	for _, ok := range []string{"sha-384:" + strings.Repeat("ab", 48), "sha-512:" + strings.Repeat("ab", 64)} {
		if _, err := posture.ParseDigest(ok); err != nil {
			t.Errorf("%s: %v", ok[:7], err)
		}
	}
	for in, want := range map[string]string{
		"":                                         "want <alg>:<hex>",
		"abcd":                                     "want <alg>:<hex>",
		"md5:" + strings.Repeat("ab", 16):          `unknown algorithm "md5"`,
		"SHA-256:" + strings.Repeat("ab", 32):      "unknown algorithm",
		"sha-256:" + strings.Repeat("ab", 31):      "needs 64 hex digits",
		"sha-384:" + strings.Repeat("ab", 32):      "needs 96 hex digits",
		"sha-256:" + strings.Repeat("zz", 32):      "needs 64 hex digits",
		"sha-256: " + strings.Repeat("ab", 32):     "needs 64 hex digits",
		"sha-256:" + strings.Repeat("ab", 32) + "": "",
	} {
		_, err := posture.ParseDigest(in)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want error containing %q, got %v", in, want, err)
		}
	}
}
