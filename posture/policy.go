package posture

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/reattest/reattest/internal/strictdoc"
)

// MaxPolicyLen bounds a policy file or document.
const MaxPolicyLen = 1 << 20

// AnyScope in a permission ceiling allows every scope of that permission.
const AnyScope = "*"

// Policy is a relying party's posture policy: what an attested agent's
// posture must look like. It is plain data, loadable from JSON or YAML
// ([LoadPolicy], [ParsePolicy]; the schema is in docs/posture.md) or built
// in code. Every rule is optional; a rule that is not set allows anything.
//
// Digests are written "sha-256:<hex>", "sha-384:<hex>" or "sha-512:<hex>"
// (see [ParseDigest]). A Policy is safe for concurrent use as long as
// nobody modifies it; like a [tls.Config], do not change one after handing
// it to a middleware.
type Policy struct {
	// Models lists the allowed models. A posture's model must match one
	// entry (same digest, and the same name if the entry names one). If
	// Models is not empty, a posture without a model is denied. Empty or
	// nil: any model, or none.
	Models []ModelRule `json:"models,omitempty" yaml:"models,omitempty"`

	// Tools restricts the enabled tools.
	Tools ToolRules `json:"tools" yaml:"tools,omitempty"`

	// Templates lists the allowed prompt template digests. If not empty,
	// the posture's template must have one of them, and a posture without
	// a template is denied. Empty or nil: any template, or none.
	Templates []string `json:"templates,omitempty" yaml:"templates,omitempty"`

	// Permissions is a ceiling on runtime permissions: permission name ->
	// the scopes it may be granted with (AnyScope, "*", allows any scope).
	// A granted permission missing from the map, or granted a scope outside
	// its ceiling, is a violation. A nil map sets no ceiling; an empty,
	// non-nil map ("permissions: {}") allows no permission at all.
	Permissions map[string][]string `json:"permissions" yaml:"permissions"`

	// Flags are required configuration flag values: flag name -> value. A
	// flag that is unset or has another value is a violation.
	Flags map[string]string `json:"flags,omitempty" yaml:"flags,omitempty"`

	// RequirePosture denies a Result whose Evidence carries no posture.
	// Nil means true if any other rule is set, and false for a policy with
	// no rules. With RequirePosture explicitly false, a Result without
	// posture passes and the rules apply only to Results that have one.
	RequirePosture *bool `json:"require_posture,omitempty" yaml:"require_posture,omitempty"`
}

// ModelRule is one allowed model.
type ModelRule struct {
	// Name, if set, must equal the model's name.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Digest is the model's digest, for example "sha-256:<64 hex digits>".
	// Required.
	Digest string `json:"digest" yaml:"digest"`
}

// ToolRules restricts the enabled tools. Deny wins over Allow.
type ToolRules struct {
	// Allow, if not empty, lists the tools that may be enabled: "name"
	// allows the tool in any version, "name@sha-256:<hex>" only with that
	// digest. Every enabled tool must match an entry.
	Allow []string `json:"allow,omitempty" yaml:"allow,omitempty"`
	// Deny lists tool names that must not be enabled, whatever their
	// digest.
	Deny []string `json:"deny,omitempty" yaml:"deny,omitempty"`
}

// Violation is one failed policy item. Its String form is a stable,
// machine-readable token such as "tool:shell forbidden" that names posture
// items only: it never carries digests or other Evidence bytes, so it is
// safe to send to the peer (postauth.Error.Violations).
type Violation struct {
	// Item is the kind of item: "posture", "model", "template", "tool",
	// "permission" or "flag".
	Item string
	// Name is the item's name, or "" if the item is missing altogether.
	Name string
	// Problem says what is wrong: "missing", "not allowed", "forbidden",
	// `scope "admin" exceeds ceiling`, `want "on" got "off"`, `want "on"
	// unset`.
	Problem string
}

// String returns "item:name problem", or "item problem" without a name.
// A name with characters other than letters, digits and -._~:/@+=,# is
// quoted (Go syntax), so the first space always ends the name.
func (v Violation) String() string {
	if v.Name == "" {
		return v.Item + " " + v.Problem
	}
	return v.Item + ":" + quoteName(v.Name) + " " + v.Problem
}

func quoteName(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~:/@+=,#", r)) {
			return strconv.Quote(s)
		}
	}
	return s
}

// Check returns every item of posture s that violates p, in a fixed order:
// posture, model, template, tools (by name), permissions (by name, then
// scope), flags (by name). A nil s stands for "no posture". Nil means s
// passes. A nil *Policy is the empty policy.
//
// Check does not validate p; entries that do not parse (a bad digest)
// match nothing, so they can only deny. Use [Policy.Validate], or load
// policies with [LoadPolicy] or [ParsePolicy], which do.
func (p *Policy) Check(s *State) []Violation {
	c, _ := p.compile()
	return c.check(s)
}

// Evaluate returns every item of posture s that violates p, like
// [Policy.Check], and an error if p itself is malformed ([Policy.Validate]):
// a malformed policy must never pass a posture. A nil *Policy is an error.
func (p *Policy) Evaluate(s *State) ([]Violation, error) {
	if p == nil {
		return nil, errors.New("posture: nil policy")
	}
	c, err := p.compile()
	if err != nil {
		return nil, err
	}
	return c.check(s), nil
}

// Validate reports every malformed entry of p: digests with an unknown
// algorithm or the wrong length, empty or over-long names, non-printable
// characters, a tool both allowed and denied.
func (p *Policy) Validate() error {
	_, err := p.compile()
	return err
}

// hasRules reports whether any rule other than RequirePosture is set.
func (p *Policy) hasRules() bool {
	return len(p.Models) > 0 || len(p.Tools.Allow) > 0 || len(p.Tools.Deny) > 0 ||
		len(p.Templates) > 0 || p.Permissions != nil || len(p.Flags) > 0
}

type modelRule struct {
	name   string
	digest Digest
}

type toolRule struct {
	name   string
	digest *Digest // nil: any digest
}

// compiled is a Policy with its digests parsed. Each "on" flag is set when
// the rule was given, even if none of its entries parsed, so that a broken
// allow list denies rather than allows.
type compiled struct {
	requirePosture bool
	modelsOn       bool
	models         []modelRule
	allowOn        bool
	allow          []toolRule
	deny           map[string]bool
	templatesOn    bool
	templates      []Digest
	permissions    map[string][]string // nil: no ceiling
	flags          map[string]string
}

// compile parses p. It returns the usable rules and, joined, every problem
// found; an entry with a problem matches nothing.
func (p *Policy) compile() (*compiled, error) {
	if p == nil {
		return &compiled{}, nil
	}
	c := &compiled{
		requirePosture: p.hasRules(),
		modelsOn:       len(p.Models) > 0,
		allowOn:        len(p.Tools.Allow) > 0,
		templatesOn:    len(p.Templates) > 0,
		permissions:    p.Permissions,
		flags:          p.Flags,
		deny:           make(map[string]bool),
	}
	if p.RequirePosture != nil {
		c.requirePosture = *p.RequirePosture
	}
	var errs []error
	bad := func(field string, err error) {
		errs = append(errs, fmt.Errorf("%s: %s", field, strings.TrimPrefix(err.Error(), "posture: ")))
	}
	for i, m := range p.Models {
		field := fmt.Sprintf("models[%d]", i)
		if err := checkText("name", m.Name, MaxNameLen, false); err != nil {
			bad(field+".name", err)
		}
		if m.Digest == "" {
			bad(field+".digest", errors.New("missing (a model is allowed by its digest)"))
			continue
		}
		d, err := ParseDigest(m.Digest)
		if err != nil {
			bad(field+".digest", err)
			continue
		}
		c.models = append(c.models, modelRule{name: m.Name, digest: d})
	}
	for i, a := range p.Tools.Allow {
		field := fmt.Sprintf("tools.allow[%d]", i)
		name, ds, hasDigest := cutToolDigest(a)
		if err := checkText("tool name", name, MaxNameLen, true); err != nil {
			bad(field, err)
			continue
		}
		r := toolRule{name: name}
		if hasDigest {
			d, err := ParseDigest(ds)
			if err != nil {
				bad(field, err)
				continue
			}
			r.digest = &d
		}
		c.allow = append(c.allow, r)
	}
	for i, d := range p.Tools.Deny {
		field := fmt.Sprintf("tools.deny[%d]", i)
		if _, _, hasDigest := cutToolDigest(d); hasDigest {
			bad(field, errors.New("deny takes tool names only (a denied tool is denied in every version)"))
			continue
		}
		if err := checkText("tool name", d, MaxNameLen, true); err != nil {
			bad(field, err)
			continue
		}
		c.deny[d] = true
	}
	for i, r := range c.allow {
		if c.deny[r.name] {
			// Deny wins when the policy is used anyway, but a policy that
			// says both is a mistake its author should hear about.
			bad(fmt.Sprintf("tools.allow[%d]", i), fmt.Errorf("tool %q is also denied (tools.deny): remove it from one of the lists", trunc(r.name)))
		}
	}
	for i, t := range p.Templates {
		d, err := ParseDigest(t)
		if err != nil {
			bad(fmt.Sprintf("templates[%d]", i), err)
			continue
		}
		c.templates = append(c.templates, d)
	}
	for _, name := range slices.Sorted(maps.Keys(p.Permissions)) {
		field := fmt.Sprintf("permissions[%q]", trunc(name))
		if err := checkText("permission name", name, MaxNameLen, true); err != nil {
			bad(field, err)
		}
		for i, sc := range p.Permissions[name] {
			if sc == AnyScope {
				continue
			}
			if err := checkText("scope", sc, MaxNameLen, true); err != nil {
				bad(fmt.Sprintf("%s[%d]", field, i), err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Flags)) {
		field := fmt.Sprintf("flags[%q]", trunc(name))
		if err := checkText("flag name", name, MaxNameLen, true); err != nil {
			bad(field, err)
		}
		if err := checkText("flag value", p.Flags[name], MaxValueLen, false); err != nil {
			bad(field, err)
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("posture: invalid policy: %w", errors.Join(errs...))
	}
	return c, nil
}

// cutToolDigest splits "name@alg:hex" into name and digest text. An "@"
// introduces a digest only if what follows it contains a ":".
func cutToolDigest(s string) (name, digest string, ok bool) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 || !strings.Contains(s[i+1:], ":") {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

func (c *compiled) check(s *State) []Violation {
	if s == nil {
		if c.requirePosture {
			return []Violation{{Item: "posture", Problem: "missing"}}
		}
		return nil
	}
	var out []Violation
	if c.modelsOn {
		switch {
		case s.Model == nil:
			out = append(out, Violation{Item: "model", Problem: "missing"})
		case !slices.ContainsFunc(c.models, func(r modelRule) bool {
			return (r.name == "" || r.name == s.Model.Name) && r.digest.Equal(s.Model.Digest)
		}):
			out = append(out, Violation{Item: "model", Name: s.Model.Name, Problem: "not allowed"})
		}
	}
	if c.templatesOn {
		switch {
		case s.Template == nil:
			out = append(out, Violation{Item: "template", Problem: "missing"})
		case !slices.ContainsFunc(c.templates, s.Template.Digest.Equal):
			out = append(out, Violation{Item: "template", Name: s.Template.Name, Problem: "not allowed"})
		}
	}
	for _, t := range sortedBy(s.Tools, func(t Tool) string { return t.Name }) {
		switch {
		case c.deny[t.Name]:
			out = append(out, Violation{Item: "tool", Name: t.Name, Problem: "forbidden"})
		case c.allowOn && !slices.ContainsFunc(c.allow, func(r toolRule) bool {
			return r.name == t.Name && (r.digest == nil || r.digest.Equal(t.Digest))
		}):
			out = append(out, Violation{Item: "tool", Name: t.Name, Problem: "not allowed"})
		}
	}
	if c.permissions != nil {
		for _, p := range sortedBy(s.Permissions, func(p Permission) string { return p.Name }) {
			ceiling, ok := c.permissions[p.Name]
			if !ok {
				out = append(out, Violation{Item: "permission", Name: p.Name, Problem: "not allowed"})
				continue
			}
			if slices.Contains(ceiling, AnyScope) {
				continue
			}
			for _, sc := range slices.Sorted(slices.Values(p.Scopes)) {
				if !slices.Contains(ceiling, sc) {
					out = append(out, Violation{Item: "permission", Name: p.Name, Problem: fmt.Sprintf("scope %q exceeds ceiling", sc)})
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.flags)) {
		want := c.flags[name]
		got, ok := s.Flags[name]
		switch {
		case !ok:
			out = append(out, Violation{Item: "flag", Name: name, Problem: fmt.Sprintf("want %q unset", want)})
		case got != want:
			out = append(out, Violation{Item: "flag", Name: name, Problem: fmt.Sprintf("want %q got %q", want, got)})
		}
	}
	return out
}

// sortedBy returns s sorted by key (a copy if s is not sorted already), so
// that Check's order does not depend on how the State was built.
func sortedBy[T any](s []T, key func(T) string) []T {
	cmp := func(a, b T) int { return strings.Compare(key(a), key(b)) }
	if slices.IsSortedFunc(s, cmp) {
		return s
	}
	return slices.SortedStableFunc(slices.Values(s), cmp)
}

// policyDoc is the strict JSON/YAML form of a Policy.
var policyDoc = strictdoc.Doc{Noun: "policy", Max: MaxPolicyLen}

// LoadPolicy reads a policy file, JSON if its name ends in ".json" and YAML
// if it ends in ".yaml" or ".yml", and parses it like [ParsePolicy].
func LoadPolicy(path string) (*Policy, error) {
	return strictdoc.LoadFile[Policy](policyDoc, "posture", path)
}

// ParsePolicy parses a policy document in format "json" or "yaml" (also
// "yml") and validates it ([Policy.Validate]). Parsing is strict: unknown
// fields, duplicate keys (in JSON, also field names differing only in
// case, which encoding/json would merge; the keys of permissions and flags
// are case-sensitive), trailing data, a second YAML document, a document
// that is not an object or nests more than 16 levels deep, and documents
// over MaxPolicyLen bytes are errors.
func ParsePolicy(data []byte, format string) (*Policy, error) {
	return strictdoc.Parse[Policy](policyDoc, "posture", data, format)
}
