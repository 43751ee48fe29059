package middleware_test

import (
	"net/http"
	"testing"

	"github.com/reattest/reattest/middleware"
)

// ConfigureServer gives the server a small HPACK encoder table (the
// challenge's single-use fields are not indexed) unless the user chose a
// size, and keeps the other HTTP/2 settings.
func TestConfigureServerHeaderTable(t *testing.T) {
	srv := &http.Server{}
	middleware.ConfigureServer(srv)
	if srv.HTTP2 == nil || srv.HTTP2.MaxEncoderHeaderTableSize != middleware.ServerHeaderTableSize {
		t.Fatalf("HTTP2 = %+v, want an encoder table of %d", srv.HTTP2, middleware.ServerHeaderTableSize)
	}
	srv = &http.Server{HTTP2: &http.HTTP2Config{MaxEncoderHeaderTableSize: 4096, MaxConcurrentStreams: 7}}
	middleware.ConfigureServer(srv)
	if srv.HTTP2.MaxEncoderHeaderTableSize != 4096 || srv.HTTP2.MaxConcurrentStreams != 7 {
		t.Fatalf("HTTP2 = %+v: the user's settings changed", srv.HTTP2)
	}
}

// The Guard reads its headers from the map by their constant names
// (headerValue): they must be in canonical form, as net/http stores them.
func TestHeaderNamesAreCanonical(t *testing.T) {
	for _, h := range []string{middleware.HeaderAttestation, middleware.HeaderPosture, middleware.HeaderAttestationRequest, middleware.HeaderResult} {
		if c := http.CanonicalHeaderKey(h); c != h {
			t.Errorf("%q is not canonical (%q)", h, c)
		}
	}
}
