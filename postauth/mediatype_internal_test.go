package postauth

import (
	"mime"
	"strings"
	"testing"
)

// The fast path of BaseMediaType agrees with mime.ParseMediaType: whatever
// it takes as a plain media type, the standard parser reads as that same
// type with no parameters.
func FuzzBaseMediaType(f *testing.F) {
	for _, s := range []string{
		"application/eat+cwt", "application/vnd.reattest.tpm-quote+cbor", "application/eat+cwt; eat_profile=x",
		"Application/EAT+CWT", "nope", "a/b/c", "/b", "a/", "", "a/b ", "text/plain;charset=utf-8", "a/b\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := BaseMediaType(s)
		if plainMediaType(s) {
			mt, params, err := mime.ParseMediaType(s)
			if err != nil || mt != s || len(params) != 0 || got != s {
				t.Fatalf("plain %q: mime says %q %v %v; BaseMediaType %q", s, mt, params, err, got)
			}
		}
		if got != "" && !strings.Contains(got, "/") {
			t.Fatalf("BaseMediaType(%q) = %q: not type/subtype", s, got)
		}
	})
}
