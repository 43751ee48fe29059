package mcpattest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/reattest/reattest/internal/strictdoc"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// JSON-RPC methods whose target the rules can name.
const (
	MethodToolsCall     = "tools/call"     // target: params.name, the tool
	MethodResourcesRead = "resources/read" // target: params.uri, the resource
)

// Rule marks JSON-RPC requests to an MCP endpoint as high-impact: plain
// data, like a [middleware.Route] or a [posture.Policy], loadable from YAML
// or JSON with [ParseRules]. The zero value of each field but the match is
// safe: connection freshness with [middleware.DefaultMaxAge], no posture
// policy. Do not modify a Rule after handing it to [New].
//
// A request matches a rule when its method matches Method and, if the
// rule names targets, its target matches one of them. Method and targets
// are exact strings or patterns where "*" stands for any run of characters
// (including none, "/" and "."): "payments.*", "file:///secrets/*", "*".
// Matching is case-sensitive, on the strings as the JSON message carries
// them (escapes decoded), as the MCP SDK matches tool names.
type Rule struct {
	// Name labels the rule's route in logs, observer decisions and the
	// discovery document. Zero means "mcp <method> <targets>", for example
	// "mcp tools/call payments.*" (the prefix is [WithRoutePrefix]'s).
	Name string
	// Method is the JSON-RPC method (or a pattern). Zero means "tools/call"
	// if Tools is set and "resources/read" if URIs is set; one of the
	// three is required.
	Method string
	// Tools restricts a "tools/call" rule to these tool names or patterns
	// (params.name). Empty: every tool.
	Tools []string
	// URIs restricts a "resources/read" rule to these resource URIs or
	// patterns (params.uri). Empty: every resource.
	URIs []string
	// Mode is the freshness mode: [middleware.ModeConnection] (one
	// attestation per connection, reused until MaxAge) or
	// [middleware.ModeOperation] (every request attested, bound to its
	// whole JSON-RPC body).
	Mode middleware.Mode
	// MaxAge bounds a connection-mode verdict. Zero means
	// middleware.DefaultMaxAge.
	MaxAge time.Duration
	// PreArm makes the rule's successful responses carry a fresh
	// Attestation-Request (docs/protocol.md, section 5.4). The reference
	// transport keys what it learns by method and path, and every MCP
	// request is a POST to one endpoint: it spends the pre-armed request on
	// the next POST to the endpoint, whatever it calls (see docs/mcp.md).
	PreArm bool
	// Posture, if set, is the posture policy the attested agent must pass
	// ([middleware.Route.Posture]): a denial names the violations.
	Posture *posture.Policy
	// Appraise, if set, runs on every newly verified Result after Posture
	// ([middleware.Route.Appraise]). Not loadable from a file.
	Appraise func(ctx context.Context, res *postauth.Result) error
}

// rule is a checked Rule with its route and guarded handler.
type rule struct {
	Rule
	index   int
	name    string
	key     string // the params key of the target ("name", "uri"), or "" if the rule names none
	targets []string
	route   middleware.Route
	guarded http.Handler
}

// check validates r and fills in its defaults.
func (r Rule) check() (Rule, error) {
	switch {
	case len(r.Tools) > 0 && len(r.URIs) > 0:
		return r, errors.New("a rule names tools or URIs, not both (use two rules)")
	case r.Method == "" && len(r.Tools) > 0:
		r.Method = MethodToolsCall
	case r.Method == "" && len(r.URIs) > 0:
		r.Method = MethodResourcesRead
	case r.Method == "":
		return r, errors.New("a rule needs a method, tools or URIs")
	}
	if len(r.Tools) > 0 && r.Method != MethodToolsCall {
		return r, fmt.Errorf("tools restrict %q rules only, not %q", MethodToolsCall, r.Method)
	}
	if len(r.URIs) > 0 && r.Method != MethodResourcesRead {
		return r, fmt.Errorf("URIs restrict %q rules only, not %q", MethodResourcesRead, r.Method)
	}
	for _, p := range append(append([]string{r.Method}, r.Tools...), r.URIs...) {
		if err := checkPattern(p); err != nil {
			return r, err
		}
	}
	if r.Mode != middleware.ModeConnection && r.Mode != middleware.ModeOperation {
		return r, fmt.Errorf("unknown mode %d", r.Mode)
	}
	if r.MaxAge < 0 {
		return r, errors.New("negative max age")
	}
	if r.Posture != nil {
		if err := r.Posture.Validate(); err != nil {
			return r, err
		}
	}
	return r, nil
}

// MaxPatternLen bounds a method, tool or URI pattern.
const MaxPatternLen = 1024

func checkPattern(p string) error {
	switch {
	case p == "":
		return errors.New("empty pattern")
	case len(p) > MaxPatternLen:
		return fmt.Errorf("pattern longer than %d bytes", MaxPatternLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("pattern %q is not UTF-8", p)
	case strings.ContainsRune(p, utf8.RuneError):
		return fmt.Errorf("pattern %q contains U+FFFD", p)
	}
	return nil
}

// match reports whether s matches pattern p, where "*" stands for any run
// of characters and everything else is literal. It runs in O(len(p) ×
// len(s)) at worst, without recursion.
func match(p, s string) bool {
	// The classic greedy algorithm with one backtrack point: the last star.
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && p[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchAny reports whether s matches one of patterns.
func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if match(p, s) {
			return true
		}
	}
	return false
}

// MaxRulesLen bounds a rules document.
const MaxRulesLen = 1 << 20

// ruleDoc is the file form of a Rule (docs/mcp.md, section 2).
type ruleDoc struct {
	Name    string          `json:"name" yaml:"name"`
	Method  string          `json:"method" yaml:"method"`
	Tools   []string        `json:"tools" yaml:"tools"`
	URIs    []string        `json:"uris" yaml:"uris"`
	Mode    string          `json:"mode" yaml:"mode"`
	MaxAge  string          `json:"max_age" yaml:"max_age"`
	PreArm  bool            `json:"pre_arm" yaml:"pre_arm"`
	Posture json.RawMessage `json:"posture" yaml:"-"`
	// postureYAML holds the posture policy of a YAML document.
	postureYAML *yaml.Node
}

type rulesDoc struct {
	Rules []ruleDoc `json:"rules" yaml:"rules"`
}

// UnmarshalYAML decodes a rule strictly, keeping its posture policy as a
// node for posture.ParsePolicy.
func (d *ruleDoc) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a rule must be a mapping", n.Line)
	}
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: n.Tag}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "posture" {
			d.postureYAML = n.Content[i+1]
			continue
		}
		rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
	}
	type plain ruleDoc // without this method
	var p plain
	if err := decodeYAMLStrict(rest, &p); err != nil {
		return err
	}
	p.postureYAML = d.postureYAML
	*d = ruleDoc(p)
	return nil
}

func decodeYAMLStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// rulesFile is the strict JSON/YAML form of a rules document.
var rulesFile = strictdoc.Doc{Noun: "rules", Max: MaxRulesLen}

// LoadRules reads a rules file, JSON if its name ends in ".json" and YAML
// if it ends in ".yaml" or ".yml", and parses it like [ParseRules].
func LoadRules(path string) ([]Rule, error) {
	var doc rulesDoc
	if err := rulesFile.Load(path, &doc); err != nil {
		return nil, fmt.Errorf("mcpattest: %w", err)
	}
	rules, err := doc.rules()
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return rules, nil
}

// ParseRules parses a rules document in format "json" or "yaml" (also
// "yml"): an object with one key, "rules", a list of rules (docs/mcp.md,
// section 2). Each rule's "posture" is a posture policy, parsed by
// [posture.ParsePolicy]. Parsing is strict like posture.ParsePolicy's:
// unknown fields, duplicate keys (in JSON, also keys differing only in
// case), trailing data, a second YAML document, nesting more than 16
// levels deep and documents over MaxRulesLen bytes are errors; every rule
// is checked as [New] checks it.
func ParseRules(data []byte, format string) ([]Rule, error) {
	var doc rulesDoc
	if err := rulesFile.Decode(data, format, &doc); err != nil {
		return nil, fmt.Errorf("mcpattest: %w", err)
	}
	return doc.rules()
}

// rules converts and checks the rules of a decoded document.
func (doc rulesDoc) rules() ([]Rule, error) {
	if len(doc.Rules) == 0 {
		return nil, errors.New("mcpattest: no rules")
	}
	rules := make([]Rule, 0, len(doc.Rules))
	for i, d := range doc.Rules {
		r, err := d.rule()
		if err == nil {
			r, err = r.check()
		}
		if err != nil {
			return nil, fmt.Errorf("mcpattest: rules[%d]: %w", i, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func (d ruleDoc) rule() (Rule, error) {
	r := Rule{Name: d.Name, Method: d.Method, Tools: d.Tools, URIs: d.URIs, PreArm: d.PreArm}
	switch d.Mode {
	case "", "connection":
		r.Mode = middleware.ModeConnection
	case "operation":
		r.Mode = middleware.ModeOperation
	default:
		return r, fmt.Errorf("mode %q (want connection or operation)", d.Mode)
	}
	if d.MaxAge != "" {
		age, err := time.ParseDuration(d.MaxAge)
		if err != nil || age <= 0 {
			return r, fmt.Errorf("max_age %q: want a positive duration such as 30s or 5m", d.MaxAge)
		}
		if r.Mode == middleware.ModeOperation {
			return r, errors.New("max_age applies to connection mode only")
		}
		r.MaxAge = age
	}
	var err error
	switch {
	case len(d.Posture) > 0:
		r.Posture, err = posture.ParsePolicy(d.Posture, "json")
	case d.postureYAML != nil:
		var b []byte
		if b, err = yaml.Marshal(d.postureYAML); err == nil {
			r.Posture, err = posture.ParsePolicy(b, "yaml")
		}
	}
	if err != nil {
		return r, fmt.Errorf("posture: %w", err)
	}
	return r, nil
}
