package tdx_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/reattest/reattest/postauth/tdx"
)

// TestLoadPolicy: the JSON and YAML example files give the same Policy.
func TestLoadPolicy(t *testing.T) {
	j, err := tdx.LoadPolicy("testdata/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	y, err := tdx.LoadPolicy("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(j, y) {
		t.Fatalf("JSON %+v\nYAML %+v", j, y)
	}
	if len(j.MRTD) != 1 || j.TCB.Allow[0] != tdx.StatusSWHardeningNeeded || j.MinTEETCBSVN == "" {
		t.Fatalf("policy %+v", j)
	}
	for _, p := range []string{"testdata/policy.txt", "testdata/missing.json"} {
		if _, err := tdx.LoadPolicy(p); err == nil {
			t.Errorf("%s loaded", p)
		}
	}
}

// TestParsePolicyRejects: strict parsing and validation.
func TestParsePolicyRejects(t *testing.T) {
	h48 := strings.Repeat("00", 48)
	cases := []struct{ name, format, doc string }{
		{"empty", "json", " "},
		{"not-object", "json", `[]`},
		{"unknown-field", "json", `{"mrtdd": []}`},
		{"duplicate-key", "json", `{"mrtd": [], "mrtd": []}`},
		{"duplicate-key-case", "json", `{"mrtd": [], "MRTD": []}`},
		{"duplicate-key-fold", "json", `{"mrseam": [], "mrſeam": []}`}, // ſ folds like s
		{"duplicate-nested", "json", `{"tcb": {"allow": [], "allow": []}}`},
		{"trailing", "json", `{} {}`},
		{"bad-hex", "json", `{"mrtd": ["zz"]}`},
		{"short-mrtd", "json", `{"mrtd": ["00"]}`},
		{"short-xfam", "json", `{"xfam": ["` + h48 + `"]}`},
		{"short-min-svn", "json", `{"min_tee_tcb_svn": "00"}`},
		{"unknown-status", "json", `{"tcb": {"allow": ["Great"]}}`},
		{"revoked-allowed", "json", `{"tcb": {"allow": ["Revoked"]}}`},
		{"revoked-warned", "yaml", "tcb:\n  warn: [Revoked]\n"},
		{"both-lists", "json", `{"tcb": {"allow": ["OutOfDate"], "warn": ["OutOfDate"]}}`},
		{"uptodate-warned", "json", `{"tcb": {"warn": ["UpToDate"]}}`},
		{"yaml-unknown", "yaml", "mrtdd: []\n"},
		{"yaml-duplicate", "yaml", "mrtd: []\nmrtd: []\n"},
		{"yaml-two-docs", "yaml", "mrtd: []\n---\nmrtd: []\n"},
		{"yaml-scalar", "yaml", "hello\n"},
		{"format", "toml", `a = 1`},
		{"too-large", "json", `{"mrtd": ["` + strings.Repeat("0", tdx.MaxPolicyLen) + `"]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := tdx.ParsePolicy([]byte(tc.doc), tc.format); err == nil {
				t.Fatalf("accepted: %+v", p)
			}
		})
	}
	if _, err := tdx.ParsePolicy([]byte(`{"tcb": {"allow": ["UpToDate", "OutOfDate"]}, "allow_debug": true}`), "json"); err != nil {
		t.Fatal(err)
	}
	var zero tdx.Policy
	if err := zero.Validate(); err != nil {
		t.Fatal(err)
	}
}
