package mcpattest_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/mcpattest"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

const rulesYAML = `
rules:
  - tools: ["payments.*"]
    mode: operation
    posture:
      tools:
        deny: [shell]
  - tools: [admin.reset]
    max_age: 30s
    pre_arm: true
  - uris: ["secrets://*"]
  - method: notifications/roots/list_changed
    name: roots
`

const rulesJSON = `{"rules":[
  {"tools":["payments.*"],"mode":"operation","posture":{"tools":{"deny":["shell"]}}},
  {"tools":["admin.reset"],"max_age":"30s","pre_arm":true},
  {"uris":["secrets://*"]},
  {"method":"notifications/roots/list_changed","name":"roots"}
]}`

func TestParseRules(t *testing.T) {
	for format, doc := range map[string]string{"yaml": rulesYAML, "json": rulesJSON} {
		rules, err := mcpattest.ParseRules([]byte(doc), format)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if len(rules) != 4 {
			t.Fatalf("%s: %d rules", format, len(rules))
		}
		r := rules[0]
		if r.Method != "tools/call" || r.Tools[0] != "payments.*" || r.Mode != middleware.ModeOperation || r.Posture == nil || r.Posture.Tools.Deny[0] != "shell" {
			t.Fatalf("%s: rule 0 %+v", format, r)
		}
		if r := rules[1]; r.Mode != middleware.ModeConnection || r.MaxAge != 30*time.Second || !r.PreArm {
			t.Fatalf("%s: rule 1 %+v", format, r)
		}
		if r := rules[2]; r.Method != "resources/read" || r.URIs[0] != "secrets://*" {
			t.Fatalf("%s: rule 2 %+v", format, r)
		}
		if r := rules[3]; r.Method != "notifications/roots/list_changed" || r.Name != "roots" {
			t.Fatalf("%s: rule 3 %+v", format, r)
		}
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(path, []byte(rulesYAML), 0o600)
	if rules, err := mcpattest.LoadRules(path); err != nil || len(rules) != 4 {
		t.Fatalf("LoadRules: %v", err)
	}
}

func TestParseRulesRefuses(t *testing.T) {
	for _, tc := range []struct{ name, format, doc, want string }{
		{"unknown key", "yaml", "rules:\n  - tools: [x]\n    mdoe: operation\n", "mdoe"},
		{"unknown key JSON", "json", `{"rules":[{"tools":["x"],"mdoe":"operation"}]}`, "mdoe"},
		{"duplicate key JSON", "json", `{"rules":[{"tools":["x"],"mode":"operation","mode":"connection"}]}`, "duplicate"},
		{"keys differing in case JSON", "json", `{"rules":[{"tools":["x"],"Tools":["y"]}]}`, "duplicate"},
		{"duplicate key YAML", "yaml", "rules:\n  - tools: [x]\n    mode: operation\n    mode: connection\n", "already defined"},
		{"trailing JSON", "json", `{"rules":[{"tools":["x"]}]} {}`, "JSON"},
		{"two YAML documents", "yaml", "rules:\n  - tools: [x]\n---\nrules: []\n", "more than one"},
		{"no rules", "yaml", "rules: []\n", "no rules"},
		{"bad mode", "yaml", "rules:\n  - tools: [x]\n    mode: sometimes\n", "mode"},
		{"max age in operation mode", "yaml", "rules:\n  - tools: [x]\n    mode: operation\n    max_age: 1m\n", "connection mode only"},
		{"bad max age", "yaml", "rules:\n  - tools: [x]\n    max_age: soon\n", "max_age"},
		{"tools and URIs", "yaml", "rules:\n  - tools: [x]\n    uris: [y]\n", "not both"},
		{"tools on another method", "yaml", "rules:\n  - method: prompts/get\n    tools: [x]\n", "tools/call"},
		{"no match", "yaml", "rules:\n  - mode: operation\n", "needs a method"},
		{"empty pattern", "yaml", "rules:\n  - tools: ['']\n", "empty pattern"},
		{"bad posture", "yaml", "rules:\n  - tools: [x]\n    posture:\n      tools:\n        deny: [shell]\n        dney: [x]\n", "posture"},
		{"bad posture digest", "json", `{"rules":[{"tools":["x"],"posture":{"models":[{"digest":"sha-256:00"}]}}]}`, "posture"},
		{"unknown format", "toml", "x", "format"},
		{"empty", "yaml", " ", "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mcpattest.ParseRules([]byte(tc.doc), tc.format)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestParseRulesPostureKeys: a rule's posture policy is checked as
// posture.ParsePolicy checks one: permission names are case-sensitive,
// field names are not.
func TestParseRulesPostureKeys(t *testing.T) {
	rules, err := mcpattest.ParseRules([]byte(`{"rules":[{"tools":["x"],"posture":{"permissions":{"Pay":["*"],"pay":[]}}}]}`), "json")
	if err != nil {
		t.Fatal(err)
	}
	if p := rules[0].Posture.Permissions; len(p) != 2 {
		t.Fatalf("permissions %v", p)
	}
	for _, doc := range []string{
		`{"rules":[{"tools":["x"],"posture":{"tools":{"deny":["shell"],"Deny":[]}}}]}`,
		`{"rules":[{"tools":["x"],"posture":{"tools":{"deny":["shell"]},"toolſ":{}}}]}`,
		`{"rules":[{"tools":["x"],"posture":{"permissions":{"pay":["*"],"pay":[]}}}]}`,
	} {
		if _, err := mcpattest.ParseRules([]byte(doc), "json"); err == nil || !strings.Contains(err.Error(), "duplicate key") {
			t.Errorf("%s: error %v", doc, err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	_, v := postauthtest.Software(t)
	g, err := middleware.New(v)
	if err != nil {
		t.Fatal(err)
	}
	next := http.NotFoundHandler()
	if _, err := mcpattest.New(nil, next, nil); err == nil {
		t.Error("nil Guard accepted")
	}
	if _, err := mcpattest.New(g, nil, nil); err == nil {
		t.Error("nil handler accepted")
	}
	if _, err := mcpattest.New(g, next, []mcpattest.Rule{{Mode: middleware.ModeOperation}}); err == nil {
		t.Error("a rule without a match accepted")
	}
	if _, err := mcpattest.New(g, next, []mcpattest.Rule{{Tools: []string{"a"}}, {Tools: []string{"a"}, MaxAge: time.Second}}); err == nil {
		t.Error("two rules of one name accepted")
	}
	if _, err := mcpattest.New(g, next, []mcpattest.Rule{{Tools: []string{"a"}, Mode: 7}}); err == nil {
		t.Error("an unknown mode accepted")
	}
	if _, err := mcpattest.New(g, next, []mcpattest.Rule{{Tools: []string{"a"}}, {Tools: []string{"a"}, Name: "other"}}); err != nil {
		t.Errorf("named rules: %v", err)
	}
}

// Bodies over the limit get 413 (with a length announced or not), and
// bodies without a single reading 400, both as JSON-RPC errors; the MCP
// handler never sees them.
func TestBodyLimitsAndUnreadableBodies(t *testing.T) {
	g := newGateway(t, gatewayConfig{json: true, opts: []mcpattest.Option{mcpattest.WithMaxBody(4 << 10)}})
	s := g.rawSession(t, g.plain())
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"` + strings.Repeat("x", 5<<10) + `"}}}`
	status, body, _ := s.post(g.plain(), big)
	if errs := errorsOf(t, body); status != 413 || errs[0].Error.Code != mcpattest.CodeNotAttestable || errs[0].Error.Data.Reason != postauth.ReasonBodyTooLarge {
		t.Fatalf("announced large body: %d %s", status, body)
	}
	// Chunked: no Content-Length to refuse early.
	req, _ := http.NewRequest("POST", g.URL("/mcp"), struct{ *strings.Reader }{strings.NewReader(big)})
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", s.id)
	resp, err := g.plain().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked large body: %d", resp.StatusCode)
	}
	ambiguous := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","Name":"payments.transfer","arguments":{}}}`
	status, body, _ = s.post(g.plain(), ambiguous)
	if errs := errorsOf(t, body); status != 400 || errs[0].Error.Code != mcpattest.CodeNotAttestable ||
		errs[0].Error.Data.Reason != postauth.ReasonBadBody || string(errs[0].ID) != "null" {
		t.Fatalf("ambiguous body: %d %s", status, body)
	}
	if g.searches.Load()+g.payments.Load() != 0 {
		t.Fatal("a refused body reached a tool")
	}
}
