package strictdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxDepth bounds the nesting of a document: objects and arrays (YAML
// mappings and sequences) inside each other, the root included.
const MaxDepth = 16

// Doc is one kind of document.
type Doc struct {
	// Noun names the document in errors: "policy", "rules".
	Noun string
	// Max is the largest document accepted, in bytes.
	Max int
}

// Decode decodes data, in format "json" or "yaml" (also "yml", in any
// case), into v, a pointer, strictly (see the package documentation).
func (d Doc) Decode(data []byte, format string, v any) error {
	if len(data) > d.Max { // mutation: strictdoc size bound
		return fmt.Errorf("%s larger than %d bytes", d.Noun, d.Max)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("empty %s document", d.Noun)
	}
	switch strings.ToLower(format) {
	case "json":
		if err := d.checkJSON(data, reflect.TypeOf(v)); err != nil {
			return fmt.Errorf("%s JSON: %w", d.Noun, err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("%s JSON: %w", d.Noun, typeError(err))
		}
	case "yaml", "yml":
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("%s YAML: %w", d.Noun, err)
		}
		if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
			return fmt.Errorf("%s YAML: the document must be a mapping", d.Noun)
		}
		if yamlDepth(doc.Content[0]) > MaxDepth { // mutation: strictdoc yaml depth
			return fmt.Errorf("%s YAML: nested deeper than %d levels", d.Noun, MaxDepth)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(v); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("empty %s document", d.Noun)
			}
			return fmt.Errorf("%s YAML: %w", d.Noun, err)
		}
		var extra yaml.Node
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) { // mutation: strictdoc second yaml document
			return fmt.Errorf("%s YAML: more than one document", d.Noun)
		}
	default:
		return fmt.Errorf("unknown %s format %q (want json or yaml)", d.Noun, format)
	}
	return nil
}

// Load reads the file at path, JSON if its name ends in ".json" and YAML
// if it ends in ".yaml" or ".yml" (in any case), and decodes it into v
// with [Doc.Decode]. It reads at most Max+1 bytes. The errors of the
// document end in "(in <path>)".
func (d Doc) Load(path string, v any) error {
	var format string
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		format = "json"
	case ".yaml", ".yml":
		format = "yaml"
	default:
		return fmt.Errorf("%s file %q: unknown extension (want .json, .yaml or .yml)", d.Noun, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s file: %w", d.Noun, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(d.Max)+1))
	if err != nil {
		return fmt.Errorf("%s file %q: %w", d.Noun, path, err)
	}
	if err := d.Decode(data, format, v); err != nil {
		return fmt.Errorf("%w (in %s)", err, path)
	}
	return nil
}

// Validated is a document type whose pointer checks the decoded value.
type Validated[T any] interface {
	*T
	Validate() error
}

// Parse decodes data into a new T with [Doc.Decode] and validates it.
// Decoding errors are prefixed with prefix and ": " (the package name:
// "posture: policy JSON: ..."); validation errors are returned as they
// are (they name their package already).
func Parse[T any, P Validated[T]](d Doc, prefix string, data []byte, format string) (*T, error) {
	v := new(T)
	if err := d.Decode(data, format, v); err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	if err := P(v).Validate(); err != nil {
		return nil, err
	}
	return v, nil
}

// LoadFile is [Parse] for the file at path ([Doc.Load]); validation
// errors end in "(in <path>)".
func LoadFile[T any, P Validated[T]](d Doc, prefix, path string) (*T, error) {
	v := new(T)
	if err := d.Load(path, v); err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	if err := P(v).Validate(); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return v, nil
}

// checkJSON walks data, which must be one JSON object and nothing else,
// and fails on duplicate keys and on nesting deeper than MaxDepth. t is
// the type data will be decoded into: it says how each object's keys
// compare. The walk is iterative.
func (d Doc) checkJSON(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // no number is too large to walk over
	if tok, err := dec.Token(); err != nil {
		return err
	} else if tok != json.Delim('{') {
		return errors.New("the document must be a JSON object")
	}
	stack := []*frame{newFrame(deref(t), true)}
	for len(stack) > 0 {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF // the document ends inside the object
		} else if err != nil {
			return err
		}
		top := stack[len(stack)-1]
		if top.object && top.atKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				continue
			}
			key, _ := tok.(string) // the decoder returns only strings here
			k := key
			if !top.shape.exactKeys() { // mutation: strictdoc folded keys
				k = foldKey(key)
			}
			if top.keys[k] { // mutation: strictdoc duplicate keys
				return fmt.Errorf("duplicate key %q%s", trunc(key), where(stack))
			}
			top.keys[k] = true
			top.atKey, top.key, top.value = false, key, top.shape.field(key)
			continue
		}
		var child shape
		switch {
		case top.object:
			top.atKey = true // tok is a value; a key comes next
			child = top.value
		case tok == json.Delim(']'):
			stack = stack[:len(stack)-1]
			continue
		default:
			top.index++
			child = top.shape.elem()
		}
		if tok == json.Delim('{') || tok == json.Delim('[') {
			if len(stack) >= MaxDepth { // mutation: strictdoc json depth
				return fmt.Errorf("nested deeper than %d levels", MaxDepth)
			}
			stack = append(stack, newFrame(child, tok == json.Delim('{')))
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) { // mutation: strictdoc trailing data
		return fmt.Errorf("data after the %s object", d.Noun)
	}
	return nil
}

// frame is an object or array being walked.
type frame struct {
	shape  shape // the Go type it decodes into
	object bool
	keys   map[string]bool // the keys seen, folded unless shape.exactKeys()
	atKey  bool            // in an object, the next token is a key
	key    string          // in an object, the key of the value being read
	value  shape           // in an object, the Go type of that value
	index  int             // in an array, the index of the element being read
}

func newFrame(s shape, object bool) *frame {
	return &frame{shape: s, object: object, keys: make(map[string]bool), atKey: true, index: -1}
}

// where names the innermost object of stack for an error: " in
// rules[0].posture", or "" for the root.
func where(stack []*frame) string {
	var b strings.Builder
	for i, f := range stack[:len(stack)-1] {
		switch {
		case !f.object:
			fmt.Fprintf(&b, "[%d]", f.index)
		case !plain(f.key):
			fmt.Fprintf(&b, "[%q]", trunc(f.key))
		case i == 0:
			b.WriteString(f.key)
		default:
			b.WriteString("." + f.key)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return " in " + b.String()
}

// plain reports whether key can stand unquoted in a path: a short run of
// ASCII letters, digits, '_' and '-'.
func plain(key string) bool {
	if key == "" || len(key) > 80 {
		return false
	}
	for _, c := range []byte(key) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// typeError rephrases encoding/json's "json: cannot unmarshal string into
// Go struct field rulesDoc.rules of type mcpattest.ruleDoc" as "rules: want
// an object, got a string", without Go's type names. Other errors, and
// numbers out of range, keep encoding/json's words.
func typeError(err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || te.Field == "" {
		return err
	}
	got, want := jsonKinds[te.Value], jsonKind(te.Type)
	if got == "" || want == "" {
		return err
	}
	return &fieldError{msg: fmt.Sprintf("%s: want %s, got %s", te.Field, want, got), err: err}
}

// jsonKinds names the values of json.UnmarshalTypeError.Value.
var jsonKinds = map[string]string{"string": "a string", "number": "a number", "bool": "a boolean", "array": "an array", "object": "an object"}

// jsonKind names the JSON value a Go type decodes from, or "" if it cannot
// tell.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if pt := reflect.PointerTo(t); pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType) {
		return ""
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a string" // base64
		}
		return "an array"
	case reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "a number"
	}
	return ""
}

// fieldError is a rephrased json.UnmarshalTypeError.
type fieldError struct {
	msg string
	err error
}

func (e *fieldError) Error() string { return e.msg }
func (e *fieldError) Unwrap() error { return e.err }

// shape is the Go type a JSON value decodes into, as far as key
// comparison goes.
type shape struct {
	t      reflect.Type // nil: unknown (keys fold, at every depth below)
	opaque bool         // a json.Unmarshaler: keys compare exactly, at every depth below
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()
)

// deref returns the shape of a value of type t, following pointers as
// encoding/json does.
func deref(t reflect.Type) shape {
	for t != nil {
		if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
			return shape{opaque: true}
		}
		if t.Kind() != reflect.Pointer {
			return shape{t: t}
		}
		t = t.Elem()
	}
	return shape{}
}

// exactKeys reports whether encoding/json keeps the keys of an object of
// this shape apart even when they differ only in case: a map keyed by
// plain strings, or a json.Unmarshaler's input. Anything else (a struct,
// or a type it cannot tell) folds them.
func (s shape) exactKeys() bool {
	if s.opaque {
		return true
	}
	return s.t != nil && s.t.Kind() == reflect.Map && s.t.Key().Kind() == reflect.String &&
		!reflect.PointerTo(s.t.Key()).Implements(textUnmarshalerType)
}

// field returns the shape of the value of key in an object of shape s.
func (s shape) field(key string) shape {
	switch {
	case s.opaque:
		return s
	case s.t == nil:
		return shape{}
	case s.t.Kind() == reflect.Map:
		return deref(s.t.Elem())
	case s.t.Kind() == reflect.Struct:
		return deref(structField(s.t, key))
	}
	return shape{}
}

// elem returns the shape of an element of an array of shape s.
func (s shape) elem() shape {
	switch {
	case s.opaque:
		return s
	case s.t == nil:
		return shape{}
	case s.t.Kind() == reflect.Slice || s.t.Kind() == reflect.Array:
		return deref(s.t.Elem())
	}
	return shape{}
}

// structField returns the type of the field of struct t that encoding/json
// fills from key: the field of that exact name, or else the only one whose
// name folds to it. It returns nil if it cannot tell: no such field, more
// than one, or t embeds a struct (whose fields encoding/json promotes).
func structField(t reflect.Type, key string) reflect.Type {
	var folded reflect.Type
	n := 0
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			return nil
		}
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f.Type
		}
		if foldKey(name) == foldKey(key) {
			folded, n = f.Type, n+1
		}
	}
	if n != 1 {
		return nil
	}
	return folded
}

// foldKey folds s as encoding/json folds names when it matches a key to a
// struct field (its foldName): two keys fill the same field if their
// foldKey is equal. It is more than strings.ToLower: "ſ" (U+017F) folds
// like "s", "K" (U+212A) like "k".
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteByte(byte(r))
			continue
		}
		// The smallest rune of r's fold orbit.
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		b.WriteRune(r)
	}
	return b.String()
}

// yamlDepth returns how deeply n's mappings and sequences nest (1 for a
// mapping of scalars). It does not follow aliases.
func yamlDepth(n *yaml.Node) int {
	type item struct {
		n     *yaml.Node
		depth int
	}
	max := 0
	stack := []item{{n, 1}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.n.Kind != yaml.MappingNode && it.n.Kind != yaml.SequenceNode {
			continue
		}
		if it.depth > max {
			max = it.depth
		}
		for _, c := range it.n.Content {
			stack = append(stack, item{c, it.depth + 1})
		}
	}
	return max
}

// trunc shortens s for an error message.
func trunc(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
