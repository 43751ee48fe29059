package httpbind

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"reflect"
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
	a := OperationDigest("POST", "gw.example", "/pay", []byte("amount=1"))
	if len(a) != 16 {
		t.Fatal(len(a))
	}
	for _, other := range [][]byte{
		OperationDigest("POST", "gw.example", "/pay", []byte("amount=1000")),
		OperationDigest("PUT", "gw.example", "/pay", []byte("amount=1")),
		OperationDigest("POST", "gw.example", "/pay?x", []byte("amount=1")),
		OperationDigest("POST", "other.example", "/pay", []byte("amount=1")), // the host matters
		OperationDigest("POST", "gw.example:8443", "/pay", []byte("amount=1")),
		OperationDigest("POS", "Tgw.example", "/pay", []byte("amount=1")), // separators matter
	} {
		if bytes.Equal(a, other) {
			t.Fatal("distinct operations share a digest")
		}
	}
	for _, same := range []string{"GW.example", "gw.example:443", "gw.example."} {
		if !bytes.Equal(a, OperationDigest("POST", same, "/pay", []byte("amount=1"))) {
			t.Errorf("authority %q is not normalised to gw.example", same)
		}
	}
}

var update = flag.Bool("update", false, "rewrite testdata/operation-digest.json")

// TestOperationDigestVectors: the operation digest of the edge cases of
// docs/protocol.md section 5.3, as the server computes it from the target
// it received, against testdata/operation-digest.json (go test -update
// rewrites it).
func TestOperationDigestVectors(t *testing.T) {
	type vector struct {
		Description string `json:"description"`
		Method      string `json:"method"`
		Authority   string `json:"authority"`
		Received    string `json:"received_target"`
		OriginForm  string `json:"origin_form"`
		Body        string `json:"body"`
		Digest      string `json:"digest"`
	}
	cases := []vector{
		{Description: "origin form with a query", Method: "POST", Authority: "gw.example", Received: "/v1/payments?dry_run=1", Body: `{"amount":25}`},
		{Description: "empty body", Method: "DELETE", Authority: "gw.example", Received: "/v1/keys/7"},
		{Description: "percent-encoding is kept as sent", Method: "PUT", Authority: "gw.example", Received: "/v1/config/a%2Fb", Body: "x"},
		{Description: "the default port and case do not matter", Method: "POST", Authority: "GW.Example:443", Received: "/pay", Body: "x"},
		{Description: "another port does", Method: "POST", Authority: "gw.example:8443", Received: "/pay", Body: "x"},
		{Description: "IPv6 literal", Method: "POST", Authority: "[::1]:8443", Received: "/pay", Body: "x"},
		{Description: "absolute form (through a proxy): its origin form", Method: "POST", Authority: "gw.example", Received: "https://gw.example/pay?x=1", Body: "x"},
		{Description: "absolute form with an empty path", Method: "POST", Authority: "gw.example", Received: "https://gw.example", Body: "x"},
		{Description: "asterisk form", Method: "OPTIONS", Authority: "gw.example", Received: "*"},
	}
	for i := range cases {
		c := &cases[i]
		c.OriginForm = OriginForm(c.Received)
		c.Digest = hex.EncodeToString(OperationDigest(c.Method, c.Authority, c.OriginForm, []byte(c.Body)))
	}
	path := "testdata/operation-digest.json"
	if *update {
		b, _ := json.MarshalIndent(cases, "", "  ")
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []vector
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, cases) {
		t.Fatalf("operation digests differ from %s (run with -update only for a protocol version change)", path)
	}
	// Independent recomputation of one vector with plain SHA-256.
	v := want[0]
	bh := sha256.Sum256([]byte(v.Body))
	h := sha256.Sum256([]byte(v.Method + "\x00" + v.Authority + "\x00" + v.OriginForm + "\x00" + string(bh[:])))
	if hex.EncodeToString(h[:16]) != v.Digest {
		t.Fatal("vector 0 does not match the documented formula")
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
