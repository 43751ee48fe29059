package middleware_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/reattest/reattest/internal/e2e"
	"github.com/reattest/reattest/middleware"
)

// Without ConfigureServer, per-connection state lives in a bounded cache:
// a flood of connections keeps at most the configured number of entries.
func TestFallbackCacheBounded(t *testing.T) {
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithoutConnHooks(),
		e2e.WithGuard(append([]middleware.Option{middleware.WithFallbackCache(50, time.Hour)}, e2e.StandardRoutes()...)...))
	for range 80 {
		rc := h.Raw()
		if r := rc.Send("POST", "/pay", "x", nil); r.StatusCode != 401 {
			t.Fatal(r.StatusCode)
		}
		rc.CC.Close()
	}
	if n := middleware.FallbackLen(h.Guard); n > 50 {
		t.Fatalf("fallback cache holds %d entries, bound 50", n)
	}
}

// Connections that were challenged but never attested are forgotten once
// their challenges expired; attested ones keep their verdict.
func TestFallbackDropsUnattested(t *testing.T) {
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithoutConnHooks(),
		e2e.WithGuard(append([]middleware.Option{middleware.WithFallbackCache(1000, time.Hour)}, e2e.StandardRoutes()...)...))
	c, _ := h.Client()
	if s, _, _ := e2e.Do(t, c, "POST", h.URL("/echo"), "v=1"); s != 200 { // attested: keeps its verdict
		t.Fatal(s)
	}
	for range 10 {
		rc := h.Raw()
		rc.Send("POST", "/pay", "x", nil) // challenged, never answered
		rc.CC.Close()
	}
	if n := middleware.FallbackLen(h.Guard); n != 11 {
		t.Fatalf("entries = %d, want 11", n)
	}
	h.Clock.Advance(2 * time.Minute) // past the context lifetime (1 min), within the idle time
	rc := h.Raw()
	rc.Send("POST", "/pay", "x", nil)
	if n := middleware.FallbackLen(h.Guard); n != 2 {
		t.Fatalf("entries = %d after the challenges expired, want 2 (the attested connection and the new one)", n)
	}
	if s, body, _ := e2e.Do(t, c, "POST", h.URL("/echo"), "v=2"); s != 200 || h.Attester.Count() != 1 {
		t.Fatalf("the attested connection lost its verdict: %d %s (attestations %d)", s, body, h.Attester.Count())
	}
}

// The memory a fallback entry costs stays within the documented bound
// (about 4 KiB): a flood of unauthenticated connections that each got a
// challenge costs the server bounded memory.
func TestFallbackMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement")
	}
	h := e2e.New(t, e2e.WithoutConnHooks(), e2e.WithGuard(e2e.StandardRoutes()...))
	const n = 500
	heap := func() uint64 {
		var m runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	// Each attacker connection asks for a challenge (HTTP/1.1 written by
	// hand, so the client keeps nothing) and goes away: the heap that stays
	// is the server's.
	conf := h.PKI.ClientConfig(&h.ClientCert)
	flood := func(k int) {
		for range k {
			c, err := tls.Dial("tcp", h.Server.Listener.Addr().String(), conf)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "POST /pay HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nx")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 401 {
				t.Fatalf("%v %v", resp, err)
			}
			c.Close()
		}
		time.Sleep(200 * time.Millisecond) // let the server's connection goroutines end
	}
	flood(20) // warm up
	before := heap()
	flood(n)
	per := (float64(heap()) - float64(before)) / n
	t.Logf("%.0f bytes per fallback entry (%d entries)", per, middleware.FallbackLen(h.Guard))
	if per > middleware.FallbackEntryBytes {
		t.Fatalf("%.0f bytes per fallback entry, documented bound %d", per, middleware.FallbackEntryBytes)
	}
}
