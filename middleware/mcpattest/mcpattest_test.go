package mcpattest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/reattest/reattest/internal/e2e"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/mcpattest"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

// The official SDK client, with the reattest transport as its HTTP
// client's RoundTripper and nothing else changed, calls a harmless tool
// without attestation and high-impact tools and resources with it, over
// HTTP/1.1 and HTTP/2, stateful (SSE responses, sessions) and stateless.
func TestToolCalls(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		for _, stateless := range []bool{false, true} {
			name := "stateful"
			if stateless {
				name = "stateless"
			}
			t.Run(name, func(t *testing.T) {
				g := newGateway(t, gatewayConfig{h2: h2, stateless: stateless})
				cs := g.connect(t, g.attesting(), nil)
				if !stateless && cs.ID() == "" {
					t.Fatal("no Mcp-Session-Id")
				}
				if out, err := callTool(cs, "search", searchIn{Query: "invoices"}); err != nil || out != "results for invoices" {
					t.Fatalf("search: %q %v", out, err)
				}
				if n := g.Attester.Count(); n != 0 {
					t.Fatalf("a harmless tool call cost %d attestations", n)
				}
				if a := g.FindActivity(transports.ActivityChallenged, ""); a != nil {
					t.Fatalf("a harmless tool call was challenged: %+v", a)
				}
				if out, err := callTool(cs, "payments.transfer", payIn{To: "acme", Amount: 25}); err != nil || out != "paid 25 to acme" {
					t.Fatalf("payment: %q %v", out, err)
				}
				if n := g.Attester.Count(); n != 1 {
					t.Fatalf("attestations after a payment = %d, want 1", n)
				}
				if a := g.FindActivity(transports.ActivityChallenged, ""); a == nil || a.Mode != "operation" {
					t.Fatalf("payment challenge: %+v", a)
				}
				// Operation mode: every payment is attested.
				if _, err := callTool(cs, "payments.transfer", payIn{To: "acme", Amount: 26}); err != nil {
					t.Fatal(err)
				}
				if n := g.Attester.Count(); n != 2 {
					t.Fatalf("attestations after two payments = %d, want 2", n)
				}
				// Connection mode: the verdict serves the connection.
				before := g.Attester.Count()
				for range 2 {
					if out, err := callTool(cs, "admin.reset", struct{}{}); err != nil || out != "reset" {
						t.Fatalf("reset: %q %v", out, err)
					}
				}
				// Over HTTP/1.1 the SDK's SSE streams may hold a connection
				// while the next call starts on another one, which needs
				// its own verdict.
				if n := g.Attester.Count() - before; n != 1 && (h2 || n != 2) {
					t.Fatalf("two connection-mode calls cost %d attestations, want 1", n)
				}
				// resources/read of a protected URI, and of another.
				before = g.Attester.Count()
				if res, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "docs://readme"}); err != nil || res.Contents[0].Text != "read me" {
					t.Fatalf("readme: %v", err)
				}
				if g.Attester.Count() != before {
					t.Fatal("reading an unprotected resource was attested")
				}
				if res, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "secrets://db-password"}); err != nil || res.Contents[0].Text != "hunter2" {
					t.Fatalf("secret: %v", err)
				}
				if g.Attester.Count() != before+1 || g.secrets.Load() != 1 {
					t.Fatalf("reading a protected resource: %d attestations, %d reads", g.Attester.Count()-before, g.secrets.Load())
				}
			})
		}
	})
}

// An MCP client without attestation reaches the harmless tool, and gets a
// JSON-RPC error naming the reason for the high-impact ones, which never
// run. The session stays usable.
func TestUnattestedClientGetsJSONRPCError(t *testing.T) {
	g := newGateway(t, gatewayConfig{})
	cs := g.connect(t, g.plain(), nil)
	if out, err := callTool(cs, "search", searchIn{Query: "x"}); err != nil || out != "results for x" {
		t.Fatalf("search: %q %v", out, err)
	}
	_, err := callTool(cs, "payments.transfer", payIn{To: "mallory", Amount: 9000})
	ref, ok := mcpattest.RefusalOf(err)
	if !ok {
		t.Fatalf("payment without attestation: %v (not a refusal)", err)
	}
	if ref.Code != mcpattest.CodeAttestationRequired || ref.Status != 401 || ref.Reason != postauth.ReasonAttestationRequired ||
		ref.Rule != "mcp tools/call payments.*" || !strings.HasSuffix(ref.Type, "/attestation-required") {
		t.Fatalf("refusal %+v", ref)
	}
	if postauth.CodeOf(ref) != postauth.CodeRequired {
		t.Fatalf("CodeOf(refusal) = %v", postauth.CodeOf(ref))
	}
	_, err = cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "secrets://db-password"})
	if ref, ok := mcpattest.RefusalOf(err); !ok || ref.Rule != "mcp resources/read secrets://*" {
		t.Fatalf("secret without attestation: %v", err)
	}
	if g.payments.Load()+g.secrets.Load() != 0 {
		t.Fatal("a high-impact call ran without attestation")
	}
	if out, err := callTool(cs, "search", searchIn{Query: "y"}); err != nil || out != "results for y" {
		t.Fatalf("search after a refusal: %q %v", out, err)
	}
}

// Operation mode binds the whole JSON-RPC message: an authenticator made
// for one payment does not pass with another argument, nor twice.
func TestOperationBinding(t *testing.T) {
	g := newGateway(t, gatewayConfig{json: true})
	raw := g.Raw()
	c := &http.Client{Transport: raw.CC}
	s := g.rawSession(t, c)
	hdr := func(att string) map[string]string {
		h := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
			"Mcp-Session-Id": s.id, "Mcp-Protocol-Version": rawVersion}
		if att != "" {
			h[middleware.HeaderAttestation] = att
		}
		return h
	}
	pay := func(amount string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"payments.transfer","arguments":{"to":"acme","amount":` + amount + `}}}`
	}
	resp := raw.Send("POST", "/mcp", pay("1"), hdr(""))
	if resp.StatusCode != 401 {
		t.Fatalf("unattested payment: %d", resp.StatusCode)
	}
	answer := raw.Answer(resp)
	// The same authenticator with another amount: refused, the tool never runs.
	resp = raw.Send("POST", "/mcp", pay("9000"), hdr(answer))
	if resp.StatusCode != 401 {
		t.Fatalf("swapped argument: %d", resp.StatusCode)
	}
	if g.payments.Load() != 0 {
		t.Fatal("a payment ran with an authenticator made for another amount")
	}
	// A fresh challenge, answered for the very message: paid once.
	resp = raw.Send("POST", "/mcp", pay("1"), hdr(""))
	answer = raw.Answer(resp)
	if resp = raw.Send("POST", "/mcp", pay("1"), hdr(answer)); resp.StatusCode != 200 || g.payments.Load() != 1 {
		t.Fatalf("attested payment: %d, %d payments", resp.StatusCode, g.payments.Load())
	}
	// Replayed on the same connection: refused.
	if resp = raw.Send("POST", "/mcp", pay("1"), hdr(answer)); resp.StatusCode != 401 || g.payments.Load() != 1 {
		t.Fatalf("replayed payment: %d, %d payments", resp.StatusCode, g.payments.Load())
	}
	// The id is part of the message too.
	resp = raw.Send("POST", "/mcp", pay("1"), hdr(""))
	answer = raw.Answer(resp)
	other := strings.Replace(pay("1"), `"id":7`, `"id":8`, 1)
	if resp = raw.Send("POST", "/mcp", other, hdr(answer)); resp.StatusCode != 401 || g.payments.Load() != 1 {
		t.Fatalf("other id: %d, %d payments", resp.StatusCode, g.payments.Load())
	}
}

// A posture denial reaches the MCP client as a JSON-RPC error carrying the
// reason and the violations; the tool never runs.
func TestDenialSurfacedAsJSONRPCError(t *testing.T) {
	policy, err := posture.ParsePolicy([]byte("tools:\n  deny: [shell]\n"), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	tracker, _ := posture.NewTracker()
	tracker.EnableTool(context.Background(), posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))})
	rules := defaultRules()
	rules[0].Posture = policy
	g := newGateway(t, gatewayConfig{rules: rules, harness: []e2e.Option{e2e.WithAttester(softeat.WithPosture(tracker))}})
	cs := g.connect(t, g.attesting(transports.WithPosture(tracker)), nil)
	_, err = callTool(cs, "payments.transfer", payIn{To: "acme", Amount: 25})
	ref, ok := mcpattest.RefusalOf(err)
	if !ok {
		t.Fatalf("denied payment: %v (not a refusal)", err)
	}
	if ref.Code != mcpattest.CodeAttestationDenied || ref.Status != 403 || ref.Reason != postauth.ReasonPostureDenied ||
		!slices.Equal(ref.Violations, []string{"tool:shell forbidden"}) || ref.Rule != "mcp tools/call payments.*" {
		t.Fatalf("refusal %+v", ref)
	}
	if !strings.Contains(err.Error(), "tool:shell forbidden") || !strings.Contains(ref.Message, "posture_denied") {
		t.Fatalf("the error does not name the violation: %v / %q", err, ref.Message)
	}
	if pe := new(postauth.Error); !errors.As(ref, &pe) || pe.Code != postauth.CodePolicyDenied {
		t.Fatalf("Unwrap: %+v", pe)
	}
	if g.payments.Load() != 0 {
		t.Fatal("a denied payment ran")
	}
	// The transport's observer sees the refused retry, with its reason.
	if a := g.FindActivity(transports.ActivityAttested, postauth.ReasonPostureDenied); a == nil || a.Outcome != transports.OutcomeRefused || a.Status != 403 {
		t.Fatalf("activity %+v, want attested/refused/posture_denied", a)
	}
	// The agent disables the tool: the next payment passes.
	tracker.DisableTool(context.Background(), "shell")
	if out, err := callTool(cs, "payments.transfer", payIn{To: "acme", Amount: 25}); err != nil || out != "paid 25 to acme" {
		t.Fatalf("payment after disabling the tool: %q %v", out, err)
	}
}

// A batch that contains a high-impact call is high-impact: a client
// without attestation gets one JSON-RPC error per call and nothing runs;
// with attestation the whole batch runs after one attestation of the
// strictest rule, and every matched rule's policy applies.
func TestBatch(t *testing.T) {
	e2e.EachProto(t, func(t *testing.T, h2 bool) {
		g := newGateway(t, gatewayConfig{h2: h2, json: true})
		batch := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"q"}}},` +
			`{"jsonrpc":"2.0","id":"two","method":"tools/call","params":{"name":"payments.transfer","arguments":{"to":"acme","amount":5}}},` +
			`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}]`
		plain := g.rawSession(t, g.plain())
		status, body, _ := plain.post(g.plain(), batch)
		if status != 401 {
			t.Fatalf("unattested batch: %d %s", status, body)
		}
		errs := errorsOf(t, body)
		if len(errs) != 2 || string(errs[0].ID) != "1" || string(errs[1].ID) != `"two"` ||
			errs[0].Error.Code != mcpattest.CodeAttestationRequired || errs[1].Error.Data.Reason != postauth.ReasonAttestationRequired {
			t.Fatalf("batch refusal: %s", body)
		}
		if g.searches.Load()+g.payments.Load() != 0 {
			t.Fatal("part of a refused batch ran")
		}
		// A batch of harmless calls needs nothing.
		harmless := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"q"}}},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`
		if status, body, _ := plain.post(g.plain(), harmless); status != 200 || !strings.Contains(body, "results for q") {
			t.Fatalf("harmless batch: %d %s", status, body)
		}
		// With attestation: one attestation, both calls run.
		c := g.attesting()
		s := g.rawSession(t, c)
		if status, body, _ := s.post(c, batch); status != 200 || !strings.Contains(body, "paid 5 to acme") || !strings.Contains(body, "results for q") {
			t.Fatalf("attested batch: %d %s", status, body)
		}
		if g.Attester.Count() != 1 || g.payments.Load() != 1 {
			t.Fatalf("attested batch: %d attestations, %d payments", g.Attester.Count(), g.payments.Load())
		}
		// A batch of a payment (operation) and a reset (connection): one
		// attestation, bound to the batch, serves both rules.
		both := `[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"admin.reset","arguments":{}}},` +
			`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"payments.transfer","arguments":{"to":"acme","amount":6}}}]`
		if status, body, _ := s.post(c, both); status != 200 || !strings.Contains(body, "paid 6") || !strings.Contains(body, "reset") {
			t.Fatalf("mixed batch: %d %s", status, body)
		}
		if g.Attester.Count() != 2 {
			t.Fatalf("mixed batch: %d attestations, want 2 in all", g.Attester.Count())
		}
	})
}

// In a batch every matched rule's policy applies: a reset denied by its
// own rule's posture policy is denied even though the payment's rule (the
// outer, operation-mode one) accepts the attestation.
func TestBatchAppliesEveryRule(t *testing.T) {
	deny, _ := posture.ParsePolicy([]byte("tools:\n  deny: [shell]\n"), "yaml")
	tracker, _ := posture.NewTracker()
	tracker.EnableTool(context.Background(), posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))})
	rules := defaultRules()
	rules[1].Posture = deny // admin.reset
	g := newGateway(t, gatewayConfig{json: true, rules: rules, harness: []e2e.Option{e2e.WithAttester(softeat.WithPosture(tracker))}})
	c := g.attesting()
	s := g.rawSession(t, c)
	both := `[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"admin.reset","arguments":{}}},` +
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"payments.transfer","arguments":{"to":"acme","amount":6}}}]`
	status, body, _ := s.post(c, both)
	if status != 403 {
		t.Fatalf("batch with a denied reset: %d %s", status, body)
	}
	errs := errorsOf(t, body)
	if len(errs) != 2 || errs[0].Error.Data.Rule != "mcp tools/call admin.reset" || !slices.Equal(errs[0].Error.Data.Violations, []string{"tool:shell forbidden"}) {
		t.Fatalf("refusal: %s", body)
	}
	if g.payments.Load()+g.resets.Load() != 0 {
		t.Fatal("part of a denied batch ran")
	}
	// Alone, the payment passes.
	pay := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"payments.transfer","arguments":{"to":"acme","amount":6}}}`
	if status, body, _ := s.post(c, pay); status != 200 || g.payments.Load() != 1 {
		t.Fatalf("payment: %d %s", status, body)
	}
}

// Notifications are classified like calls: a harmless one passes (202), a
// rule on a notification method demands attestation, and its refusal is
// one JSON-RPC error with id null.
func TestNotification(t *testing.T) {
	rules := append(defaultRules(), mcpattest.Rule{Method: "notifications/roots/list_changed"}, mcpattest.Rule{Method: "notifications/progress"})
	g := newGateway(t, gatewayConfig{rules: rules})
	note := `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`
	plain := g.rawSession(t, g.plain())
	if status, body, _ := plain.post(g.plain(), `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":12345}}`); status != http.StatusAccepted {
		t.Fatalf("harmless notification: %d %s", status, body)
	}
	status, body, _ := plain.post(g.plain(), note)
	if status != 401 {
		t.Fatalf("unattested notification: %d %s", status, body)
	}
	if errs := errorsOf(t, body); len(errs) != 1 || string(errs[0].ID) != "null" || errs[0].Error.Data.Rule != "mcp notifications/roots/list_changed" {
		t.Fatalf("notification refusal: %s", body)
	}
	c := g.attesting()
	s := g.rawSession(t, c)
	if status, body, _ := s.post(c, note); status != http.StatusAccepted || g.Attester.Count() != 1 {
		t.Fatalf("attested notification: %d %s, %d attestations", status, body, g.Attester.Count())
	}
	// The SDK client's own notification goes the same way.
	cs := g.connect(t, g.attesting(), nil)
	before := g.Attester.Count()
	if err := cs.NotifyProgress(context.Background(), &mcp.ProgressNotificationParams{ProgressToken: "t", Progress: 1}); err != nil {
		t.Fatal(err)
	}
	if g.Attester.Count() != before+1 {
		t.Fatal("the SDK client's notification was not attested")
	}
}

// The discovery document lists every rule as a route, named after the
// MCP method and targets it protects.
func TestDiscoveryListsProtectedTools(t *testing.T) {
	g := newGateway(t, gatewayConfig{})
	status, body, _ := e2e.Do(t, g.plain(), "GET", g.URL(middleware.WellKnownPath), "")
	if status != 200 {
		t.Fatalf("discovery: %d", status)
	}
	var d middleware.Discovery
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	got := map[string]middleware.DiscoveryRoute{}
	for _, r := range d.Routes {
		got[r.Pattern] = r
	}
	if len(got) != 3 || got["mcp tools/call payments.*"].Mode != "operation" ||
		got["mcp tools/call admin.reset"].Mode != "connection" || got["mcp tools/call admin.reset"].MaxAge != 60 ||
		got["mcp resources/read secrets://*"].Mode != "connection" {
		t.Fatalf("routes %+v", d.Routes)
	}
}

// Session ids are not attestation: a connection-mode verdict belongs to
// the TLS connection it was made on, and another connection that presents
// the same Mcp-Session-Id is challenged.
func TestSessionIDIsNoVerdict(t *testing.T) {
	g := newGateway(t, gatewayConfig{json: true})
	c := g.attesting()
	s := g.rawSession(t, c)
	reset := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"admin.reset","arguments":{}}}`
	if status, body, _ := s.post(c, reset); status != 200 || g.resets.Load() != 1 {
		t.Fatalf("attested reset: %d %s", status, body)
	}
	// Another connection, the same session id.
	if status, body, _ := s.post(g.plain(), reset); status != 401 || g.resets.Load() != 1 {
		t.Fatalf("reset with a borrowed session id: %d %s", status, body)
	}
	// The DELETE that ends the session and the SSE GET pass untouched.
	req, _ := http.NewRequest("DELETE", g.URL("/mcp"), nil)
	req.Header.Set("Mcp-Session-Id", s.id)
	resp, err := g.plain().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
}
