package posture

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/fxamacker/cbor/v2"

	"github.com/reattest/reattest/internal/detcbor"
)

// MaxLogLen bounds an encoded posture log.
const MaxLogLen = 48 << 10

// Model is the model an agent uses.
type Model struct {
	Name    string
	Version string
	Digest  Digest
}

// Tool is an enabled tool.
type Tool struct {
	Name    string
	Version string
	Digest  Digest
}

// Template is a prompt template.
type Template struct {
	Name   string
	Digest Digest
}

// Permission is a runtime permission with its scopes.
type Permission struct {
	Name   string
	Scopes []string
}

// State is an agent's posture: the result of replaying its log. Tools and
// Permissions are sorted by name.
type State struct {
	Model       *Model
	Tools       []Tool
	Template    *Template
	Permissions []Permission
	Flags       map[string]string
}

// Tool returns the enabled tool called name.
func (s *State) Tool(name string) (Tool, bool) {
	i, ok := slices.BinarySearchFunc(s.Tools, name, func(t Tool, n string) int { return cmpString(t.Name, n) })
	if !ok {
		return Tool{}, false
	}
	return s.Tools[i], true
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := &State{Flags: maps.Clone(s.Flags)}
	if s.Model != nil {
		m := *s.Model
		m.Digest = m.Digest.clone()
		c.Model = &m
	}
	if s.Template != nil {
		t := *s.Template
		t.Digest = t.Digest.clone()
		c.Template = &t
	}
	for _, t := range s.Tools {
		t.Digest = t.Digest.clone()
		c.Tools = append(c.Tools, t)
	}
	for _, p := range s.Permissions {
		c.Permissions = append(c.Permissions, Permission{Name: p.Name, Scopes: slices.Clone(p.Scopes)})
	}
	return c
}

func toolName(t Tool) string             { return t.Name }
func permissionName(p Permission) string { return p.Name }

// upsert puts v into s, sorted by name, replacing an item of the same name.
func upsert[T any](s []T, v T, name func(T) string) []T {
	i, found := slices.BinarySearchFunc(s, name(v), func(x T, n string) int { return cmpString(name(x), n) })
	if found {
		s[i] = v
		return s
	}
	return slices.Insert(s, i, v)
}

// remove deletes the item called n from s, sorted by name. An emptied list
// becomes nil: one representation of "none", whatever the history.
func remove[T any](s []T, n string, name func(T) string) ([]T, bool) {
	i, found := slices.BinarySearchFunc(s, n, func(x T, n string) int { return cmpString(name(x), n) })
	if !found {
		return s, false
	}
	s = slices.Delete(s, i, i+1)
	if len(s) == 0 {
		s = nil
	}
	return s, true
}

// apply changes s by one event. It rejects events that make no sense in the
// current state (disabling a tool that is not enabled, revoking a permission
// that was not granted).
func (s *State) apply(e Event) error {
	c := e.Component
	switch e.Op {
	case OpSetModel:
		s.Model = &Model{Name: c.ID.Name, Version: c.ID.Version, Digest: c.Digest.clone()}
	case OpEnableTool:
		s.Tools = upsert(s.Tools, Tool{Name: c.ID.Name, Version: c.ID.Version, Digest: c.Digest.clone()}, toolName)
	case OpDisableTool:
		var ok bool
		if s.Tools, ok = remove(s.Tools, c.ID.Name, toolName); !ok {
			return fmt.Errorf("posture: disable-tool %q: not enabled", c.ID.Name)
		}
	case OpSetTemplate:
		s.Template = &Template{Name: c.ID.Name, Digest: c.Digest.clone()}
	case OpGrant:
		scopes, err := decodeScopes(*c.Raw)
		if err != nil {
			return err
		}
		s.Permissions = upsert(s.Permissions, Permission{Name: c.ID.Name, Scopes: scopes}, permissionName)
	case OpRevoke:
		var ok bool
		if s.Permissions, ok = remove(s.Permissions, c.ID.Name, permissionName); !ok {
			return fmt.Errorf("posture: revoke %q: not granted", c.ID.Name)
		}
	case OpSetFlag:
		if s.Flags == nil {
			s.Flags = make(map[string]string)
		}
		s.Flags[c.ID.Name] = string(*c.Raw)
	default:
		return fmt.Errorf("posture: unknown op %d", e.Op)
	}
	return nil
}

// Components returns the current posture as EAT measured components, sorted:
// the model, the enabled tools, the template, the permissions and the flags.
func (s *State) Components() []Component {
	var out []Component
	if s.Model != nil {
		d := s.Model.Digest
		out = append(out, Component{ID: ComponentID{Name: "model/" + s.Model.Name, Version: s.Model.Version}, Digest: &d})
	}
	for _, t := range s.Tools {
		d := t.Digest
		out = append(out, Component{ID: ComponentID{Name: "tool/" + t.Name, Version: t.Version}, Digest: &d})
	}
	if s.Template != nil {
		d := s.Template.Digest
		out = append(out, Component{ID: ComponentID{Name: "template/" + s.Template.Name}, Digest: &d})
	}
	for _, p := range s.Permissions {
		raw, _ := encodeScopes(p.Scopes)
		out = append(out, Component{ID: ComponentID{Name: "permission/" + p.Name}, Raw: &raw})
	}
	keys := slices.Collect(maps.Keys(s.Flags))
	sort.Strings(keys)
	for _, k := range keys {
		raw := []byte(s.Flags[k])
		out = append(out, Component{ID: ComponentID{Name: "flag/" + k}, Raw: &raw})
	}
	return out
}

// Log is a measured posture log: the events in order and the register hash
// they are measured with. The register value after the last event (the log
// head) is the posture digest:
//
//	head_0 = 0^n; head_i = H(head_{i-1} || H(event_i))
//
// where event_i is the canonical CBOR encoding of the event and n the hash
// size. This is a TPM PCR extend (and a TDX RTMR extend with SHA-384), so a
// hardware register can hold the head. A Log is not safe for concurrent use;
// a [Tracker] guards one.
type Log struct {
	alg     crypto.Hash
	raw     [][]byte
	events  []Event
	payload int // total length of the encoded events
}

// NewLog returns an empty log measured with alg (SHA-256, SHA-384 or SHA-512).
func NewLog(alg crypto.Hash) (*Log, error) {
	if AlgID(alg) == 0 {
		return nil, fmt.Errorf("posture: unsupported register hash %v", alg)
	}
	return &Log{alg: alg}, nil
}

// Alg is the register hash.
func (l *Log) Alg() crypto.Hash { return l.alg }

// Len is the number of events.
func (l *Log) Len() int { return len(l.events) }

// Events returns a deep copy of the events: changing them does not change
// the log.
func (l *Log) Events() []Event {
	out := make([]Event, len(l.events))
	for i, e := range l.events {
		out[i] = e.clone()
	}
	return out
}

// Measure returns H(encoded), where encoded is the canonical encoding of an
// event: the value extended into the register for that event.
func Measure(alg crypto.Hash, encoded []byte) []byte {
	h := alg.New()
	h.Write(encoded)
	return h.Sum(nil)
}

// Extend returns H(old || digest), the register extend operation.
func Extend(alg crypto.Hash, old, digest []byte) []byte {
	h := alg.New()
	h.Write(old)
	h.Write(digest)
	return h.Sum(nil)
}

// encodedLen is the length of the encoding of a log of n events whose
// encodings add up to payload bytes: a map header, key 1, the algorithm id
// (1, 7 or 8: one byte each), key 2, the array header and the events.
func encodedLen(n, payload int) int {
	hdr := 1
	switch {
	case n >= 1<<16:
		hdr = 5
	case n >= 1<<8:
		hdr = 3
	case n >= 24:
		hdr = 2
	}
	return 4 + hdr + payload
}

// canAppend reports whether an event of n encoded bytes still fits the
// log's limits (MaxEvents, MaxLogLen). Checking this before extending a
// register keeps the log encodable for as long as the register lives.
func (l *Log) canAppend(n int) error {
	if len(l.events) >= MaxEvents {
		return fmt.Errorf("posture: log longer than %d events", MaxEvents)
	}
	if encodedLen(len(l.events)+1, l.payload+n) > MaxLogLen {
		return fmt.Errorf("posture: log larger than %d bytes", MaxLogLen)
	}
	return nil
}

// append adds an encoded, checked event.
func (l *Log) append(e Event, encoded []byte) error {
	if err := l.canAppend(len(encoded)); err != nil {
		return err
	}
	l.raw = append(l.raw, encoded)
	l.events = append(l.events, e)
	l.payload += len(encoded)
	return nil
}

// wireLog is the encoding of a log: {1: alg, 2: [* event]}.
type wireLog struct {
	Alg    int               `cbor:"1,keyasint"`
	Events []cbor.RawMessage `cbor:"2,keyasint"`
}

// Encode returns the log's encoding: a CBOR map {1: alg, 2: [* event]} with
// the Named Information id of the register hash and the events in order.
func (l *Log) Encode() ([]byte, error) {
	w := wireLog{Alg: AlgID(l.alg), Events: make([]cbor.RawMessage, len(l.raw))}
	for i, r := range l.raw {
		w.Events[i] = r
	}
	b, err := detcbor.Enc.Marshal(w)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxLogLen {
		return nil, fmt.Errorf("posture: log larger than %d bytes", MaxLogLen)
	}
	return b, nil
}

// DecodeLog decodes a log, checking every event's shape and canonical
// encoding, and that b itself is the log's canonical encoding (so a log has
// one byte form: what [Log.Encode] returns). It does not check the log
// against a register: see [Log.Replay] and [Verify].
func DecodeLog(b []byte) (*Log, error) {
	if len(b) > MaxLogLen {
		return nil, fmt.Errorf("posture: log larger than %d bytes", MaxLogLen)
	}
	var w wireLog
	if err := detcbor.Dec.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("posture: decoding log: %w", err)
	}
	if AlgHash(w.Alg) == 0 {
		return nil, fmt.Errorf("posture: log: unknown register hash algorithm %d", w.Alg)
	}
	l, err := NewLog(AlgHash(w.Alg))
	if err != nil {
		return nil, err
	}
	if len(w.Events) > MaxEvents {
		return nil, fmt.Errorf("posture: log longer than %d events", MaxEvents)
	}
	for i, r := range w.Events {
		e, err := DecodeEvent(r)
		if err != nil {
			return nil, fmt.Errorf("posture: event %d: %w", i, err)
		}
		if err := l.append(e, slices.Clone([]byte(r))); err != nil {
			return nil, err
		}
	}
	canon, err := l.Encode()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(canon, b) {
		return nil, errors.New("posture: log is not canonically encoded")
	}
	return l, nil
}

// Replay recomputes the register from the empty value and rebuilds the
// state, event by event. It fails on an event that makes no sense in the
// state so far.
func (l *Log) Replay() (head []byte, st *State, err error) {
	head = make([]byte, l.alg.Size())
	st = &State{}
	for i, e := range l.events {
		if err := st.apply(e); err != nil {
			return nil, nil, fmt.Errorf("posture: event %d: %w", i, err)
		}
		head = Extend(l.alg, head, Measure(l.alg, l.raw[i]))
	}
	return head, st, nil
}

// ErrHeadMismatch means a log does not reproduce the register value the
// Evidence covers: an event was changed, dropped, added or reordered.
var ErrHeadMismatch = errors.New("posture: log does not reproduce the register value")

// Verify decodes log, replays it and checks that it reproduces head.
func Verify(log, head []byte) (*State, error) {
	l, err := DecodeLog(log)
	if err != nil {
		return nil, err
	}
	return l.verifyHead(head)
}

// VerifyRegister is Verify for a register whose hash the Evidence fixes (a
// signed register value, a TPM PCR bank): the log must be measured with alg.
func VerifyRegister(alg crypto.Hash, log, head []byte) (*State, error) {
	l, err := DecodeLog(log)
	if err != nil {
		return nil, err
	}
	if l.alg != alg {
		return nil, fmt.Errorf("posture: log measured with %v, register uses %v", l.alg, alg)
	}
	return l.verifyHead(head)
}

// verifyHead replays l and checks that it reproduces head.
func (l *Log) verifyHead(head []byte) (*State, error) {
	got, st, err := l.Replay()
	if err != nil {
		return nil, err
	}
	if len(head) != len(got) || string(got) != string(head) { // mutation: posture log replay
		return nil, ErrHeadMismatch
	}
	return st, nil
}
