package middleware_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reattest/reattest/internal/e2e"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
)

// lateVerifier answers after delay whatever its context says, with the
// real verdict of the harness's software EAT verifier.
func lateVerifier(delay time.Duration, inner *postauth.Verifier) verifierFunc {
	return func(_ context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
		time.Sleep(delay)
		return (*inner).Verify(context.Background(), ch, ev)
	}
}

// A verifier or appraisal hook that ignores its context and passes after
// the verify timeout never runs the handler: the request gets 503
// verifier_timeout at the deadline, in both modes.
func TestLatePassNeverRuns(t *testing.T) {
	// late is far beyond the timeout, so that a loaded machine running
	// timers late still answers before it; the cases run in parallel.
	const timeout, late = 100 * time.Millisecond, time.Second
	slowHook := func(context.Context, *postauth.Result) error { time.Sleep(late); return nil }
	for _, tc := range []struct {
		name        string
		route, path string
		mode        middleware.Mode
		lateVerify  bool
	}{
		{"verifier/operation", "POST /pay", "/pay", middleware.ModeOperation, true},
		{"verifier/connection", "PUT /config", "/config", middleware.ModeConnection, true},
		{"appraise/operation", "POST /pay", "/pay", middleware.ModeOperation, false},
		{"appraise/connection", "PUT /config", "/config", middleware.ModeConnection, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var inner postauth.Verifier
			rt := middleware.Route{Mode: tc.mode}
			opts := []e2e.Option{e2e.HTTP2(true)}
			if tc.lateVerify {
				opts = append(opts, e2e.WithVerifier(lateVerifier(late, &inner)))
			} else {
				rt.Appraise = slowHook
			}
			var mu sync.Mutex
			var decided []middleware.Decision
			opts = append(opts, e2e.WithGuard(middleware.WithVerifyTimeout(timeout), middleware.WithRoute(tc.route, rt),
				middleware.WithObserver(func(_ context.Context, d middleware.Decision) { mu.Lock(); decided = append(decided, d); mu.Unlock() })))
			h := e2e.New(t, opts...)
			inner = h.AttKey.Verifier(t, softeat.WithClock(h.Clock.Now), softeat.WithMaxAge(time.Hour))
			c, _ := h.Client()
			status, body, _ := e2e.Do(t, c, strings.Fields(tc.route)[0], h.URL(tc.path), "amount=1")
			if status != http.StatusServiceUnavailable || !strings.Contains(body, `"reason":"verifier_timeout"`) {
				t.Fatalf("late verdict: %d %s", status, body)
			}
			// The server answered at its deadline, not when the late
			// verdict came (measured by the server itself, so a slow
			// client does not count).
			mu.Lock()
			last := decided[len(decided)-1]
			mu.Unlock()
			if last.VerifyDuration >= late {
				t.Errorf("answered after %v of verification: the request waited for the late verdict", last.VerifyDuration)
			}
			time.Sleep(late + 100*time.Millisecond) // let the late verdict arrive
			if n := h.Calls(tc.path); n != 0 {
				t.Fatalf("handler ran %d times after a late pass", n)
			}
		})
	}
}

// Clients that hang up before the verdict: the late verdict runs no
// handler, for any of them.
func TestHungUpClientsRunNoHandler(t *testing.T) {
	var inner postauth.Verifier
	h := e2e.New(t, e2e.HTTP2(true), e2e.WithVerifier(lateVerifier(300*time.Millisecond, &inner)),
		e2e.WithGuard(e2e.StandardRoutes()...))
	inner = h.AttKey.Verifier(t, softeat.WithClock(h.Clock.Now), softeat.WithMaxAge(time.Hour))
	var wg sync.WaitGroup
	var gaveUp atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := h.Client()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "PUT", h.URL("/config"), strings.NewReader("v=1"))
			if resp, err := c.Do(req); err != nil {
				gaveUp.Add(1)
			} else {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	if gaveUp.Load() != 20 {
		t.Fatalf("%d of 20 clients gave up", gaveUp.Load())
	}
	if n := h.Calls("/config"); n != 0 {
		t.Fatalf("handler ran %d times for clients that had hung up", n)
	}
}

// A verifier or an appraisal hook that panics gives 503 verifier_failed
// (not a reset HTTP/2 stream), is logged without Evidence and is counted by
// the observer.
func TestPanicIs503(t *testing.T) {
	for _, tc := range []struct {
		name     string
		verifier bool
	}{{"verifier", true}, {"appraise", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var logs strings.Builder
			var mu sync.Mutex
			log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) }), nil))
			var decisions []middleware.Decision
			rt := middleware.Route{Mode: middleware.ModeOperation}
			opts := []e2e.Option{e2e.HTTP2(true)}
			if tc.verifier {
				opts = append(opts, e2e.WithVerifier(verifierFunc(func(context.Context, postauth.Challenge, postauth.Evidence) (*postauth.Appraisal, error) {
					panic("verifier bug")
				})))
			} else {
				rt.Appraise = func(context.Context, *postauth.Result) error { panic("hook bug") }
			}
			opts = append(opts, e2e.WithGuard(middleware.WithRoute("POST /pay", rt), middleware.WithLogger(log),
				middleware.WithObserver(func(_ context.Context, d middleware.Decision) {
					mu.Lock()
					decisions = append(decisions, d)
					mu.Unlock()
				})))
			h := e2e.New(t, opts...)
			c, _ := h.Client()
			status, body, _ := e2e.Do(t, c, "POST", h.URL("/pay"), "amount=1")
			if status != http.StatusServiceUnavailable || !strings.Contains(body, `"reason":"verifier_failed"`) || h.Calls("/pay") != 0 {
				t.Fatalf("panic: %d %s", status, body)
			}
			mu.Lock()
			defer mu.Unlock()
			if !strings.Contains(logs.String(), "reason=verifier_failed") || !strings.Contains(logs.String(), "panic") {
				t.Errorf("panic not logged:\n%s", logs.String())
			}
			last := decisions[len(decisions)-1]
			if last.Outcome != middleware.OutcomeUnavailable || last.Reason != postauth.ReasonVerifierFailed {
				t.Errorf("observer saw %+v", last)
			}
		})
	}
}
