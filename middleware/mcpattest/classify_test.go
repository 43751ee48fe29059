package mcpattest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	sjson "github.com/segmentio/encoding/json"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/reattest/reattest/middleware"
)

// testRules compiles rules as New does, without a Guard.
func testRules(t testing.TB, rules ...Rule) []*rule {
	t.Helper()
	var out []*rule
	for i, r := range rules {
		r, err := r.check()
		if err != nil {
			t.Fatal(err)
		}
		rl := &rule{Rule: r, index: i, targets: append(r.Tools, r.URIs...), name: r.Method}
		switch {
		case len(r.Tools) > 0:
			rl.key = "name"
		case len(r.URIs) > 0:
			rl.key = "uri"
		}
		rl.route = middleware.Route{Mode: r.Mode, MaxAge: r.MaxAge}
		if rl.route.MaxAge == 0 {
			rl.route.MaxAge = middleware.DefaultMaxAge
		}
		out = append(out, rl)
	}
	return out
}

var classifyRules = []Rule{
	{Tools: []string{"payments.*"}, Mode: middleware.ModeOperation},
	{Tools: []string{"admin.reset"}, MaxAge: time.Minute},
	{URIs: []string{"secrets://*"}},
	{Method: "notifications/roots/list_changed"},
}

func call(method, params string) string {
	if params == "" {
		return `{"jsonrpc":"2.0","id":1,"method":"` + method + `"}`
	}
	return `{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":` + params + `}`
}

func tool(name string) string { return call("tools/call", `{"name":"`+name+`","arguments":{}}`) }

func TestClassify(t *testing.T) {
	rules := testRules(t, classifyRules...)
	for _, tc := range []struct {
		name string
		body string
		want []int // indexes of the matched rules, strictest first
	}{
		// single messages
		{"harmless tool", tool("search"), nil},
		{"pattern", tool("payments.transfer"), []int{0}},
		{"pattern, deeper", tool("payments.eu.sepa"), []int{0}},
		{"exact", tool("admin.reset"), []int{1}},
		{"exact, not a prefix", tool("admin.reset2"), nil},
		{"case-sensitive", tool("Payments.transfer"), nil},
		{"escaped name", call("tools/call", `{"name":"payments\u002etransfer"}`), []int{0}},
		{"escaped method", `{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"payments.x"}}`, []int{0}},
		{"protected resource", call("resources/read", `{"uri":"secrets://db"}`), []int{2}},
		{"other resource", call("resources/read", `{"uri":"docs://readme"}`), nil},
		{"tools/list", call("tools/list", ""), nil},
		{"notification rule", `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`, []int{3}},
		{"harmless notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil},
		{"response", `{"jsonrpc":"2.0","id":1,"result":{"name":"payments.x"}}`, nil},
		{"key order", `{"params":{"arguments":{"name":"search"},"name":"payments.x"},"method":"tools/call","id":1,"jsonrpc":"2.0"}`, []int{0}},
		{"whitespace", " \n\t" + tool("payments.x") + "\r\n ", []int{0}},
		{"name in arguments only", call("tools/call", `{"name":"search","arguments":{"name":"payments.x"}}`), nil},
		// batches
		{"batch with a high-impact call", "[" + tool("search") + "," + tool("payments.x") + "]", []int{0}},
		{"batch, strictest first", "[" + tool("admin.reset") + "," + tool("payments.x") + "," + tool("payments.y") + "]", []int{0, 1}},
		{"harmless batch", "[" + tool("search") + "," + call("tools/list", "") + "]", nil},
		{"batch, high-impact last", "[" + strings.Repeat(tool("search")+",", 50) + call("resources/read", `{"uri":"secrets://x"}`) + "]", []int{2}},
		{"empty batch", "[]", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := classify([]byte(tc.body), rules)
			if err != nil {
				t.Fatalf("classify: %v", err)
			}
			var got []int
			for _, r := range c.rules {
				got = append(got, r.index)
			}
			if !equalInts(got, tc.want) {
				t.Fatalf("rules %v, want %v", got, tc.want)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Bodies that decoders might read differently, or whose target cannot be
// read, are refused: never passed on as harmless.
func TestClassifyRefusesAmbiguous(t *testing.T) {
	rules := testRules(t, classifyRules...)
	for _, tc := range []struct{ name, body string }{
		{"not JSON", `tools/call payments.x`},
		{"empty", ``},
		{"trailing data", tool("search") + tool("payments.x")},
		{"trailing garbage", tool("search") + ` x`},
		{"invalid UTF-8", call("tools/call", "{\"name\":\"payments.x\xff\"}")},
		{"lone surrogate in the name", call("tools/call", `{"name":"admin.reset\ud800"}`)},
		{"lone surrogate in the method", `{"jsonrpc":"2.0","id":1,"method":"tools/call\udfff","params":{"name":"payments.x"}}`},
		{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"payments.x"}}`},
		{"method in another case", `{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"payments.x"}}`},
		{"params in another case", `{"jsonrpc":"2.0","id":1,"method":"tools/call","PARAMS":{"name":"payments.x"},"params":{"name":"search"}}`},
		{"duplicate name", call("tools/call", `{"name":"search","name":"payments.x"}`)},
		{"name in another case", call("tools/call", `{"name":"search","Name":"payments.x"}`)},
		{"name in another case, alone", call("tools/call", `{"NAME":"payments.x"}`)},
		{"params, Unicode case fold", `{"jsonrpc":"2.0","id":1,"method":"tools/call","paramſ":{"name":"payments.x"},"params":{"name":"search"}}`},
		{"keys equal but for case", call("tools/call", `{"name":"search","arguments":{},"ARGUMENTS":{}}`)},
		{"uri in another case", call("resources/read", `{"URI":"secrets://x"}`)},
		{"method not a string", `{"jsonrpc":"2.0","id":1,"method":["tools/call"],"params":{"name":"payments.x"}}`},
		{"name not a string", call("tools/call", `{"name":["payments.x"]}`)},
		{"no name", call("tools/call", `{"arguments":{}}`)},
		{"no params", call("tools/call", "")},
		{"params not an object", call("tools/call", `"payments.x"`)},
		{"uri missing", call("resources/read", `{"url":"secrets://x"}`)},
		{"batch element not an object", `[` + tool("search") + `,"x"]`},
		{"top level not an object", `"tools/call"`},
		{"too many keys", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"` + manyKeys(70) + `}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := classify([]byte(tc.body), rules); err == nil {
				t.Fatalf("classified as %d rules, want a refusal", len(c.rules))
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(`,"k` + strings.Repeat("x", i) + `":1`)
	}
	return b.String()
}

// Targets are read only where a rule needs them: a tools/list or an
// unrelated method with odd params is not refused.
func TestClassifyReadsTargetsOnlyWhenNeeded(t *testing.T) {
	rules := testRules(t, Rule{URIs: []string{"secrets://*"}})
	if c, err := classify([]byte(call("tools/call", `{"name":5}`)), rules); err != nil || len(c.rules) != 0 {
		t.Fatalf("tools/call without a URI rule: %v", err)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"payments.*", "payments.transfer", true},
		{"payments.*", "payments.", true},
		{"payments.*", "payments", false},
		{"payments.*", "xpayments.a", false},
		{"*", "", true},
		{"*", "anything/at all", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"*.transfer", "payments.transfer", true},
		{"file:///secrets/*", "file:///secrets/a/b", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"a?c", "abc", false}, // no other wildcards
	} {
		if got := match(tc.p, tc.s); got != tc.want {
			t.Errorf("match(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
	// Linear-ish even on adversarial input.
	start := time.Now()
	if match(strings.Repeat("*a", 500)+"b", strings.Repeat("a", 100_000)) {
		t.Fatal("adversarial pattern matched")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("adversarial match took %v", d)
	}
}

// sdkRead reads body as the MCP SDK v1.8.0 does (mcp.readBatch,
// jsonrpc.DecodeMessage, params decoded with segmentio/encoding with
// exact-case fields), returning each request's method and, for the
// methods with targets, its target.
func sdkRead(body []byte) (methods, targets []string, ok bool) {
	var msgs [][]byte
	var raws []json.RawMessage
	if decodeSDK(body, &raws) == nil {
		for _, r := range raws {
			msgs = append(msgs, r)
		}
	} else {
		msgs = [][]byte{body}
	}
	for _, m := range msgs {
		msg, err := jsonrpc.DecodeMessage(m)
		if err != nil {
			return nil, nil, false
		}
		req, isReq := msg.(*jsonrpc.Request)
		if !isReq {
			continue
		}
		var p struct {
			Name string `json:"name"`
			URI  string `json:"uri"`
		}
		target := ""
		if len(req.Params) > 0 && decodeSDK(req.Params, &p) == nil {
			switch req.Method {
			case MethodToolsCall:
				target = p.Name
			case MethodResourcesRead:
				target = p.URI
			}
		}
		methods = append(methods, req.Method)
		targets = append(targets, target)
	}
	return methods, targets, true
}

func decodeSDK(b []byte, v any) error {
	dec := sjson.NewDecoder(bytes.NewReader(b))
	dec.DontMatchCaseInsensitiveStructFields()
	return dec.Decode(v)
}

// FuzzClassify: any body, no panic, bounded work; and whatever the
// classifier accepts, the SDK reads the same way: a high-impact request
// that the SDK would run is never classified as harmless.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		tool("search"), tool("payments.transfer"), tool("admin.reset"),
		call("resources/read", `{"uri":"secrets://db"}`),
		"[" + tool("search") + "," + tool("payments.x") + "]",
		`{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		call("tools/call", `{"name":"search","Name":"payments.x"}`),
		call("tools/call", `{"name":"pay\u006dents.x"}`),
		`[]`, `{}`, `[{}]`, `{"method":1}`,
	} {
		f.Add([]byte(s))
	}
	rules := testRules(f, classifyRules...)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 64<<10 {
			return
		}
		c, err := classify(body, rules)
		if err != nil {
			return
		}
		methods, targets, ok := sdkRead(body)
		if !ok {
			return // the SDK refuses the body
		}
		// Every request the SDK reads that a rule covers must have
		// been classified under that rule.
		for i, m := range methods {
			for _, r := range rules {
				if !match(r.Method, m) || (r.key != "" && !matchAny(r.targets, targets[i])) {
					continue
				}
				found := false
				for _, got := range c.rules {
					found = found || got == r
				}
				if !found {
					t.Fatalf("the SDK reads %q %q, which rule %d covers; the classifier missed it in %q", m, targets[i], r.index, body)
				}
			}
		}
	})
}
