package mcpattest

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/reattest/reattest/middleware"
)

// The classifier reads a JSON-RPC body (one message or a batch) once and
// says which rules apply. It reads the body as the MCP SDK's decoder would
// only where they cannot differ, and refuses what they might read
// differently: the SDK (segmentio/encoding, exact-case fields) keeps the
// last of two equal keys and ignores data after the first value, while
// encoding/json merges keys that differ only in case. So a body is refused
// (errAmbiguous) if it is not valid UTF-8 JSON, carries anything after its
// value, repeats a key (or has keys equal but for case) in a message or in
// its params, spells a significant key in another case ("Method", "NAME"),
// or has a method or a target that is not a string or contains U+FFFD (an
// invalid escape, which decoders may replace or drop). What remains has
// one reading.

// errAmbiguous: the body has no single reading as JSON-RPC.
var errAmbiguous = errors.New("mcpattest: the body is not a JSON-RPC message or batch with a single reading")

// maxKeys bounds the keys of a message object and of its params object: a
// message has a handful.
const maxKeys = 64

// Significant keys of a message and of its params.
var (
	messageKeys = []string{"jsonrpc", "id", "method", "params", "result", "error"}
	paramsKeys  = []string{"name", "uri"}
)

// message is what the classifier keeps of one JSON-RPC message.
type message struct {
	request bool            // it has a method (a call or a notification)
	method  string          // its method
	id      json.RawMessage // its id as sent, nil if it has none (a notification)
	params  []byte          // its params as sent, nil if none
}

// classification is what a body asks for.
type classification struct {
	batch bool
	// ids are the ids of the calls (requests with an id), as sent, in
	// order: a refusal answers each.
	ids []json.RawMessage
	// rules are the matched rules, each once, strictest first.
	rules []*rule
}

// classify reads body and returns the rules that apply to it. A body
// whose reading is ambiguous, or a request whose target a rule needs and
// cannot be read, is an error: never a pass.
func classify(body []byte, rules []*rule) (*classification, error) {
	if !utf8.Valid(body) || !json.Valid(body) { // mutation: mcp valid json
		return nil, errAmbiguous
	}
	s := &scanner{b: body}
	s.ws()
	c := &classification{}
	var msgs []message
	switch s.peek() {
	case '{':
		m, err := readMessage(s)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	case '[':
		c.batch = true
		err := s.array(func(start, end int) error {
			if body[start] != '{' {
				return errAmbiguous
			}
			m, err := readMessage(&scanner{b: body[:end], i: start})
			msgs = append(msgs, m)
			return err
		})
		if err != nil {
			return nil, err
		}
	default:
		return nil, errAmbiguous
	}
	for _, m := range msgs { // mutation: mcp batch every message
		if m.request && m.id != nil {
			c.ids = append(c.ids, m.id)
		}
		if !m.request {
			continue // a response (to a server's request) calls nothing
		}
		target, targetErr := "", error(nil)
		targetRead := ""
		for _, r := range rules {
			if !match(r.Method, m.method) {
				continue
			}
			if r.key != "" {
				if targetRead != r.key {
					target, targetErr = readTarget(m.params, r.key)
					targetRead = r.key
				}
				if targetErr != nil { // mutation: mcp unreadable target
					return nil, targetErr
				}
				if !matchAny(r.targets, target) {
					continue
				}
			}
			if !slices.Contains(c.rules, r) {
				c.rules = append(c.rules, r)
			}
		}
	}
	slices.SortStableFunc(c.rules, stricter)
	return c, nil
}

// stricter orders rules so that the strictest runs outermost: operation
// mode first (its verdict is bound to this very body and can serve the
// connection-mode rules nested in it), then shorter max-age, then the
// order of the rules.
func stricter(a, b *rule) int {
	if a.route.Mode != b.route.Mode {
		if a.route.Mode == middleware.ModeOperation {
			return -1
		}
		return 1
	}
	if a.route.MaxAge != b.route.MaxAge {
		if a.route.MaxAge < b.route.MaxAge {
			return -1
		}
		return 1
	}
	return a.index - b.index
}

// readMessage reads the message object at s.
func readMessage(s *scanner) (message, error) {
	var m message
	var keys []string
	err := s.object(func(key string, start, end int) error {
		if err := checkKey(keys, key, messageKeys); err != nil {
			return err
		}
		keys = append(keys, key)
		v := s.b[start:end]
		switch key {
		case "method":
			method, ok := decodeString(v)
			if !ok { // mutation: mcp method is a string
				return errAmbiguous
			}
			m.request, m.method = true, method
		case "id":
			m.id = v
		case "params":
			m.params = v
		}
		return nil
	})
	if !m.request {
		m.id = nil // a response's id names a server request, not a call
	}
	return m, err
}

// readTarget reads params[key] (the tool name, the resource URI).
func readTarget(params []byte, key string) (string, error) {
	if len(params) == 0 || params[0] != '{' {
		return "", errAmbiguous
	}
	var keys []string
	target, found := "", false
	err := (&scanner{b: params}).object(func(k string, start, end int) error {
		if err := checkKey(keys, k, paramsKeys); err != nil {
			return err
		}
		keys = append(keys, k)
		if k == key {
			v, ok := decodeString(params[start:end])
			if !ok {
				return errAmbiguous
			}
			target, found = v, true
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if !found {
		return "", errAmbiguous
	}
	return target, nil
}

// checkKey refuses a key that repeats one of seen, or differs from one of
// them only in case, or spells a significant key in another case.
func checkKey(seen []string, key string, significant []string) error {
	if len(seen) >= maxKeys {
		return errAmbiguous
	}
	for _, k := range seen {
		if strings.EqualFold(k, key) { // mutation: mcp duplicate keys
			return errAmbiguous
		}
	}
	for _, k := range significant {
		if key != k && strings.EqualFold(key, k) { // mutation: mcp key case
			return errAmbiguous
		}
	}
	return nil
}

// decodeString decodes the JSON string v. It fails on other values and on
// strings that contain U+FFFD (an invalid escape such as a lone surrogate,
// which decoders may replace or drop).
func decodeString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	var s string
	if !slices.Contains(v, '\\') {
		s = string(v[1 : len(v)-1])
	} else if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	if strings.ContainsRune(s, utf8.RuneError) {
		return "", false
	}
	return s, true
}

// scanner walks a JSON text that json.Valid accepted.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// skipString moves past the string that starts at s.i.
func (s *scanner) skipString() {
	s.i++ // the opening quote
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
		case '"':
			s.i++
			return
		default:
			s.i++
		}
	}
}

// skipValue moves past the value that starts at s.i, iteratively.
func (s *scanner) skipValue() {
	switch s.peek() {
	case '"':
		s.skipString()
		return
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				s.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return
				}
			}
			s.i++
		}
		return
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return
		}
		s.i++
	}
}

// object calls f for each member of the object at s.i with its decoded
// key and the bounds of its value, and moves past the object. It stops at
// f's first error.
func (s *scanner) object(f func(key string, start, end int) error) error {
	s.i++ // {
	s.ws()
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for s.i < len(s.b) {
		s.ws()
		kstart := s.i
		s.skipString()
		key, ok := decodeString(s.b[kstart:s.i])
		if !ok {
			return errAmbiguous
		}
		s.ws()
		s.i++ // :
		s.ws()
		start := s.i
		s.skipValue()
		if err := f(key, start, s.i); err != nil {
			return err
		}
		s.ws()
		if s.peek() == ',' {
			s.i++
			continue
		}
		s.i++ // }
		return nil
	}
	return errAmbiguous
}

// array calls f with the bounds of each element of the array at s.i and
// moves past the array. It stops at f's first error.
func (s *scanner) array(f func(start, end int) error) error {
	s.i++ // [
	s.ws()
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for s.i < len(s.b) {
		s.ws()
		start := s.i
		s.skipValue()
		if err := f(start, s.i); err != nil {
			return err
		}
		s.ws()
		if s.peek() == ',' {
			s.i++
			continue
		}
		s.i++ // ]
		return nil
	}
	return errAmbiguous
}
