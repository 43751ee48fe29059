package httpbind

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"

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
		// RFC 9651 syntax, as httpsfv parses it: the base64 alphabet only
		// (Go's decoder would skip a newline), parameter values that are
		// bare items, the last of duplicate parameters wins, SP only
		// around the item.
		{":aGVs\nbG8=:", false, nil},
		{":aGVs\rbG8=:", false, nil},
		{":aGVs\tbG8=:", false, nil},
		{":aGVs-bG8=:", false, nil}, // base64url is not the alphabet
		{":aGVs bG8=:", false, nil},
		{":aGVsbG8=:;x=@", false, nil},
		{":aGVsbG8=:;x=\"unterminated", false, nil},
		{":aGVsbG8=:;op;op=?0", true, nil},
		{":aGVsbG8=:;op=?0;op", true, []string{"op"}},
		{":aGVsbG8=:;x=\"a;b\";op", true, []string{"op"}},
		{"\t:aGVsbG8=:", false, nil},
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

// EncodeBytes writes what httpsfv.Marshal writes for the same item.
func TestEncodeBytesMatchesHTTPSFV(t *testing.T) {
	for _, tc := range []struct {
		b      []byte
		params []string
	}{
		{[]byte{}, nil},
		{[]byte("hello"), nil},
		{bytes.Repeat([]byte{0xfb}, 301), []string{ParamOp}},
		{[]byte{1}, []string{"a", "b*-._1"}},
	} {
		it := httpsfv.NewItem(tc.b)
		for _, p := range tc.params {
			it.Params.Add(p, true)
		}
		want, err := httpsfv.Marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		if got := EncodeBytes(tc.b, tc.params...); got != want {
			t.Errorf("EncodeBytes %q, httpsfv %q", got, want)
		}
	}
}

func TestResult(t *testing.T) {
	head := bytes.Repeat([]byte{0xab}, 32)
	s := FormatResult(5*time.Minute, head)
	if s != "status=affirming, max-age=300, posture=:"+base64.StdEncoding.EncodeToString(head)+":" {
		t.Fatalf("FormatResult %q", s)
	}
	r, err := ParseResult(s)
	if err != nil || r.Status != StatusAffirming || r.MaxAge != 5*time.Minute || !r.HasMaxAge || !bytes.Equal(r.Posture, head) {
		t.Fatalf("ParseResult(%q) = %+v, %v", s, r, err)
	}
	if s := FormatResult(0, nil); s != "status=affirming" {
		t.Fatalf("FormatResult without max-age %q", s)
	}
	for _, tc := range []struct {
		in     string
		maxAge time.Duration
		ok     bool
	}{
		{"status=affirming, max-age=60", time.Minute, true},
		{"max-age=60;x=1, other=(a b)", time.Minute, true}, // parameters and unknown members are ignored
		{"max-age=999999999999999", MaxResultMaxAge, true}, // clamped
		{"max-age=86400", MaxResultMaxAge, true},
		{"status=affirming", 0, false},
		// A comma inside a member does not split it (the dictionary is
		// parsed, not split on commas).
		{`other="a, max-age=60"`, 0, false},
		{"max-age=-1", 0, false},
		{"max-age=1.5", 0, false},
		{`max-age="60"`, 0, false},
		{"max-age=9999999999999999", 0, false},             // 16 digits: not an RFC 9651 integer
		{"max-age=60, max-age=120", 2 * time.Minute, true}, // the last one wins
		{"max-age=60,", 0, false},
		{"status=affirming, max-age=60, " + strings.Repeat("x", MaxResultHeader), 0, false},
	} {
		got, ok := ResultMaxAge(tc.in)
		if ok != tc.ok || got != tc.maxAge {
			t.Errorf("ResultMaxAge(%q) = %v %v, want %v %v", tc.in, got, ok, tc.maxAge, tc.ok)
		}
	}
	for _, bad := range []string{"status=\"affirming\"", "posture=?1", "posture=:!!:"} {
		if _, err := ParseResult(bad); err == nil {
			t.Errorf("ParseResult(%q) accepted", bad)
		}
	}
}

func TestChallenge(t *testing.T) {
	for _, c := range []Challenge{
		{Error: postauth.ReasonPostureChanged, Mode: ModeConnection, MaxAge: 300},
		{Error: `a"b\c`, Mode: "x"}, // quoted-string escapes
		{},
	} {
		got, ok := ParseChallenge([]string{c.Format()})
		if !ok || got != c {
			t.Fatalf("round trip: %+v %v (%s)", got, ok, c.Format())
		}
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

// FuzzDecodeBytes: what DecodeBytes accepts re-encodes to the same item,
// and it agrees with httpsfv: whatever httpsfv parses as a byte sequence
// DecodeBytes accepts with the same bytes and true parameters, and
// whatever DecodeBytes accepts httpsfv accepts too, once base64 padding is
// restored (DecodeBytes accepts unpadded base64, as RFC 9651 asks).
func FuzzDecodeBytes(f *testing.F) {
	f.Add(EncodeBytes([]byte("hello"), ParamOp))
	f.Add(":aGVsbG8:")
	f.Add(":aGVsbG8=:;op=?0;x=\"a;b\";op;y=1.5;z=:AA==:")
	f.Add(":aGVs\nbG8=:")
	f.Fuzz(func(t *testing.T, s string) {
		b, p, err := DecodeBytes(s, MaxAttestationHeader)
		if it, serr := httpsfv.UnmarshalItem([]string{s}); serr == nil && len(s) <= MaxAttestationHeader {
			if sb, ok := it.Value.([]byte); ok {
				var sp []string
				for _, k := range it.Params.Names() {
					if v, _ := it.Params.Get(k); v == true {
						sp = append(sp, k)
					}
				}
				if err != nil || !bytes.Equal(b, sb) || !slices.Equal(p, sp) {
					t.Fatalf("httpsfv parses %q as %x %v, DecodeBytes as %x %v (%v)", s, sb, sp, b, p, err)
				}
			}
		}
		if err != nil {
			return
		}
		back, p2, err := DecodeBytes(EncodeBytes(b, p...), MaxAttestationHeader)
		if err != nil || !bytes.Equal(back, b) || !slices.Equal(p, p2) {
			t.Fatalf("re-encoding changed %q", s)
		}
		it, err := httpsfv.UnmarshalItem([]string{padded(s)})
		if sb, ok := it.Value.([]byte); err != nil || !ok || !bytes.Equal(sb, b) {
			t.Fatalf("DecodeBytes accepts %q, httpsfv does not (%v)", s, err)
		}
	})
}

// padded returns the byte sequence item s with its base64 padded.
func padded(s string) string {
	s = strings.Trim(s, " ")
	end := 1 + strings.IndexByte(s[1:], ':')
	enc := s[1:end]
	if n := len(enc) % 4; n != 0 && !strings.Contains(enc, "=") {
		enc += strings.Repeat("=", 4-n)
	}
	return ":" + enc + s[end:]
}

// FuzzParseChallenge: a parsed challenge formats and parses back to
// itself, and never has a negative max-age.
func FuzzParseChallenge(f *testing.F) {
	f.Add(Challenge{Error: postauth.ReasonAttestationRequired, Mode: ModeOperation, MaxAge: 5}.Format())
	f.Add(`Bearer realm="x", Attestation error="a"`)
	f.Add(`Attestation error="a\"b\\c", mode=connection, max-age="7"`)
	f.Add(`Basic abc==, attestation Error=x, MAX-AGE=+3, mode="a,b"`)
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseChallenge([]string{s})
		if !ok {
			return
		}
		if c.MaxAge < 0 {
			t.Fatal("negative max-age")
		}
		back, ok := ParseChallenge([]string{c.Format()})
		if !ok || back != c {
			t.Fatalf("%q parses as %+v, which formats as %q and parses as %+v (%v)", s, c, c.Format(), back, ok)
		}
	})
}

// FuzzParseResult: the client's Attestation-Result parser never panics,
// keeps max-age within [0, MaxResultMaxAge] (no Duration overflow), and
// what it accepts formats and parses back to the same max-age and posture.
func FuzzParseResult(f *testing.F) {
	f.Add(FormatResult(5*time.Minute, bytes.Repeat([]byte{1}, 32)))
	f.Add(FormatResult(0, nil))
	f.Add("max-age=999999999999999, posture=:AAAA:;x, a=(1 2);b")
	f.Add(`status=affirming, other="a, max-age=60"`)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseResult(s)
		if err != nil {
			return
		}
		if len(s) > MaxResultHeader {
			t.Fatal("accepted an oversized value")
		}
		if r.MaxAge < 0 || r.MaxAge > MaxResultMaxAge || (!r.HasMaxAge && r.MaxAge != 0) {
			t.Fatalf("max-age %v", r.MaxAge)
		}
		back, err := ParseResult(FormatResult(r.MaxAge, r.Posture))
		if err != nil || back.MaxAge != r.MaxAge || !bytes.Equal(back.Posture, r.Posture) || (r.Posture == nil) != (back.Posture == nil) {
			t.Fatalf("%q: %+v formats and parses as %+v (%v)", s, r, back, err)
		}
		if d, ok := ResultMaxAge(s); ok != r.HasMaxAge || d != r.MaxAge {
			t.Fatalf("ResultMaxAge %v %v, ParseResult %+v", d, ok, r)
		}
	})
}

// BenchmarkDecodeBytes compares the byte sequence fast path with
// httpsfv.UnmarshalItem (the baseline) on a posture hint (32 bytes) and an
// Attestation header (3000 bytes).
func BenchmarkDecodeBytes(b *testing.B) {
	for _, tc := range []struct {
		name string
		s    string
	}{
		{"posture", EncodeBytes(bytes.Repeat([]byte{7}, 32))},
		{"attestation", EncodeBytes(bytes.Repeat([]byte{7}, 3000))},
		{"request-op", EncodeBytes(bytes.Repeat([]byte{7}, 100), ParamOp)},
	} {
		b.Run(tc.name+"/reattest", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := DecodeBytes(tc.s, MaxAttestationHeader); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/httpsfv", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				it, err := httpsfv.UnmarshalItem([]string{tc.s})
				if _, ok := it.Value.([]byte); err != nil || !ok {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResult: the Attestation-Result serialised with httpsfv (once
// per verified attestation) and parsed with it (once per response on the
// client).
func BenchmarkResult(b *testing.B) {
	head := bytes.Repeat([]byte{7}, 32)
	s := FormatResult(5*time.Minute, head)
	b.Run("format", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			FormatResult(5*time.Minute, head)
		}
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := ResultMaxAge(s); !ok {
				b.Fatal(s)
			}
		}
	})
}
