package ear_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth/ear"
)

func TestParsePolicy(t *testing.T) {
	good := []struct {
		name, format, doc string
		want              ear.Policy
	}{
		{"yaml", "yaml", "min_status: warning\ntrust_vector:\n  hardware: affirming\n  instance-identity: warning\nmax_age: 90s\n",
			ear.Policy{MinStatus: "warning", TrustVector: map[string]string{"hardware": "affirming", "instance-identity": "warning"}, MaxAge: ear.Duration(90 * time.Second)}},
		{"json", "json", `{"min_status":"affirming","trust_vector":{"executables":"contraindicated"},"max_age":"2m"}`,
			ear.Policy{MinStatus: "affirming", TrustVector: map[string]string{"executables": "contraindicated"}, MaxAge: ear.Duration(2 * time.Minute)}},
		{"empty object (defaults)", "json", `{}`, ear.Policy{}},
		{"yml", "yml", "max_age: 1h\n", ear.Policy{MaxAge: ear.Duration(time.Hour)}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ear.ParsePolicy([]byte(tc.doc), tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if p.MinStatus != tc.want.MinStatus || p.MaxAge != tc.want.MaxAge || len(p.TrustVector) != len(tc.want.TrustVector) {
				t.Fatalf("got %+v, want %+v", p, tc.want)
			}
			for k, v := range tc.want.TrustVector {
				if p.TrustVector[k] != v {
					t.Fatalf("trust_vector %s: %q", k, p.TrustVector[k])
				}
			}
		})
	}
	bad := []struct{ name, format, doc string }{
		{"unknown key (json)", "json", `{"min_status":"affirming","maxage":"1m"}`},
		{"unknown key (yaml)", "yaml", "minstatus: affirming\n"},
		{"duplicate key (json)", "json", `{"max_age":"1m","max_age":"1h"}`},
		{"keys differing in case (json)", "json", `{"max_age":"1m","MAX_AGE":"1h"}`},
		{"keys folding alike (json)", "json", `{"trust_vector":{},"truſt_vector":{"hardware":"warning"}}`},
		{"claim names differing in case (json)", "json", `{"trust_vector":{"hardware":"affirming","Hardware":"warning"}}`},
		{"nested too deep (yaml)", "yaml", "trust_vector: " + strings.Repeat("[", 20) + strings.Repeat("]", 20) + "\n"},
		{"duplicate claim (json)", "json", `{"trust_vector":{"hardware":"affirming","hardware":"warning"}}`},
		{"duplicate key (yaml)", "yaml", "max_age: 1m\nmax_age: 1h\n"},
		{"trailing data (json)", "json", `{} {}`},
		{"two documents (yaml)", "yaml", "max_age: 1m\n---\nmax_age: 1h\n"},
		{"not an object", "json", `[]`},
		{"not a mapping", "yaml", "- a\n"},
		{"empty", "yaml", "  \n"},
		{"unknown status", "yaml", "min_status: fine\n"},
		{"status none", "yaml", "min_status: none\n"},
		{"unknown claim", "yaml", "trust_vector:\n  firmware: affirming\n"},
		{"unknown tier", "yaml", "trust_vector:\n  hardware: genuine\n"},
		{"negative max age", "yaml", "max_age: -1s\n"},
		{"max age as a number", "json", `{"max_age":90}`},
		{"bad duration", "yaml", "max_age: soon\n"},
		{"unknown format", "toml", `max_age = "1m"`},
		{"too large", "yaml", "max_age: 1m\n" + strings.Repeat("#", ear.MaxPolicyLen)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := ear.ParsePolicy([]byte(tc.doc), tc.format); err == nil {
				t.Fatalf("accepted: %+v", p)
			}
		})
	}
}

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p, err := ear.LoadPolicy(write("p.yaml", "min_status: warning\n"))
	if err != nil || p.MinStatus != "warning" {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := ear.LoadPolicy(write("p.json", `{"max_age":"1m"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := ear.LoadPolicy(write("p.txt", "min_status: warning\n")); err == nil {
		t.Fatal("unknown extension accepted")
	}
	if _, err := ear.LoadPolicy(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
	if _, err := ear.LoadPolicy(write("big.yaml", strings.Repeat("#", ear.MaxPolicyLen+10))); err == nil {
		t.Fatal("oversized file accepted")
	}
}

func TestPolicyMarshalsBack(t *testing.T) {
	d := ear.Duration(90 * time.Second)
	b, err := d.MarshalText()
	if err != nil || string(b) != "1m30s" {
		t.Fatalf("%s %v", b, err)
	}
}
