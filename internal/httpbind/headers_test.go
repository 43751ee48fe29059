package httpbind

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/reattest/reattest/postauth"
)

func TestBytesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		b      []byte
		params []string
	}{
		{[]byte{}, nil},
		{[]byte("hello"), nil},
		{bytes.Repeat([]byte{0xff}, 300), []string{ParamOp}},
	} {
		s := EncodeBytes(tc.b, tc.params...)
		b, p, err := DecodeBytes(s, 1<<20)
		if err != nil || !bytes.Equal(b, tc.b) || !slices.Equal(p, tc.params) {
			t.Fatalf("%q: %x %v %v", s, b, p, err)
		}
	}
}

func TestDecodeBytes(t *testing.T) {
	for _, tc := range []struct {
		in     string
		ok     bool
		params []string
	}{
		{":aGVsbG8=:", true, nil},
		{":aGVsbG8:", true, nil}, // missing padding is accepted (RFC 9651 4.2.7)
		{" :aGVsbG8=: ", true, nil},
		{":aGVsbG8=:;op", true, []string{"op"}},
		{":aGVsbG8=:;op=?1;x=?0;y=5", true, []string{"op"}},
		{":aGVsbG8=:; op", true, []string{"op"}},
		{"aGVsbG8=", false, nil},
		{":aGVsbG8=", false, nil},
		{":a!b:", false, nil},
		{":aGVsbG8=:x", false, nil},
		{":aGVsbG8=:;OP", false, nil},
		{":aGVsbG8=:;", false, nil},
		{"", false, nil},
	} {
		_, p, err := DecodeBytes(tc.in, 100)
		if (err == nil) != tc.ok || !slices.Equal(p, tc.params) {
			t.Errorf("%q: params %v err %v, want ok=%v params %v", tc.in, p, err, tc.ok, tc.params)
		}
	}
	if _, _, err := DecodeBytes(":"+strings.Repeat("A", 200)+":", 100); err == nil {
		t.Error("oversized value accepted")
	}
}

func TestChallenge(t *testing.T) {
	c := Challenge{Error: postauth.ReasonPostureChanged, Mode: ModeConnection, MaxAge: 300}
	got, ok := ParseChallenge([]string{c.Format()})
	if !ok || got != c {
		t.Fatalf("round trip: %+v %v (%s)", got, ok, c.Format())
	}
	for _, tc := range []struct {
		in   []string
		want Challenge
		ok   bool
	}{
		{[]string{`Bearer realm="x", Attestation error="attestation_required", mode=operation`}, Challenge{Error: postauth.ReasonAttestationRequired, Mode: ModeOperation}, true},
		{[]string{`Basic abc==, Attestation error="invalid_attestation"`}, Challenge{Error: postauth.ReasonInvalidAttestation}, true},
		{[]string{`Bearer error="x"`, `attestation Error="a\"b", max-age=5`}, Challenge{Error: `a"b`, MaxAge: 5}, true},
		{[]string{`Attestation error="attestation_stale", Bearer realm="y"`}, Challenge{Error: postauth.ReasonAttestationStale}, true},
		{[]string{`Bearer realm="x"`}, Challenge{}, false},
		{[]string{`Attestation error="unterminated`}, Challenge{}, false},
		{[]string{strings.Repeat("a", MaxAuthenticateHeaders+1)}, Challenge{}, false},
	} {
		got, ok := ParseChallenge(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOperationDigest(t *testing.T) {
	a := OperationDigest("POST", "/pay", []byte("amount=1"))
	if len(a) != 16 {
		t.Fatal(len(a))
	}
	for _, other := range [][]byte{
		OperationDigest("POST", "/pay", []byte("amount=1000")),
		OperationDigest("PUT", "/pay", []byte("amount=1")),
		OperationDigest("POST", "/pay?x", []byte("amount=1")),
		OperationDigest("POS", "T/pay", []byte("amount=1")), // separators matter
	} {
		if bytes.Equal(a, other) {
			t.Fatal("distinct operations share a digest")
		}
	}
}

func FuzzDecodeBytes(f *testing.F) {
	f.Add(EncodeBytes([]byte("hello"), ParamOp))
	f.Add(":aGVsbG8:")
	f.Fuzz(func(t *testing.T, s string) {
		b, p, err := DecodeBytes(s, MaxAttestationHeader)
		if err != nil {
			return
		}
		back, p2, err := DecodeBytes(EncodeBytes(b, p...), MaxAttestationHeader)
		if err != nil || !bytes.Equal(back, b) || !slices.Equal(p, p2) {
			t.Fatalf("re-encoding changed %q", s)
		}
	})
}

func FuzzParseChallenge(f *testing.F) {
	f.Add(Challenge{Error: postauth.ReasonAttestationRequired, Mode: ModeOperation, MaxAge: 5}.Format())
	f.Add(`Bearer realm="x", Attestation error="a"`)
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseChallenge([]string{s})
		if !ok {
			return
		}
		if c.MaxAge < 0 {
			t.Fatal("negative max-age")
		}
	})
}
