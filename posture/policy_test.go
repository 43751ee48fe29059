package posture_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/posture"
)

// The agent has a forbidden tool: the relying party denies it and names the
// tool; once the agent disables the tool and attests again, it passes.
func TestAppraiseForbiddenTool(t *testing.T) {
	e := newEnv(t)
	tr := agentTracker(t) // search and shell enabled
	pol := &posture.Policy{Tools: posture.ToolRules{Deny: []string{"shell"}}}

	err := postauth.AppraisePosture(context.Background(), pol, e.mustAttest(tr))
	pe := wantError(t, err, postauth.CodePolicyDenied, postauth.ReasonPostureDenied)
	if want := []string{"tool:shell forbidden"}; !slices.Equal(pe.Violations, want) {
		t.Fatalf("violations %q, want %q", pe.Violations, want)
	}
	if !errors.Is(err, postauth.ErrPostureDenied) {
		t.Fatalf("cause %v, want ErrDenied", pe.Err)
	}
	if strings.Contains(err.Error(), digest("shell").String()[8:]) {
		t.Fatal("the denial carries a digest from the Evidence")
	}

	if err := tr.DisableTool(context.Background(), "shell"); err != nil {
		t.Fatal(err)
	}
	if err := postauth.AppraisePosture(context.Background(), pol, e.mustAttest(tr)); err != nil {
		t.Fatalf("after disabling the tool: %v", err)
	}
}

// A posture that breaks every rule gets every violation, in a fixed order,
// both from Check on a State and from postauth.AppraisePosture on real
// Evidence.
func TestPolicyListsEveryViolation(t *testing.T) {
	ctx := context.Background()
	pol := &posture.Policy{
		Models:      []posture.ModelRule{{Name: "gpt-x", Digest: digest("weights").String()}},
		Tools:       posture.ToolRules{Allow: []string{"search@" + digest("search").String()}, Deny: []string{"shell"}},
		Templates:   []string{digest("template").String()},
		Permissions: map[string][]string{"payments": {"read"}},
		Flags:       map[string]string{"fips_mode": "on", "region": "eu"},
	}
	tr, _ := posture.NewTracker()
	for _, err := range []error{
		tr.SetModel(ctx, posture.Model{Name: "gpt-y", Digest: digest("other weights")}),
		tr.EnableTool(ctx, posture.Tool{Name: "shell", Digest: digest("shell")}),
		tr.EnableTool(ctx, posture.Tool{Name: "search", Digest: digest("patched search")}),
		tr.EnableTool(ctx, posture.Tool{Name: "browser", Digest: digest("browser")}),
		tr.SetTemplate(ctx, posture.Template{Name: "jailbreak", Digest: digest("other template")}),
		tr.Grant(ctx, "payments", "read", "write", "admin"),
		tr.Grant(ctx, "files", "read"),
		tr.SetFlag(ctx, "fips_mode", "off"),
		tr.SetFlag(ctx, "debug", "on"), // not in the policy: fine
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"model:gpt-y not allowed",
		"template:jailbreak not allowed",
		"tool:browser not allowed",
		"tool:search not allowed",
		"tool:shell forbidden",
		"permission:files not allowed",
		`permission:payments scope "admin" exceeds ceiling`,
		`permission:payments scope "write" exceeds ceiling`,
		`flag:fips_mode want "on" got "off"`,
		`flag:region want "eu" unset`,
	}
	if got := violationStrings(pol.Check(tr.State())); !slices.Equal(got, want) {
		t.Fatalf("Check:\n got %q\nwant %q", got, want)
	}
	e := newEnv(t)
	err := postauth.AppraisePosture(ctx, pol, e.mustAttest(tr))
	pe := wantError(t, err, postauth.CodePolicyDenied, postauth.ReasonPostureDenied)
	if !slices.Equal(pe.Violations, want) {
		t.Fatalf("AppraisePosture:\n got %q\nwant %q", pe.Violations, want)
	}
}

func violationStrings(vs []posture.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.String())
	}
	return out
}

// stateOf builds a State with a real Tracker.
func stateOf(t *testing.T, changes ...func(context.Context, *posture.Tracker) error) *posture.State {
	t.Helper()
	tr, err := posture.NewTracker()
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range changes {
		if err := c(context.Background(), tr); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	return tr.State()
}

func model(name, weights string) func(context.Context, *posture.Tracker) error {
	return func(ctx context.Context, tr *posture.Tracker) error {
		return tr.SetModel(ctx, posture.Model{Name: name, Digest: digest(weights)})
	}
}

func tool(name, code string) func(context.Context, *posture.Tracker) error {
	return func(ctx context.Context, tr *posture.Tracker) error {
		return tr.EnableTool(ctx, posture.Tool{Name: name, Digest: digest(code)})
	}
}

func template(name, text string) func(context.Context, *posture.Tracker) error {
	return func(ctx context.Context, tr *posture.Tracker) error {
		return tr.SetTemplate(ctx, posture.Template{Name: name, Digest: digest(text)})
	}
}

func grant(name string, scopes ...string) func(context.Context, *posture.Tracker) error {
	return func(ctx context.Context, tr *posture.Tracker) error { return tr.Grant(ctx, name, scopes...) }
}

func flag(name, value string) func(context.Context, *posture.Tracker) error {
	return func(ctx context.Context, tr *posture.Tracker) error { return tr.SetFlag(ctx, name, value) }
}

func TestPolicyRules(t *testing.T) {
	w := digest("weights").String()
	tpl := digest("template").String()
	yes, no := true, false
	type change = func(context.Context, *posture.Tracker) error
	cases := []struct {
		name    string
		policy  posture.Policy
		noState bool // check "no posture" instead of a State
		invalid bool // Validate refuses the policy; Check still decides
		changes []change
		want    []string
	}{
		// No rules.
		{name: "empty-policy", changes: []change{model("m", "x"), tool("shell", "s")}},
		{name: "empty-policy-no-posture", noState: true},
		{name: "empty-state"},

		// Models.
		{name: "model-digest-only", policy: posture.Policy{Models: []posture.ModelRule{{Digest: w}}},
			changes: []change{model("anything", "weights")}},
		{name: "model-name-and-digest", policy: posture.Policy{Models: []posture.ModelRule{{Name: "gpt-x", Digest: w}}},
			changes: []change{model("gpt-x", "weights")}},
		{name: "model-name-differs", policy: posture.Policy{Models: []posture.ModelRule{{Name: "gpt-x", Digest: w}}},
			changes: []change{model("gpt-z", "weights")}, want: []string{"model:gpt-z not allowed"}},
		{name: "model-digest-differs", policy: posture.Policy{Models: []posture.ModelRule{{Name: "gpt-x", Digest: w}}},
			changes: []change{model("gpt-x", "fine-tuned weights")}, want: []string{"model:gpt-x not allowed"}},
		{name: "model-second-entry", policy: posture.Policy{Models: []posture.ModelRule{{Name: "a", Digest: digest("a").String()}, {Digest: w}}},
			changes: []change{model("b", "weights")}},
		{name: "model-missing", policy: posture.Policy{Models: []posture.ModelRule{{Digest: w}}},
			changes: []change{tool("search", "s")}, want: []string{"model missing"}},

		// Templates.
		{name: "template-allowed", policy: posture.Policy{Templates: []string{tpl}}, changes: []change{template("support", "template")}},
		{name: "template-differs", policy: posture.Policy{Templates: []string{tpl}},
			changes: []change{template("support", "edited template")}, want: []string{"template:support not allowed"}},
		{name: "template-missing", policy: posture.Policy{Templates: []string{tpl}},
			changes: []change{model("m", "x")}, want: []string{"template missing"}},

		// Tools.
		{name: "allow-name-any-digest", policy: posture.Policy{Tools: posture.ToolRules{Allow: []string{"search"}}},
			changes: []change{tool("search", "v7")}},
		{name: "allow-pinned-digest", policy: posture.Policy{Tools: posture.ToolRules{Allow: []string{"search@" + digest("v1").String()}}},
			changes: []change{tool("search", "v1")}},
		{name: "allow-pinned-digest-differs", policy: posture.Policy{Tools: posture.ToolRules{Allow: []string{"search@" + digest("v1").String()}}},
			changes: []change{tool("search", "v2")}, want: []string{"tool:search not allowed"}},
		{name: "allow-unlisted", policy: posture.Policy{Tools: posture.ToolRules{Allow: []string{"search"}}},
			changes: []change{tool("search", "s"), tool("browser", "b")}, want: []string{"tool:browser not allowed"}},
		{name: "deny-wins", policy: posture.Policy{Tools: posture.ToolRules{Allow: []string{"shell"}, Deny: []string{"shell"}}}, invalid: true,
			changes: []change{tool("shell", "s")}, want: []string{"tool:shell forbidden"}},
		{name: "deny-any-digest", policy: posture.Policy{Tools: posture.ToolRules{Deny: []string{"shell"}}},
			changes: []change{tool("shell", "renamed build"), tool("search", "s")}, want: []string{"tool:shell forbidden"}},
		{name: "allow-no-tools", policy: posture.Policy{Tools: posture.ToolRules{Allow: []string{"search"}}},
			changes: []change{model("m", "x")}},
		{name: "disabled-tool-not-checked", policy: posture.Policy{Tools: posture.ToolRules{Deny: []string{"shell"}}},
			changes: []change{tool("shell", "s"), func(ctx context.Context, tr *posture.Tracker) error { return tr.DisableTool(ctx, "shell") }}},

		// Permissions.
		{name: "no-ceiling", policy: posture.Policy{Flags: map[string]string{"x": "1"}},
			changes: []change{flag("x", "1"), grant("root", "everything")}},
		{name: "empty-ceiling", policy: posture.Policy{Permissions: map[string][]string{}},
			changes: []change{grant("payments")}, want: []string{"permission:payments not allowed"}},
		{name: "empty-ceiling-no-grants", policy: posture.Policy{Permissions: map[string][]string{}},
			changes: []change{model("m", "x")}},
		{name: "any-scope", policy: posture.Policy{Permissions: map[string][]string{"tickets": {"*"}}},
			changes: []change{grant("tickets", "read", "write", "close")}},
		{name: "within-ceiling", policy: posture.Policy{Permissions: map[string][]string{"payments": {"read", "write"}}},
			changes: []change{grant("payments", "read")}},
		{name: "no-scopes", policy: posture.Policy{Permissions: map[string][]string{"payments": {}}},
			changes: []change{grant("payments")}},
		{name: "beyond-ceiling", policy: posture.Policy{Permissions: map[string][]string{"payments": {"read"}}},
			changes: []change{grant("payments", "refund", "read", "admin")},
			want:    []string{`permission:payments scope "admin" exceeds ceiling`, `permission:payments scope "refund" exceeds ceiling`}},
		{name: "revoked-not-checked", policy: posture.Policy{Permissions: map[string][]string{}},
			changes: []change{grant("payments", "x"), func(ctx context.Context, tr *posture.Tracker) error { return tr.Revoke(ctx, "payments") }}},

		// Flags.
		{name: "flag-equal", policy: posture.Policy{Flags: map[string]string{"fips_mode": "on"}}, changes: []change{flag("fips_mode", "on")}},
		{name: "flag-differs", policy: posture.Policy{Flags: map[string]string{"fips_mode": "on"}},
			changes: []change{flag("fips_mode", "ON")}, want: []string{`flag:fips_mode want "on" got "ON"`}},
		{name: "flag-unset", policy: posture.Policy{Flags: map[string]string{"fips_mode": "on"}},
			changes: []change{flag("other", "on")}, want: []string{`flag:fips_mode want "on" unset`}},
		{name: "flag-empty-value", policy: posture.Policy{Flags: map[string]string{"proxy": ""}},
			changes: []change{flag("proxy", "")}},
		{name: "flag-empty-value-unset", policy: posture.Policy{Flags: map[string]string{"proxy": ""}},
			changes: []change{model("m", "x")}, want: []string{`flag:proxy want "" unset`}},

		// Requiring posture.
		{name: "rules-require-posture", policy: posture.Policy{Tools: posture.ToolRules{Deny: []string{"shell"}}},
			noState: true, want: []string{"posture missing"}},
		{name: "require-explicit-false", policy: posture.Policy{Tools: posture.ToolRules{Deny: []string{"shell"}}, RequirePosture: &no},
			noState: true},
		{name: "require-false-still-checks", policy: posture.Policy{Tools: posture.ToolRules{Deny: []string{"shell"}}, RequirePosture: &no},
			changes: []change{tool("shell", "s")}, want: []string{"tool:shell forbidden"}},
		{name: "require-explicit-true", policy: posture.Policy{RequirePosture: &yes}, noState: true, want: []string{"posture missing"}},
		{name: "empty-ceiling-requires", policy: posture.Policy{Permissions: map[string][]string{}}, noState: true, want: []string{"posture missing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.policy.Validate(); (err != nil) != tc.invalid {
				t.Fatalf("Validate = %v, want an error: %v", err, tc.invalid)
			}
			var st *posture.State
			if !tc.noState {
				st = stateOf(t, tc.changes...)
			}
			if got := violationStrings(tc.policy.Check(st)); !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// A Result without posture: denied when the policy requires posture.
func TestAppraiseWithoutPosture(t *testing.T) {
	e := newEnv(t)
	res := e.mustAttest(nil)
	ctx := context.Background()
	deny := &posture.Policy{Tools: posture.ToolRules{Deny: []string{"shell"}}}
	pe := wantError(t, postauth.AppraisePosture(ctx, deny, res), postauth.CodePolicyDenied, postauth.ReasonPostureDenied)
	if !slices.Equal(pe.Violations, []string{"posture missing"}) {
		t.Fatalf("violations %q", pe.Violations)
	}
	no := false
	optional := &posture.Policy{Tools: posture.ToolRules{Deny: []string{"shell"}}, RequirePosture: &no}
	if err := postauth.AppraisePosture(ctx, optional, res); err != nil {
		t.Fatalf("posture optional: %v", err)
	}
	// A nil policy (an ignored LoadPolicy error) denies: it fails closed.
	var none *posture.Policy
	postauthtest.WantError(t, postauth.AppraisePosture(ctx, none, res), postauth.CodeUnavailable, postauth.ReasonPolicyInvalid)
	if err := postauth.AppraisePosture(ctx, &posture.Policy{}, res); err != nil {
		t.Fatalf("empty policy: %v", err)
	}
}

func TestAppraiseEdgeCases(t *testing.T) {
	e := newEnv(t)
	res := e.mustAttest(agentTracker(t))
	pol := &posture.Policy{Tools: posture.ToolRules{Deny: []string{"browser"}}}
	if err := postauth.AppraisePosture(context.Background(), pol, res); err != nil {
		t.Fatalf("passing posture: %v", err)
	}
	postauthtest.WantError(t, postauth.AppraisePosture(context.Background(), pol, nil), postauth.CodeRequired, postauth.ReasonNoAttestation)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := postauth.AppraisePosture(ctx, pol, res); postauth.CodeOf(err) != postauth.CodeCanceled {
		t.Fatalf("cancelled context: %v", err)
	}
}

// A policy with a broken entry never lets anything through: Evaluate and
// postauth.AppraisePosture refuse to decide, and Check treats the entry as
// matching nothing.
func TestInvalidPolicyFailsClosed(t *testing.T) {
	e := newEnv(t)
	tr := agentTracker(t) // model gpt-x with digest("weights"), tools search and shell
	res := e.mustAttest(tr)
	bad := &posture.Policy{Models: []posture.ModelRule{{Name: "gpt-x", Digest: "sha-256:" + digest("weights").String()[8:72]}}}
	if err := bad.Validate(); err != nil {
		t.Fatalf("control policy invalid: %v", err)
	}
	if err := postauth.AppraisePosture(context.Background(), bad, res); err != nil {
		t.Fatalf("control policy denies: %v", err)
	}
	if vs, err := bad.Evaluate(tr.State()); err != nil || len(vs) != 0 {
		t.Fatalf("control policy: Evaluate %v, %v", vs, err)
	}
	bad.Models[0].Digest = "sha-265:" + digest("weights").String()[8:] // typo in the algorithm
	if vs, err := bad.Evaluate(tr.State()); err == nil || vs != nil || !strings.Contains(err.Error(), `models[0].digest`) {
		t.Fatalf("Evaluate with a broken policy: %v, %v", vs, err)
	}
	var none *posture.Policy
	if _, err := none.Evaluate(tr.State()); err == nil {
		t.Fatal("Evaluate with a nil policy")
	}
	pe := wantError(t, postauth.AppraisePosture(context.Background(), bad, res), postauth.CodeUnavailable, postauth.ReasonPolicyInvalid)
	if !strings.Contains(pe.Err.Error(), `models[0].digest`) || !strings.Contains(pe.Err.Error(), `unknown algorithm "sha-265"`) {
		t.Fatalf("unclear error: %v", pe.Err)
	}
	if got := violationStrings(bad.Check(tr.State())); !slices.Equal(got, []string{"model:gpt-x not allowed"}) {
		t.Fatalf("Check with a broken model entry: %q", got)
	}
	brokenAllow := &posture.Policy{Tools: posture.ToolRules{Allow: []string{"search@sha-256:00", "shell"}}}
	if got := violationStrings(brokenAllow.Check(tr.State())); !slices.Equal(got, []string{"tool:search not allowed"}) {
		t.Fatalf("Check with a broken allow entry: %q", got)
	}
}

// The example policy files in testdata (shown in docs/posture.md) say the
// same thing in JSON and YAML.
func TestLoadPolicyExamples(t *testing.T) {
	yes := true
	want := &posture.Policy{
		RequirePosture: &yes,
		Models: []posture.ModelRule{
			{Name: "gpt-x", Digest: "sha-256:9a129038d9a00aed0cf6a7ea059ca50a813449061ab87848cf1a13eafdf33b2c"},
			{Digest: "sha-384:9b84c66bd1e81d354f1128fd2dc4ad56396b39136899fcd031bcd23c090c71e4f993a9d3d198944d1079d450ef25c8da"},
		},
		Tools: posture.ToolRules{
			Allow: []string{"search", "calculator@sha-256:311f38b7836c4228463d6464f854761b7cc8c6071b5f9731b6377df5d7d0ea89"},
			Deny:  []string{"shell", "browser"},
		},
		Templates:   []string{"sha-256:5cde0f1298f41f7d1c8b907a36992a7a513225a2615bd6e307bf1a9149b06b40"},
		Permissions: map[string][]string{"payments": {"read", "write"}, "tickets": {"*"}},
		Flags:       map[string]string{"fips_mode": "on"},
	}
	for _, name := range []string{"policy.yaml", "policy.json"} {
		t.Run(name, func(t *testing.T) {
			p, err := posture.LoadPolicy(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p, want) {
				t.Fatalf("got %+v\nwant %+v", p, want)
			}
		})
	}
	// The example admits the agent once its shell is off.
	tr := agentTracker(t)
	ctx := context.Background()
	if got := violationStrings(want.Check(tr.State())); !slices.Equal(got, []string{"tool:shell forbidden"}) {
		t.Fatalf("example policy on the agent: %q", got)
	}
	_ = tr.DisableTool(ctx, "shell")
	if got := want.Check(tr.State()); got != nil {
		t.Fatalf("example policy after disabling the shell: %q", violationStrings(got))
	}
}

func TestParsePolicyErrors(t *testing.T) {
	d := digest("x").String()
	cases := []struct {
		name, format, doc, want string
	}{
		{"json-unknown-field", "json", `{"tool": {"deny": ["shell"]}}`, `unknown field "tool"`},
		{"json-unknown-nested", "json", `{"tools": {"forbid": ["shell"]}}`, `unknown field "forbid"`},
		{"json-duplicate-key", "json", `{"tools": {"deny": ["shell"], "deny": []}}`, `duplicate key "deny"`},
		{"json-duplicate-case", "json", `{"tools": {"deny": ["shell"], "Deny": []}}`, `duplicate key "Deny"`},
		{"json-duplicate-fold", "json", `{"tools": {"deny": ["shell"]}, "toolſ": {}}`, `duplicate key "toolſ"`}, // ſ folds like s, as encoding/json matches it
		{"json-duplicate-top", "json", `{"flags": {}, "flags": {}}`, `duplicate key "flags"`},
		{"json-duplicate-map-key", "json", `{"permissions": {"p": ["a"], "p": ["*"]}}`, `duplicate key "p"`},
		{"json-duplicate-model-field", "json", `{"models": [{"digest": "` + d + `", "DIGEST": "` + d + `"}]}`, `duplicate key "DIGEST"`},
		{"json-duplicate-flag", "json", `{"flags": {"a": "1", "b": "2", "a": "3"}}`, `duplicate key "a"`},
		{"json-trailing", "json", `{} {}`, "data after the policy"},
		{"json-trailing-garbage", "json", `{}x`, "data after the policy"},
		{"json-array", "json", `[]`, "must be a JSON object"},
		{"json-null", "json", `null`, "must be a JSON object"},
		{"json-flag-bool", "json", `{"flags": {"fips_mode": true}}`, "flags: want a string, got a boolean"},
		{"json-truncated", "json", `{"tools": {`, "EOF"},
		{"yaml-unknown-field", "yaml", "tool:\n  deny: [shell]\n", "field tool not found"},
		{"yaml-unknown-nested", "yaml", "models:\n  - digest: " + d + "\n    version: 1\n", "field version not found"},
		{"yaml-duplicate-key", "yaml", "tools:\n  deny: [shell]\n  deny: []\n", `mapping key "deny" already defined`},
		{"yaml-two-documents", "yaml", "flags: {}\n---\nflags: {}\n", "more than one document"},
		{"yaml-scalar", "yaml", "shell\n", "must be a mapping"},
		{"yaml-list", "yaml", "- a\n", "must be a mapping"},
		{"yaml-null", "yaml", "~\n", "must be a mapping"},
		{"yaml-syntax", "yaml", "tools: [\n", "policy YAML"},
		{"empty", "yaml", "  \n", "empty policy"},
		{"empty-json", "json", "", "empty policy"},
		{"comment-only", "yaml", "# nothing\n", "must be a mapping"},
		{"unknown-format", "toml", `a = 1`, `unknown policy format "toml"`},
		{"too-large", "json", `{"flags": {"a": "` + strings.Repeat("x", posture.MaxPolicyLen) + `"}}`, "larger than"},
		{"digest-alg", "yaml", "templates: [md5:" + strings.Repeat("ab", 16) + "]\n", `templates[0]: digest "md5:`},
		{"digest-length", "yaml", "templates: [sha-256:abcd]\n", "needs 64 hex digits"},
		{"digest-sha384-length", "yaml", "models: [{digest: \"sha-384:" + d[8:] + "\"}]\n", "sha-384 needs 96 hex digits"},
		{"digest-hex", "yaml", "templates: [sha-256:" + strings.Repeat("g", 64) + "]\n", "needs 64 hex digits"},
		{"digest-no-alg", "json", `{"templates": ["` + d[8:] + `"]}`, "want <alg>:<hex>"},
		{"model-no-digest", "yaml", "models: [{name: gpt-x}]\n", "models[0].digest: missing"},
		{"tool-bad-pin", "yaml", "tools: {allow: [\"search@sha-256:00\"]}\n", "tools.allow[0]"},
		{"tool-empty-name", "yaml", "tools: {allow: [\"@" + d + "\"]}\n", "tools.allow[0]: empty tool name"},
		{"deny-with-digest", "yaml", "tools: {deny: [\"shell@" + d + "\"]}\n", "deny takes tool names only"},
		{"allowed-and-denied", "yaml", "tools: {allow: [search, shell], deny: [shell]}\n", `tools.allow[1]: tool "shell" is also denied`},
		{"allowed-pinned-and-denied", "yaml", "tools: {allow: [\"shell@" + d + "\"], deny: [shell]}\n", `tools.allow[0]: tool "shell" is also denied`},
		{"deny-empty", "json", `{"tools": {"deny": [""]}}`, "tools.deny[0]: empty tool name"},
		{"name-too-long", "json", `{"tools": {"deny": ["` + strings.Repeat("n", posture.MaxNameLen+1) + `"]}}`, "longer than 128 bytes"},
		{"name-control-char", "json", `{"tools": {"deny": ["sh\u0007ell"]}}`, "non-printable"},
		{"permission-empty-scope", "yaml", "permissions: {payments: [\"\"]}\n", `permissions["payments"][0]: empty scope`},
		{"flag-newline", "json", `{"flags": {"mode": "a\nb"}}`, `flags["mode"]: flag value has non-printable`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := posture.ParsePolicy([]byte(tc.doc), tc.format)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// Every problem is reported, not only the first.
	_, err := posture.ParsePolicy([]byte(`{"templates": ["sha-1:00", "sha-256:zz"], "tools": {"deny": [""]}}`), "json")
	for _, want := range []string{"templates[0]", "templates[1]", "tools.deny[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestParsePolicyAccepts(t *testing.T) {
	cases := []struct{ name, format, doc string }{
		{"json-empty-object", "json", `{}`},
		{"yaml-empty-mapping", "yaml", "{}\n"},
		{"yaml-format-yml", "yml", "flags: {a: b}\n"},
		{"format-case", "JSON", `{}`},
		{"yaml-unquoted-flag", "yaml", "flags: {fips_mode: on, debug: true, level: 3}\n"},
		{"json-whitespace", "json", " \n{ \"flags\" : { } }\n\t"},
		{"json-bom-free-unicode", "json", `{"tools": {"deny": ["outil-é"]}}`},
		{"json-map-keys-case-sensitive", "json", `{"flags": {"Mode": "a", "mode": "b"}, "permissions": {"P": [], "p": []}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := posture.ParsePolicy([]byte(tc.doc), tc.format); err != nil {
				t.Fatal(err)
			}
		})
	}
	// YAML keeps unquoted scalars' text for string fields.
	p, _ := posture.ParsePolicy([]byte("flags: {fips_mode: on, debug: true, level: 3}\n"), "yaml")
	if want := map[string]string{"fips_mode": "on", "debug": "true", "level": "3"}; !reflect.DeepEqual(p.Flags, want) {
		t.Fatalf("flags %q", p.Flags)
	}
	// "permissions: {}" is an empty ceiling, an absent key none.
	p, _ = posture.ParsePolicy([]byte("permissions: {}\n"), "yaml")
	if p.Permissions == nil {
		t.Fatal("permissions: {} parsed as no ceiling")
	}
	p, _ = posture.ParsePolicy([]byte(`{"permissions": {}}`), "json")
	if p.Permissions == nil {
		t.Fatal(`"permissions": {} parsed as no ceiling`)
	}
	p, _ = posture.ParsePolicy([]byte("flags: {a: b}\n"), "yaml")
	if p.Permissions != nil {
		t.Fatal("absent permissions parsed as a ceiling")
	}
}

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	yamlDoc := "tools: {deny: [shell]}\n"
	jsonDoc := `{"tools": {"deny": ["shell"]}}`
	for _, path := range []string{write("p.yaml", yamlDoc), write("p.yml", yamlDoc), write("p.json", jsonDoc), write("P.JSON", jsonDoc)} {
		p, err := posture.LoadPolicy(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !slices.Equal(p.Tools.Deny, []string{"shell"}) {
			t.Fatalf("%s: %+v", path, p)
		}
	}
	for path, want := range map[string]string{
		write("p.toml", "x = 1"):           "unknown extension",
		write("p", jsonDoc):                "unknown extension",
		write("yaml-in.json", yamlDoc):     "policy JSON",
		filepath.Join(dir, "missing.yaml"): "no such file",
		write("big.yaml", "flags: {a: \""+strings.Repeat("x", posture.MaxPolicyLen)+"\"}\n"): "larger than",
		write("bad.yaml", "templates: [sha-256:00]\n"):                                       "bad.yaml",
	} {
		_, err := posture.LoadPolicy(path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v does not say %q", filepath.Base(path), err, want)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "d.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := posture.LoadPolicy(filepath.Join(dir, "d.yaml")); err == nil {
		t.Error("loaded a directory")
	}
}

func TestViolationString(t *testing.T) {
	for v, want := range map[posture.Violation]string{
		{Item: "tool", Name: "shell", Problem: "forbidden"}:                     "tool:shell forbidden",
		{Item: "tool", Name: "mcp:github/issues@v2", Problem: "not allowed"}:    "tool:mcp:github/issues@v2 not allowed",
		{Item: "tool", Name: "my tool", Problem: "forbidden"}:                   `tool:"my tool" forbidden`,
		{Item: "tool", Name: `a"b`, Problem: "forbidden"}:                       `tool:"a\"b" forbidden`,
		{Item: "model", Problem: "missing"}:                                     "model missing",
		{Item: "permission", Name: "pay", Problem: `scope "x" exceeds ceiling`}: `permission:pay scope "x" exceeds ceiling`,
	} {
		if got := v.String(); got != want {
			t.Errorf("%+v: %s, want %s", v, got, want)
		}
	}
}
