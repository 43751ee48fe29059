package posture_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/reattest/reattest/posture"
)

// The decoders take peer input: they must never panic, must respect their
// limits, and what they accept must re-encode to the same bytes (one byte
// form per log and per event, so one digest).

// seedLogs returns valid encodings: the typical agent, an empty log, a
// SHA-384 log, and a log with every op.
func seedLogs(f *testing.F) [][]byte {
	f.Helper()
	ctx := context.Background()
	var out [][]byte
	add := func(tr *posture.Tracker) {
		snap, err := tr.Snapshot()
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, snap.Log)
	}
	add(agentTracker(f))
	empty, _ := posture.NewTracker()
	add(empty)
	reg, _ := posture.NewSoftwareRegister(crypto.SHA384)
	tr384, _ := posture.NewTracker(posture.WithRegister(reg))
	_ = tr384.SetFlag(ctx, "fips_mode", "on")
	add(tr384)
	all := agentTracker(f)
	_ = all.DisableTool(ctx, "shell")
	_ = all.Revoke(ctx, "payments")
	_ = all.Grant(ctx, "tickets")
	add(all)
	return out
}

func FuzzDecodeLog(f *testing.F) {
	for _, l := range seedLogs(f) {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := posture.DecodeLog(b)
		if err != nil {
			return
		}
		if len(b) > posture.MaxLogLen || l.Len() > posture.MaxEvents {
			t.Fatalf("accepted a log over the limits: %d bytes, %d events", len(b), l.Len())
		}
		out, err := l.Encode()
		if err != nil {
			t.Fatalf("accepted log does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip changed the log:\n in %x\nout %x", b, out)
		}
		for i, e := range l.Events() {
			if _, err := e.Encode(); err != nil {
				t.Fatalf("event %d of an accepted log does not encode: %v", i, err)
			}
		}
		head, st, err := l.Replay()
		if err != nil {
			return // well formed, but nonsense (disable before enable)
		}
		if len(head) != l.Alg().Size() {
			t.Fatalf("head of %d bytes for %v", len(head), l.Alg())
		}
		got, err := posture.Verify(b, head)
		if err != nil {
			t.Fatalf("log does not verify against its own head: %v", err)
		}
		if !reflect.DeepEqual(got, st) {
			t.Fatal("Verify and Replay disagree on the state")
		}
		bad := slices.Clone(head)
		bad[0] ^= 1
		if _, err := posture.Verify(b, bad); err == nil {
			t.Fatal("log verified against a different head")
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	for _, l := range seedLogs(f) {
		dl, err := posture.DecodeLog(l)
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range dl.Events() {
			b, err := e.Encode()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := posture.DecodeEvent(b)
		if err != nil {
			return
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("accepted event does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip changed the event:\n in %x\nout %x", b, out)
		}
		c := e.Component
		if c.ID.Name == "" || len(c.ID.Name) > posture.MaxNameLen || len(c.ID.Version) > posture.MaxVersionLen {
			t.Fatalf("accepted an out-of-range id %q %q", c.ID.Name, c.ID.Version)
		}
		if (c.Digest == nil) == (c.Raw == nil) {
			t.Fatal("accepted an event with both or neither measurement")
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	for _, name := range []string{"policy.yaml", "policy.json"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, name == "policy.yaml")
	}
	f.Add([]byte(`{}`), false)
	f.Add([]byte("tools: {deny: [shell]}\n"), true)
	f.Add([]byte(`{"permissions": {"p": ["*"]}, "require_posture": false}`), false)
	f.Add([]byte("flags: {fips_mode: on}\nrequire_posture: false\n"), true)
	f.Add([]byte("a: &x [*x]\n"), true)

	state := func() *posture.State {
		tr := agentTracker(f)
		return tr.State()
	}()
	f.Fuzz(func(t *testing.T, b []byte, isYAML bool) {
		format := "json"
		if isYAML {
			format = "yaml"
		}
		p, err := posture.ParsePolicy(b, format)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("ParsePolicy accepted an invalid policy: %v", err)
		}
		// The policy survives a JSON round trip with the same meaning.
		j1, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("accepted policy does not marshal: %v", err)
		}
		p2, err := posture.ParsePolicy(j1, "json")
		if err != nil {
			t.Fatalf("marshalled policy does not parse: %v\n%s", err, j1)
		}
		j2, _ := json.Marshal(p2)
		if !bytes.Equal(j1, j2) {
			t.Fatalf("JSON round trip changed the policy:\n%s\n%s", j1, j2)
		}
		v1, v2 := p.Check(state), p2.Check(state)
		if !reflect.DeepEqual(v1, v2) {
			t.Fatalf("round trip changed the verdict: %v vs %v", v1, v2)
		}
		if !reflect.DeepEqual(p.Check(nil), p2.Check(nil)) {
			t.Fatal("round trip changed the verdict on no posture")
		}
	})
}

// FuzzParseDigest: the text form of a digest (posture policies). What
// parses has the hash's length and prints back as the input, lower-cased
// (the name is exact; hex digits may be of either case).
func FuzzParseDigest(f *testing.F) {
	f.Add(posture.DigestOf([]byte("x")).String())
	f.Add("sha-384:" + strings.Repeat("AB", 48))
	f.Add("sha-512:" + strings.Repeat("0", 128))
	f.Add("alg(9):00")
	f.Add("sha-256:")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := posture.ParseDigest(s)
		if err != nil {
			// The message quotes at most 80 bytes of the input, twice (%q
			// may write 4 characters a byte): bounded, however long s is.
			if len(err.Error()) > 1000 {
				t.Fatalf("an error of %d bytes echoes the input", len(err.Error()))
			}
			return
		}
		if h := posture.AlgHash(d.Alg); h == 0 || len(d.Value) != h.Size() {
			t.Fatalf("digest %v: algorithm %d with %d bytes", d, d.Alg, len(d.Value))
		}
		if d.String() != strings.ToLower(s) {
			t.Fatalf("%q parses as %v", s, d)
		}
		back, err := posture.ParseDigest(d.String())
		if err != nil || !back.Equal(d) {
			t.Fatalf("%v does not parse back: %v", d, err)
		}
	})
}
