package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/reattest/reattest/internal/e2e"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

const noShellPolicy = `
tools:
  deny: [shell]
`

func agentTracker(t *testing.T) *posture.Tracker {
	t.Helper()
	tr, err := posture.NewTracker()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := tr.SetModel(ctx, posture.Model{Name: "assistant", Version: "1", Digest: posture.DigestOf([]byte("weights"))}); err != nil {
		t.Fatal(err)
	}
	if err := tr.EnableTool(ctx, posture.Tool{Name: "search", Version: "1", Digest: posture.DigestOf([]byte("search"))}); err != nil {
		t.Fatal(err)
	}
	return tr
}

func violations(t *testing.T, body string) []string {
	t.Helper()
	var p middleware.Problem
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	return p.Violations
}

// A posture change is visible on the next high-impact request: enabling a
// forbidden tool gets the agent re-challenged and denied with the tool
// named; disabling it lets it through again. Both freshness modes.
func TestForbiddenToolDeniedThenAllowed(t *testing.T) {
	pol, err := posture.ParsePolicy([]byte(noShellPolicy), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		tr := agentTracker(t)
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithAttester(softeat.WithPosture(tr)), e2e.WithGuard(
			middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation, Posture: pol}),
			middleware.WithRoute("PUT /config", middleware.Route{Posture: pol})))
		c, _ := h.Client(transports.WithPosture(tr))
		ctx := context.Background()
		for _, r := range []struct{ method, path string }{{"POST", "/pay"}, {"PUT", "/config"}} {
			if s, _, _ := e2e.Do(t, c, r.method, h.URL(r.path), "amount=1"); s != 200 {
				t.Fatalf("%s before the change: %d", r.path, s)
			}
		}
		if err := tr.EnableTool(ctx, posture.Tool{Name: "shell", Version: "5.2", Digest: posture.DigestOf([]byte("/bin/sh"))}); err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct{ method, path string }{{"POST", "/pay"}, {"PUT", "/config"}} {
			s, body, _ := e2e.Do(t, c, r.method, h.URL(r.path), "amount=2")
			if s != http.StatusForbidden {
				t.Fatalf("%s with shell enabled: %d", r.path, s)
			}
			if v := violations(t, body); len(v) != 1 || v[0] != "tool:shell forbidden" {
				t.Fatalf("%s violations %q", r.path, v)
			}
		}
		if err := tr.DisableTool(ctx, "shell"); err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct{ method, path string }{{"POST", "/pay"}, {"PUT", "/config"}} {
			if s, _, _ := e2e.Do(t, c, r.method, h.URL(r.path), "amount=3"); s != 200 {
				t.Fatalf("%s after disabling shell: %d", r.path, s)
			}
		}
		if h.Calls("/pay") != 2 || h.Calls("/config") != 2 {
			t.Fatalf("handlers ran %d/%d times", h.Calls("/pay"), h.Calls("/config"))
		}
	})
}

// lyingHint reports a frozen head whatever the agent's real posture.
type lyingHint struct{ head []byte }

func (l lyingHint) Head() []byte                         { return l.head }
func (l lyingHint) Subscribe(func(head []byte)) func()   { return func() {} }
func (l lyingHint) Snapshot() (*posture.Snapshot, error) { return nil, errors.New("a hint only") }

// A posture hint that lies (the old head after a change) cannot get an
// operation-mode request through: its fresh Evidence carries the real head.
func TestLyingPostureHintCannotPassOperationMode(t *testing.T) {
	pol, _ := posture.ParsePolicy([]byte(noShellPolicy), "yaml")
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		tr := agentTracker(t)
		h := e2e.New(t, e2e.HTTP2(h2), e2e.WithAttester(softeat.WithPosture(tr)), e2e.WithGuard(
			middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation, Posture: pol})))
		c, _ := h.Client(transports.WithPosture(lyingHint{tr.Head()}))
		if s, _, _ := e2e.Do(t, c, "POST", h.URL("/pay"), "amount=1"); s != 200 {
			t.Fatalf("before: %d", s)
		}
		tr.EnableTool(context.Background(), posture.Tool{Name: "shell", Version: "5.2", Digest: posture.DigestOf([]byte("/bin/sh"))})
		s, body, _ := e2e.Do(t, c, "POST", h.URL("/pay"), "amount=1000")
		if s != http.StatusForbidden || !strings.Contains(body, "tool:shell forbidden") {
			t.Fatalf("payment with a lying hint: %d %s", s, body)
		}
		if h.Calls("/pay") != 1 {
			t.Fatal("payment ran with a forbidden tool enabled")
		}
	})
}
