package tdx

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/reattest/reattest/internal/strictdoc"
)

// MaxPolicyLen bounds a policy document.
const MaxPolicyLen = 1 << 20

// Policy is a relying party's appraisal policy for TDX Evidence: which TCB
// statuses pass, and what the TD must measure. It is plain data, loadable
// from JSON or YAML ([LoadPolicy], [ParsePolicy]; docs/tdx.md section 6)
// or built in code, and checked by [Policy.Validate].
//
// The zero Policy is the default: TCB status UpToDate only, no debug TD,
// and any measurements. A relying party that trusts a particular workload
// must list its MRTD (and the RTMRs its boot chain produces): without a
// measurement policy, any TD on a genuine, up-to-date platform passes.
//
// Byte values are hex strings (upper or lower case); a list allows any of
// its values, and an empty or absent list allows any value.
type Policy struct {
	// TCB is the TCB status policy.
	TCB TCBPolicy `json:"tcb" yaml:"tcb"`

	// MRTD lists the allowed MRTD values (48 bytes).
	MRTD []string `json:"mrtd,omitempty" yaml:"mrtd,omitempty"`
	// RTMR0 to RTMR3 list the allowed RTMR values (48 bytes). Leave RTMR3
	// empty when the posture log is extended into it: the posture policy
	// (package posture) judges it instead.
	RTMR0 []string `json:"rtmr0,omitempty" yaml:"rtmr0,omitempty"`
	RTMR1 []string `json:"rtmr1,omitempty" yaml:"rtmr1,omitempty"`
	RTMR2 []string `json:"rtmr2,omitempty" yaml:"rtmr2,omitempty"`
	RTMR3 []string `json:"rtmr3,omitempty" yaml:"rtmr3,omitempty"`
	// MRCONFIGID, MROWNER and MROWNERCONFIG list allowed values of the
	// host-set registers (48 bytes).
	MRCONFIGID    []string `json:"mrconfigid,omitempty" yaml:"mrconfigid,omitempty"`
	MROWNER       []string `json:"mrowner,omitempty" yaml:"mrowner,omitempty"`
	MROWNERCONFIG []string `json:"mrownerconfig,omitempty" yaml:"mrownerconfig,omitempty"`
	// MRSEAM lists allowed TDX module measurements (48 bytes).
	MRSEAM []string `json:"mrseam,omitempty" yaml:"mrseam,omitempty"`
	// XFAM lists allowed XFAM values (8 bytes, as in the quote).
	XFAM []string `json:"xfam,omitempty" yaml:"xfam,omitempty"`
	// AllowDebug accepts debug TDs (TD attribute DEBUG). False, the zero
	// value, refuses them: a debug TD's host can read and change its
	// memory, so its quote vouches for nothing.
	AllowDebug bool `json:"allow_debug,omitempty" yaml:"allow_debug,omitempty"`
	// MinTEETCBSVN is a minimum TEE_TCB_SVN (16 bytes): each of the
	// quote's 16 components must be at least the corresponding byte.
	// Empty: no minimum beyond the TCB status.
	MinTEETCBSVN string `json:"min_tee_tcb_svn,omitempty" yaml:"min_tee_tcb_svn,omitempty"`
}

// TCBPolicy says which TCB statuses pass. UpToDate always passes; Revoked
// never does and may not be listed.
type TCBPolicy struct {
	// Allow lists further statuses that pass (for example
	// "SWHardeningNeeded"). Empty: only UpToDate.
	Allow []string `json:"allow,omitempty" yaml:"allow,omitempty"`
	// Warn lists statuses that pass with a warning: the Verifier reports
	// them as "tcb_warning" measurements and to its warning handler
	// ([WithWarningHandler]). A status may not be in both lists.
	Warn []string `json:"warn,omitempty" yaml:"warn,omitempty"`
}

// compiledPolicy is a validated Policy in the form the Verifier checks.
type compiledPolicy struct {
	allow, warn   map[string]bool
	mrtd          [][]byte
	rtmr          [4][][]byte
	mrconfigid    [][]byte
	mrowner       [][]byte
	mrownerconfig [][]byte
	mrseam        [][]byte
	xfam          [][]byte
	allowDebug    bool
	minSVN        []byte
}

// Validate reports whether p is well formed: known statuses, none listed
// twice or as Revoked, and every value valid hex of its field's size.
func (p *Policy) Validate() error {
	_, err := p.compile()
	return err
}

func (p *Policy) compile() (*compiledPolicy, error) {
	c := &compiledPolicy{allow: map[string]bool{StatusUpToDate: true}, warn: map[string]bool{}, allowDebug: p.AllowDebug}
	for _, l := range []struct {
		name string
		list []string
		set  map[string]bool
	}{{"allow", p.TCB.Allow, c.allow}, {"warn", p.TCB.Warn, c.warn}} {
		for _, s := range l.list {
			switch {
			case !slices.Contains(statuses, s):
				return nil, fmt.Errorf("tdx: policy: tcb %s: unknown status %q", l.name, s)
			case s == StatusRevoked:
				return nil, fmt.Errorf("tdx: policy: tcb %s: status Revoked can never pass", l.name)
			case c.allow[s] && s != StatusUpToDate || c.warn[s]:
				return nil, fmt.Errorf("tdx: policy: tcb status %q listed twice", s)
			}
			l.set[s] = true
		}
	}
	if c.warn[StatusUpToDate] {
		return nil, errors.New("tdx: policy: tcb warn: UpToDate always passes")
	}
	var err error
	fields := []struct {
		name string
		in   []string
		out  *[][]byte
		size int
	}{
		{"mrtd", p.MRTD, &c.mrtd, RTMRSize},
		{"rtmr0", p.RTMR0, &c.rtmr[0], RTMRSize},
		{"rtmr1", p.RTMR1, &c.rtmr[1], RTMRSize},
		{"rtmr2", p.RTMR2, &c.rtmr[2], RTMRSize},
		{"rtmr3", p.RTMR3, &c.rtmr[3], RTMRSize},
		{"mrconfigid", p.MRCONFIGID, &c.mrconfigid, RTMRSize},
		{"mrowner", p.MROWNER, &c.mrowner, RTMRSize},
		{"mrownerconfig", p.MROWNERCONFIG, &c.mrownerconfig, RTMRSize},
		{"mrseam", p.MRSEAM, &c.mrseam, RTMRSize},
		{"xfam", p.XFAM, &c.xfam, 8},
	}
	for _, f := range fields {
		for i, s := range f.in {
			b, err := hex.DecodeString(s)
			if err != nil || len(b) != f.size {
				return nil, fmt.Errorf("tdx: policy: %s[%d]: want %d bytes of hex", f.name, i, f.size)
			}
			*f.out = append(*f.out, b)
		}
	}
	if p.MinTEETCBSVN != "" {
		if c.minSVN, err = hex.DecodeString(p.MinTEETCBSVN); err != nil || len(c.minSVN) != 16 {
			return nil, errors.New("tdx: policy: min_tee_tcb_svn: want 16 bytes of hex")
		}
	}
	return c, nil
}

// tcbViolations names the TCB statuses the policy does not let pass, and
// returns the warnings for those it lets pass with a warning.
func (c *compiledPolicy) tcbViolations(t *tcbResult) (violations, warnings []string) {
	for _, s := range []struct{ name, status string }{{"platform", t.Status}, {"qe", t.QEStatus}} {
		switch {
		case c.allow[s.status]:
		case c.warn[s.status]:
			warnings = append(warnings, "tcb:"+s.name+" "+s.status)
		default:
			violations = append(violations, "tcb:"+s.name+" "+s.status+" not allowed")
		}
	}
	return violations, warnings
}

// measurementViolations names every item of q the policy refuses. The
// strings name items, never values.
func (c *compiledPolicy) measurementViolations(q *Quote) []string {
	var out []string
	check := func(name string, allowed [][]byte, got []byte) {
		if len(allowed) > 0 && !slices.ContainsFunc(allowed, func(a []byte) bool { return bytes.Equal(a, got) }) {
			out = append(out, name+" not allowed")
		}
	}
	if q.Debug() && !c.allowDebug { // mutation: tdx debug td
		out = append(out, "td_attributes:debug forbidden")
	}
	check("mrtd", c.mrtd, q.MRTD) // mutation: tdx mrtd policy
	for i := range 4 {
		check(fmt.Sprintf("rtmr:%d", i), c.rtmr[i], q.RTMRs[i]) // mutation: tdx rtmr policy
	}
	check("mrconfigid", c.mrconfigid, q.MRCONFIGID)
	check("mrowner", c.mrowner, q.MROWNER)
	check("mrownerconfig", c.mrownerconfig, q.MROWNERCONFIG)
	check("mrseam", c.mrseam, q.MRSEAM)
	check("xfam", c.xfam, q.XFAM)
	for i, m := range c.minSVN {
		if q.TEETCBSVN[i] < m {
			out = append(out, fmt.Sprintf("tee_tcb_svn:%d below minimum", i))
		}
	}
	return out
}

// policyDoc is the strict JSON/YAML form of a Policy.
var policyDoc = strictdoc.Doc{Noun: "policy", Max: MaxPolicyLen}

// LoadPolicy reads a policy file: .json, or .yaml/.yml.
func LoadPolicy(path string) (*Policy, error) {
	return strictdoc.LoadFile[Policy](policyDoc, "tdx", path)
}

// ParsePolicy parses a policy document in format "json" or "yaml" (also
// "yml") and validates it. Parsing is strict: unknown fields, duplicate
// keys (in JSON also keys differing only in case, which encoding/json
// would merge), trailing data, more than one YAML document, a document
// that is not an object or nests more than 16 levels deep, and documents
// over MaxPolicyLen bytes are errors.
func ParsePolicy(data []byte, format string) (*Policy, error) {
	return strictdoc.Parse[Policy](policyDoc, "tdx", data, format)
}
