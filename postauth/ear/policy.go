package ear

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/reattest/reattest/internal/strictdoc"
)

// MaxPolicyLen bounds a policy file or document.
const MaxPolicyLen = 64 << 10

// DefaultMaxAge is the age limit of an EAR when the policy sets none.
const DefaultMaxAge = 2 * time.Minute

// Policy is an appraisal policy for EARs, used by both models (the
// passport [Verifier] and the background-check [RemoteVerifier]). It is
// plain data, loadable from JSON or YAML ([LoadPolicy], [ParsePolicy]) or
// built in code. Its zero value is the strictest useful policy: every
// submodule affirming, no trust-vector requirement, EARs at most
// DefaultMaxAge old.
//
// Every submodule of an EAR must satisfy the policy. A Policy must not be
// modified after it was handed to a Verifier (like a [tls.Config]).
//
// YAML example:
//
//	min_status: affirming
//	trust_vector:
//	  instance-identity: affirming
//	  hardware: affirming   # hardware-backed Evidence only
//	max_age: 90s
type Policy struct {
	// MinStatus is the lowest acceptable ear.status of every submodule:
	// "affirming", "warning" or "contraindicated" (accept any verdict,
	// which only makes sense with trust-vector requirements). "" means
	// "affirming". Status none (no verdict) never passes.
	MinStatus string `json:"min_status,omitempty" yaml:"min_status,omitempty"`
	// TrustVector lists required trust-vector claims: claim name (for
	// example "hardware", see [TrustVectorClaims]) -> the lowest acceptable
	// tier of its value ("affirming", "warning" or "contraindicated"). A
	// listed claim that a submodule lacks (or whose value is in the none
	// tier, -1..1) is a violation. Nil or empty: no requirement.
	TrustVector map[string]string `json:"trust_vector,omitempty" yaml:"trust_vector,omitempty"`
	// MaxAge is how old an EAR (its iat) may be, written as a Go duration
	// ("90s", "2m"). Zero means DefaultMaxAge; it cannot be unlimited.
	MaxAge Duration `json:"max_age,omitempty" yaml:"max_age,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("90s") in
// JSON and YAML.
type Duration time.Duration

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("ear: duration %q: want a Go duration such as 90s", trunc(string(b)))
	}
	*d = Duration(v)
	return nil
}

// compiledPolicy is a validated Policy.
type compiledPolicy struct {
	minStatus Status
	claims    []string // sorted
	minClaim  map[string]Status
	maxAge    time.Duration
}

// Validate reports whether p is well formed: known status and tier names,
// known trust-vector claims, a non-negative max age.
func (p *Policy) Validate() error {
	_, err := p.compile()
	return err
}

func (p *Policy) compile() (*compiledPolicy, error) {
	if p == nil {
		return nil, errors.New("ear: nil policy")
	}
	c := &compiledPolicy{minStatus: StatusAffirming, minClaim: make(map[string]Status), maxAge: time.Duration(p.MaxAge)}
	if p.MinStatus != "" {
		s, err := ParseStatus(p.MinStatus)
		if err != nil || s == StatusNone {
			return nil, fmt.Errorf("ear: policy min_status %q: want affirming, warning or contraindicated", trunc(p.MinStatus))
		}
		c.minStatus = s
	}
	for _, name := range slices.Sorted(maps.Keys(p.TrustVector)) {
		if !isTrustClaim(name) {
			return nil, fmt.Errorf("ear: policy trust_vector: unknown claim %q (want one of %s)", trunc(name), strings.Join(TrustVectorClaims, ", "))
		}
		s, err := ParseStatus(p.TrustVector[name])
		if err != nil || s == StatusNone {
			return nil, fmt.Errorf("ear: policy trust_vector %s: %q: want affirming, warning or contraindicated", name, trunc(p.TrustVector[name]))
		}
		c.claims = append(c.claims, name)
		c.minClaim[name] = s
	}
	switch {
	case c.maxAge < 0:
		return nil, errors.New("ear: policy max_age is negative")
	case c.maxAge == 0:
		c.maxAge = DefaultMaxAge
	}
	return c, nil
}

// violations returns every item of the EAR that fails the policy, in
// submodule order: "ear_status:<submod> <got> below <min>",
// "trust_vector:<submod>/<claim> missing" and
// "trust_vector:<submod>/<claim> <tier> below <min>". They name items and
// tiers, never Evidence.
func (c *compiledPolicy) violations(ear *claims) []string {
	var out []string
	for _, s := range ear.submods {
		name := quoteName(s.name)
		if !s.status.atLeast(c.minStatus) { // mutation: ear min status
			out = append(out, fmt.Sprintf("ear_status:%s %v below %v", name, s.status, c.minStatus))
		}
		for _, claim := range c.claims {
			v, ok := s.trustVector[claim]
			tier := TierOf(v)
			switch {
			case !ok || tier == StatusNone:
				out = append(out, fmt.Sprintf("trust_vector:%s/%s missing", name, claim))
			case !tier.atLeast(c.minClaim[claim]): // mutation: ear trust vector
				out = append(out, fmt.Sprintf("trust_vector:%s/%s %v below %v", name, claim, tier, c.minClaim[claim]))
			}
		}
	}
	return out
}

// policyDoc is the strict JSON/YAML form of a Policy.
var policyDoc = strictdoc.Doc{Noun: "policy", Max: MaxPolicyLen}

// LoadPolicy reads a policy file, JSON if its name ends in ".json" and YAML
// if it ends in ".yaml" or ".yml", and parses it like [ParsePolicy].
func LoadPolicy(path string) (*Policy, error) {
	return strictdoc.LoadFile[Policy](policyDoc, "ear", path)
}

// ParsePolicy parses a policy document in format "json" or "yaml" (also
// "yml") and validates it ([Policy.Validate]). Parsing is strict: unknown
// fields, duplicate keys (in JSON, also field names differing only in
// case, which encoding/json would merge; the claim names of trust_vector
// are case-sensitive), trailing data, a second YAML document, a document
// that is not an object or nests more than 16 levels deep, and documents
// over MaxPolicyLen bytes are errors.
func ParsePolicy(data []byte, format string) (*Policy, error) {
	return strictdoc.Parse[Policy](policyDoc, "ear", data, format)
}
