package transports_test

// End-to-end tests of the client's behaviours (body replay, shared
// attestation, pre-arming) against a real server (internal/e2e).

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/reattest/reattest/internal/e2e"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/transports"
)

func TestBodyReplayed(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		c, _ := h.Client()
		body := strings.Repeat("payload-", 10_000)
		for _, path := range []string{"/echo", "/pay"} {
			status, got, _ := e2e.Do(t, c, "POST", h.URL(path), body)
			if status != 200 {
				t.Fatalf("%s: %d", path, status)
			}
			// The handler hashed the body it received: the same as sent.
			want := "body=" + e2e.BodyDigest(body)
			if !strings.Contains(got, want) {
				t.Fatalf("%s: handler saw another body: %q, want %q", path, got, want)
			}
		}
	})
}

func TestBodyNotReplayable(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(e2e.StandardRoutes()...))
		c, _ := h.Client()
		pr, pw := io.Pipe()
		go func() { pw.Write([]byte("amount=1")); pw.Close() }()
		req, _ := http.NewRequest("POST", h.URL("/echo"), pr) // no GetBody
		_, err := c.Do(req)
		if !errors.Is(err, transports.ErrBodyNotReplayable) {
			t.Fatalf("want ErrBodyNotReplayable, got %v", err)
		}
		if h.Attester.Count() != 0 || h.Calls("/echo") != 0 {
			t.Fatal("a non-replayable request was attested or handled")
		}
	})
}

func TestConcurrentRequestsShareOneAttestation(t *testing.T) {
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithGuard(e2e.StandardRoutes()...))
	c, tr := h.Client(transports.WithMaxConnsPerHost(1))
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("PUT", h.URL("/config"), strings.NewReader("v=1"))
			resp, err := c.Do(req)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- errors.New(resp.Status)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := tr.Conns(); got != 1 {
		t.Fatalf("connections = %d, want 1", got)
	}
	if got := h.Attester.Count(); got != 1 {
		t.Fatalf("attestations = %d for %d concurrent requests on one connection, want 1", got, n)
	}
	if h.Calls("/config") != n {
		t.Fatalf("handler ran %d times", h.Calls("/config"))
	}
}

func TestPreArmedOperation(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithGuard(
			middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation, PreArm: true})))
		c, _ := h.Client()
		for i := range 4 {
			status, body, _ := e2e.Do(t, c, "POST", h.URL("/pay"), "amount="+string(rune('1'+i)))
			if status != 200 || !strings.Contains(body, "attested=true") {
				t.Fatalf("payment %d: %d %q", i, status, body)
			}
		}
		challenges := 0
		proactive := 0
		for {
			select {
			case e := <-h.Activities:
				switch {
				case e.Kind == transports.ActivityChallenged:
					challenges++
				case e.Kind == transports.ActivityAttested && e.Proactive:
					proactive++
				}
				continue
			default:
			}
			break
		}
		if challenges != 1 || proactive != 3 {
			t.Fatalf("challenges = %d, proactive = %d; want 1 and 3 (pre-armed after the first)", challenges, proactive)
		}
		if n := h.Attester.Count(); n != 4 {
			t.Fatalf("attestations = %d, want 4", n)
		}
	})
}
