package strictdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

type rule struct {
	Deny  []string `json:"deny" yaml:"deny"`
	Allow []string `json:"allow,omitempty" yaml:"allow,omitempty"`
}

// testDoc has every kind of value the walk tells apart.
type testDoc struct {
	Name  string            `json:"name,omitempty" yaml:"name,omitempty"`
	State string            `json:"state,omitempty" yaml:"state,omitempty"`
	Kind  string            `json:"kind,omitempty" yaml:"kind,omitempty"`
	Tools rule              `json:"tools" yaml:"tools"`
	Ptr   *rule             `json:"ptr,omitempty" yaml:"ptr,omitempty"`
	List  []rule            `json:"list,omitempty" yaml:"list,omitempty"`
	Flags map[string]string `json:"flags,omitempty" yaml:"flags,omitempty"` // keys case-sensitive
	Sub   map[string]rule   `json:"sub,omitempty" yaml:"sub,omitempty"`     // keys case-sensitive, values structs
	Raw   json.RawMessage   `json:"raw,omitempty" yaml:"-"`                 // parsed later: keys exact
	Deep  any               `json:"deep,omitempty" yaml:"deep,omitempty"`   // an interface: keys fold
}

var testKind = Doc{Noun: "thing", Max: 256}

// nest returns n arrays (YAML flow sequences) inside each other.
func nest(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

func TestDecode(t *testing.T) {
	cases := []struct {
		name, format, doc string
		want              string // "": accepted; else a part of the error
	}{
		// accepted
		{"json-empty-object", "json", `{}`, ""},
		{"yaml-empty-mapping", "yaml", "{}\n", ""},
		{"format-yml", "yml", "name: a\n", ""},
		{"format-case", "JSON", `{"name": "a"}`, ""},
		{"json-whitespace", "json", " \n{ \"name\" : \"a\" }\n\t", ""},
		{"exact-map-keys", "json", `{"flags": {"A": "1", "a": "2"}}`, ""},
		{"exact-map-keys-of-structs", "json", `{"sub": {"X": {"deny": []}, "x": {"deny": []}}}`, ""},
		{"raw-keys-exact", "json", `{"raw": {"A": 1, "a": 2, "b": {"C": 1, "c": 2}}}`, ""},
		{"same-key-in-two-objects", "json", `{"tools": {"deny": []}, "ptr": {"deny": []}, "list": [{"deny": []}, {"deny": []}]}`, ""},
		{"json-depth-16", "json", `{"deep": ` + nest(15) + `}`, ""},
		{"yaml-depth-16", "yaml", "deep: " + nest(15) + "\n", ""},
		{"big-number", "json", `{"raw": 1e400}`, ""},
		{"at-max", "json", `{"name": "` + strings.Repeat("x", 256-len(`{"name": ""}`)) + `"}`, ""},

		// size and emptiness
		{"over-max", "json", `{"name": "` + strings.Repeat("x", 256) + `"}`, "thing larger than 256 bytes"},
		{"over-max-yaml", "yaml", "name: " + strings.Repeat("x", 256) + "\n", "thing larger than 256 bytes"},
		{"empty", "json", "", "empty thing document"},
		{"blank", "yaml", " \n\t", "empty thing document"},
		{"unknown-format", "toml", `a = 1`, `unknown thing format "toml" (want json or yaml)`},

		// roots that are not objects
		{"json-array", "json", `[]`, "thing JSON: the document must be a JSON object"},
		{"json-null", "json", `null`, "the document must be a JSON object"},
		{"json-string", "json", `"x"`, "the document must be a JSON object"},
		{"json-number", "json", `1`, "the document must be a JSON object"},
		{"yaml-list", "yaml", "- a\n", "thing YAML: the document must be a mapping"},
		{"yaml-scalar", "yaml", "a\n", "the document must be a mapping"},
		{"yaml-null", "yaml", "~\n", "the document must be a mapping"},
		{"yaml-comment-only", "yaml", "# nothing\n", "the document must be a mapping"},

		// trailing data, a second document, truncation
		{"json-two-objects", "json", `{} {}`, "thing JSON: data after the thing object"},
		{"json-trailing-garbage", "json", `{}x`, "data after the thing object"},
		{"json-trailing-bracket", "json", `{}]`, "data after the thing object"},
		{"json-truncated", "json", `{"tools": {`, "unexpected EOF"},
		{"yaml-two-documents", "yaml", "name: a\n---\nname: b\n", "thing YAML: more than one document"},
		{"yaml-empty-second-document", "yaml", "name: a\n---\n", "more than one document"},
		{"yaml-syntax", "yaml", "tools: [\n", "thing YAML: "},

		// duplicate keys
		{"dup-top", "json", `{"name": "a", "name": "b"}`, `duplicate key "name"`},
		{"dup-nested", "json", `{"tools": {"deny": [], "deny": []}}`, `duplicate key "deny" in tools`},
		{"dup-in-array", "json", `{"list": [{"deny": []}, {"allow": [], "deny": [], "allow": []}]}`, `duplicate key "allow" in list[1]`},
		{"dup-behind-pointer", "json", `{"ptr": {"deny": [], "deny": []}}`, `duplicate key "deny" in ptr`},
		{"dup-map-key", "json", `{"flags": {"a": "1", "b": "2", "a": "3"}}`, `duplicate key "a" in flags`},
		{"dup-in-map-value", "json", `{"sub": {"x": {"deny": [], "deny": []}}}`, `duplicate key "deny" in sub.x`},
		{"dup-raw", "json", `{"raw": {"a": 1, "a": 2}}`, `duplicate key "a" in raw`},
		{"dup-raw-deep", "json", `{"raw": {"b": [{"a": 1, "a": 2}]}}`, `duplicate key "a" in raw.b[0]`},
		{"dup-odd-key-path", "json", `{"sub": {"a b": {"deny": [], "deny": []}}}`, `duplicate key "deny" in sub["a b"]`},
		{"dup-yaml", "yaml", "tools:\n  deny: []\n  deny: []\n", `mapping key "deny" already defined`},

		// keys encoding/json would merge into one struct field
		{"case-top", "json", `{"name": "a", "NAME": "b"}`, `duplicate key "NAME"`},
		{"case-nested", "json", `{"tools": {"deny": ["shell"], "Deny": []}}`, `duplicate key "Deny" in tools`},
		{"case-in-array", "json", `{"list": [{"deny": [], "dEnY": []}]}`, `duplicate key "dEnY" in list[0]`},
		{"case-in-map-value", "json", `{"sub": {"x": {"deny": [], "DENY": []}}}`, `duplicate key "DENY" in sub.x`},
		{"case-struct-field-key", "json", `{"tools": {}, "Tools": {}}`, `duplicate key "Tools"`},
		{"case-long-s", "json", `{"state": "a", "ſtate": "b"}`, `duplicate key "ſtate"`},
		{"case-kelvin", "json", `{"kind": "a", "\u212aind": "b"}`, "duplicate key \"\u212aind\""},
		{"case-in-interface", "json", `{"deep": {"a": 1, "A": 2}}`, `duplicate key "A" in deep`},

		// unknown fields
		{"json-unknown", "json", `{"nmae": "a"}`, `unknown field "nmae"`},
		{"json-unknown-nested", "json", `{"tools": {"dney": []}}`, `unknown field "dney"`},
		{"yaml-unknown", "yaml", "nmae: a\n", "field nmae not found"},
		{"yaml-raw-not-loadable", "yaml", "raw: {}\n", "field raw not found"},

		// types
		{"json-type", "json", `{"name": 1}`, "thing JSON: name: want a string, got a number"},
		{"json-type-nested", "json", `{"list": ["x"]}`, "list: want an object, got a string"},

		// depth
		{"json-depth-17", "json", `{"deep": ` + nest(16) + `}`, "thing JSON: nested deeper than 16 levels"},
		{"json-depth-objects", "json", `{"deep": ` + strings.Repeat(`{"a": `, 16) + "1" + strings.Repeat("}", 16) + `}`, "nested deeper than 16 levels"},
		{"yaml-depth-17", "yaml", "deep: " + nest(16) + "\n", "thing YAML: nested deeper than 16 levels"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v testDoc
			err := testKind.Decode([]byte(tc.doc), tc.format, &v)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("accepted: %+v", v)
			case !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestDecodeDeepRaw: the depth bound holds in a sub-document left to
// another parser too, and counts the root.
func TestDecodeDeepRaw(t *testing.T) {
	var v testDoc
	// 16 levels: the root and 15 arrays.
	if err := (Doc{Noun: "x", Max: 1 << 10}).Decode([]byte(`{"raw": `+nest(15)+`}`), "json", &v); err != nil {
		t.Fatal(err)
	}
	if err := (Doc{Noun: "x", Max: 1 << 10}).Decode([]byte(`{"raw": `+nest(16)+`}`), "json", &v); err == nil {
		t.Fatal("17 levels accepted")
	}
}

func TestDecodeValue(t *testing.T) {
	var j, y testDoc
	if err := testKind.Decode([]byte(`{"tools": {"deny": ["shell"]}, "flags": {"A": "1", "a": "2"}}`), "json", &j); err != nil {
		t.Fatal(err)
	}
	if err := testKind.Decode([]byte("tools: {deny: [shell]}\nflags: {A: \"1\", a: \"2\"}\n"), "yaml", &y); err != nil {
		t.Fatal(err)
	}
	want := testDoc{Tools: rule{Deny: []string{"shell"}}, Flags: map[string]string{"A": "1", "a": "2"}}
	if !reflect.DeepEqual(j, want) || !reflect.DeepEqual(y, want) {
		t.Fatalf("JSON %+v\nYAML %+v", j, y)
	}
}

// TestTypeErrorUnwraps: the rephrased type error still is a
// *json.UnmarshalTypeError.
func TestTypeErrorUnwraps(t *testing.T) {
	var v testDoc
	err := testKind.Decode([]byte(`{"name": true}`), "json", &v)
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || te.Field != "name" {
		t.Fatalf("error %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	yamlDoc, jsonDoc := "tools: {deny: [shell]}\n", `{"tools": {"deny": ["shell"]}}`
	files := map[string]string{
		"p.yaml": yamlDoc, "p.yml": yamlDoc, "P.YML": yamlDoc, "p.json": jsonDoc, "P.JSON": jsonDoc,
		"p.toml": "x = 1", "p": jsonDoc, "yaml-in.json": yamlDoc,
		"dup.json": `{"tools": {"deny": [], "Deny": []}}`,
		"big.yaml": "name: " + strings.Repeat("x", 300) + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"p.yaml", "p.yml", "P.YML", "p.json", "P.JSON"} {
		var v testDoc
		if err := testKind.Load(filepath.Join(dir, name), &v); err != nil || len(v.Tools.Deny) != 1 {
			t.Fatalf("%s: %+v, %v", name, v, err)
		}
	}
	for name, want := range map[string]string{
		"p.toml":       `thing file "` + dir + `/p.toml": unknown extension (want .json, .yaml or .yml)`,
		"p":            "unknown extension",
		"yaml-in.json": "thing JSON: invalid character",
		"dup.json":     `thing JSON: duplicate key "Deny" in tools (in ` + dir + `/dup.json)`,
		"big.yaml":     "thing larger than 256 bytes (in ",
		"missing.yaml": "thing file: open ",
	} {
		var v testDoc
		err := testKind.Load(filepath.Join(dir, name), &v)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v does not say %q", name, err, want)
		}
	}
	var v testDoc
	if err := testKind.Load(filepath.Join(dir, "missing.json"), &v); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := testKind.Load(filepath.Join(dir, "d.yaml"), &v); err == nil {
		t.Error("loaded a directory")
	}
}

// TestFoldKeyMatchesEncodingJSON: two keys fold alike exactly when
// encoding/json fills one field from both.
func TestFoldKeyMatchesEncodingJSON(t *testing.T) {
	for _, pair := range [][2]string{
		{"state", "STATE"}, {"state", "ſtate"}, {"kind", "\u212aind"}, {"é", "É"}, {"ß", "ẞ"}, {"σ", "ς"}, {"a", "b"}, {"i", "İ"}, {"ǅ", "ǆ"},
	} {
		field := reflect.StructOf([]reflect.StructField{{Name: "F", Type: reflect.TypeFor[int](), Tag: reflect.StructTag(`json:"` + pair[0] + `"`)}})
		v := reflect.New(field)
		err := json.Unmarshal([]byte(`{"`+pair[1]+`": 1}`), v.Interface())
		merged := err == nil && v.Elem().Field(0).Int() == 1
		if folded := foldKey(pair[0]) == foldKey(pair[1]); folded != merged {
			t.Errorf("%q %q: foldKey says %v, encoding/json %v", pair[0], pair[1], folded, merged)
		}
	}
	// encoding/json's foldName agrees with bytes.EqualFold; so must foldKey.
	for r := rune(0); r < 0x20000; r++ {
		for _, r2 := range []rune{unicode.SimpleFold(r), unicode.ToUpper(r), unicode.ToLower(r), unicode.ToTitle(r), r + 1} {
			a, b := string(r), string(r2)
			if (foldKey(a) == foldKey(b)) != bytes.EqualFold([]byte(a), []byte(b)) {
				t.Fatalf("%q %q: foldKey and bytes.EqualFold disagree", a, b)
			}
		}
	}
}

// FuzzDecode: Decode never panics; a JSON document it accepts,
// encoding/json accepts too, with the same result, and the accepted value
// encodes to a document Decode accepts again.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"tools": {"deny": ["shell"]}, "flags": {"A": "1", "a": "2"}, "raw": {"x": [1, {"y": null}]}}`), false)
	f.Add([]byte(`{"list": [{"deny": []}, {"allow": ["x"]}], "sub": {"k": {"deny": ["a"]}}, "ptr": {}, "deep": [[{"a": 1}]]}`), false)
	f.Add([]byte(`{"state": "a", "ſtate": "b"}`), false)
	f.Add([]byte(`{"deep": `+nest(16)+`}`), false)
	f.Add([]byte(`{} {}`), false)
	f.Add([]byte("tools: {deny: [shell]}\nflags: {A: \"1\", a: \"2\"}\nlist: [{deny: []}]\n"), true)
	f.Add([]byte("name: a\n---\nname: b\n"), true)
	f.Add([]byte("a: &x [*x]\n"), true)
	big := Doc{Noun: "thing", Max: 4 << 10}
	f.Fuzz(func(t *testing.T, data []byte, isYAML bool) {
		format := "json"
		if isYAML {
			format = "yaml"
		}
		var v testDoc
		if err := big.Decode(data, format, &v); err != nil || isYAML {
			return
		}
		var w testDoc
		if err := json.Unmarshal(data, &w); err != nil {
			t.Fatalf("accepted a document encoding/json refuses: %v", err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("Decode %+v\nencoding/json %+v", v, w)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatalf("accepted value does not encode: %v", err)
		}
		if buf.Len() > big.Max {
			return // escapes made it longer
		}
		var x testDoc
		if err := big.Decode(buf.Bytes(), "json", &x); err != nil {
			t.Fatalf("re-encoded document refused: %v\n%s", err, buf.Bytes())
		}
	})
}

// limited is a document that validates itself.
type limited struct {
	N int `json:"n" yaml:"n"`
}

func (l *limited) Validate() error {
	if l.N > 3 {
		return errors.New("n over 3")
	}
	return nil
}

func TestParseAndLoadFileValidate(t *testing.T) {
	d := Doc{Noun: "doc", Max: 64}
	if v, err := Parse[limited](d, "pkg", []byte(`{"n":2}`), "json"); err != nil || v.N != 2 {
		t.Fatalf("Parse = %+v, %v", v, err)
	}
	if _, err := Parse[limited](d, "pkg", []byte("n: 4\n"), "yaml"); err == nil || err.Error() != "n over 3" {
		t.Fatalf("Parse of an invalid document: %v", err)
	}
	if _, err := Parse[limited](d, "pkg", []byte(`{"m":1}`), "json"); err == nil || !strings.HasPrefix(err.Error(), "pkg: doc JSON: ") {
		t.Fatalf("Parse of an undecodable document: %v", err)
	}
	path := filepath.Join(t.TempDir(), "d.yaml")
	if err := os.WriteFile(path, []byte("n: 9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile[limited](d, "pkg", path); err == nil || err.Error() != "n over 3 (in "+path+")" {
		t.Fatalf("LoadFile of an invalid document: %v", err)
	}
}
