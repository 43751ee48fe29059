package posture

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/reattest/reattest/internal/detcbor"
)

// Op is the kind of a posture change event.
type Op uint8

// Posture change events. The numbers are part of the log encoding.
const (
	OpSetModel    Op = 1 // the agent now uses this model
	OpEnableTool  Op = 2 // a tool is enabled
	OpDisableTool Op = 3 // a tool is disabled
	OpSetTemplate Op = 4 // the agent now uses this prompt template
	OpGrant       Op = 5 // a permission is granted with these scopes (replacing earlier scopes)
	OpRevoke      Op = 6 // a permission is revoked
	OpSetFlag     Op = 7 // a configuration flag is set
)

var opNames = map[Op]string{
	OpSetModel: "set-model", OpEnableTool: "enable-tool", OpDisableTool: "disable-tool",
	OpSetTemplate: "set-template", OpGrant: "grant", OpRevoke: "revoke", OpSetFlag: "set-flag",
}

func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Limits on posture items; the log is peer input on the verifier side.
const (
	MaxNameLen    = 128
	MaxVersionLen = 64
	MaxValueLen   = 256
	MaxScopes     = 64
	MaxEvents     = 1024
)

// Named Information hash algorithm identifiers (RFC 6920 registry), as used
// by CoSWID and EAT measured components.
const (
	AlgSHA256 = 1
	AlgSHA384 = 7
	AlgSHA512 = 8
)

// AlgID returns the Named Information identifier of h, or 0.
func AlgID(h crypto.Hash) int {
	switch h {
	case crypto.SHA256:
		return AlgSHA256
	case crypto.SHA384:
		return AlgSHA384
	case crypto.SHA512:
		return AlgSHA512
	}
	return 0
}

// AlgHash returns the hash for a Named Information identifier, or 0.
func AlgHash(id int) crypto.Hash {
	switch id {
	case AlgSHA256:
		return crypto.SHA256
	case AlgSHA384:
		return crypto.SHA384
	case AlgSHA512:
		return crypto.SHA512
	}
	return 0
}

// Digest is a digested measurement: [alg, value].
type Digest struct {
	_     struct{} `cbor:",toarray"`
	Alg   int
	Value []byte
}

// clone returns d with its own copy of Value.
func (d Digest) clone() Digest { return Digest{Alg: d.Alg, Value: slices.Clone(d.Value)} }

// Equal reports whether d and o are the same algorithm and value.
func (d Digest) Equal(o Digest) bool { return d.Alg == o.Alg && bytes.Equal(d.Value, o.Value) }

// Digest algorithm names in the text form "<name>:<hex>" (the RFC 6920
// Named Information hash names).
var algNames = map[int]string{AlgSHA256: "sha-256", AlgSHA384: "sha-384", AlgSHA512: "sha-512"}

// String returns the text form of d, "sha-256:<lowercase hex>", as used in
// posture policies. An unknown algorithm prints as "alg(<id>):<hex>".
func (d Digest) String() string {
	name, ok := algNames[d.Alg]
	if !ok {
		name = fmt.Sprintf("alg(%d)", d.Alg)
	}
	return name + ":" + hex.EncodeToString(d.Value)
}

// ParseDigest parses the text form of a digest: "sha-256:<hex>",
// "sha-384:<hex>" or "sha-512:<hex>", with exactly as many hex digits
// (either case) as the hash has.
func ParseDigest(s string) (Digest, error) {
	name, hx, ok := strings.Cut(s, ":")
	if !ok {
		return Digest{}, fmt.Errorf("posture: digest %q: want <alg>:<hex>, for example sha-256:<64 hex digits>", trunc(s))
	}
	alg := 0
	for id, n := range algNames {
		if n == name {
			alg = id
		}
	}
	if alg == 0 {
		return Digest{}, fmt.Errorf("posture: digest %q: unknown algorithm %q (want sha-256, sha-384 or sha-512)", trunc(s), trunc(name))
	}
	size := AlgHash(alg).Size()
	v, err := hex.DecodeString(hx)
	if err != nil || len(v) != size {
		return Digest{}, fmt.Errorf("posture: digest %q: %s needs %d hex digits", trunc(s), name, 2*size)
	}
	return Digest{Alg: alg, Value: v}, nil
}

// trunc shortens s for an error message.
func trunc(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

func (d Digest) check() error {
	h := AlgHash(d.Alg)
	if h == 0 {
		return fmt.Errorf("unknown digest algorithm %d", d.Alg)
	}
	if len(d.Value) != h.Size() {
		return fmt.Errorf("digest of %d bytes for %v", len(d.Value), h)
	}
	return nil
}

// ComponentID is a measured component's id: [name, ?[version]].
type ComponentID struct {
	Name    string
	Version string
}

// MarshalCBOR encodes [name] or [name, [version]].
func (id ComponentID) MarshalCBOR() ([]byte, error) {
	if id.Version == "" {
		return detcbor.Enc.Marshal([]any{id.Name})
	}
	return detcbor.Enc.Marshal([]any{id.Name, []any{id.Version}})
}

// UnmarshalCBOR decodes [name] or [name, [version]].
func (id *ComponentID) UnmarshalCBOR(b []byte) error {
	var parts []cbor.RawMessage
	if err := detcbor.Dec.Unmarshal(b, &parts); err != nil {
		return err
	}
	if len(parts) < 1 || len(parts) > 2 {
		return errors.New("component id must be [name, ?[version]]")
	}
	if err := detcbor.Dec.Unmarshal(parts[0], &id.Name); err != nil {
		return err
	}
	id.Version = ""
	if len(parts) == 2 {
		var v []string
		if err := detcbor.Dec.Unmarshal(parts[1], &v); err != nil {
			return err
		}
		if len(v) != 1 || v[0] == "" {
			return errors.New("component version must be [version]")
		}
		id.Version = v[0]
	}
	return nil
}

// Component is an EAT measured component
// (draft-ietf-rats-eat-measured-component): an id and either a digested
// measurement (key 2) or a raw measurement (key 5).
type Component struct {
	ID     ComponentID `cbor:"1,keyasint"`
	Digest *Digest     `cbor:"2,keyasint,omitempty"`
	Raw    *[]byte     `cbor:"5,keyasint,omitempty"`
}

// clone returns a deep copy of c.
func (c Component) clone() Component {
	out := Component{ID: c.ID}
	if c.Digest != nil {
		d := c.Digest.clone()
		out.Digest = &d
	}
	if c.Raw != nil {
		r := append([]byte{}, *c.Raw...)
		out.Raw = &r
	}
	return out
}

// Event is one entry of the measured posture log: [op, component].
type Event struct {
	_         struct{} `cbor:",toarray"`
	Op        Op
	Component Component
}

// clone returns a deep copy of e.
func (e Event) clone() Event { return Event{Op: e.Op, Component: e.Component.clone()} }

// Encode returns the canonical encoding of e, which is what the register
// measures. It fails if e is not a well-formed event.
func (e Event) Encode() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	return detcbor.Enc.Marshal(e)
}

// DecodeEvent decodes one event and checks that b is its canonical
// encoding, so that an event has exactly one byte form and one digest.
func DecodeEvent(b []byte) (Event, error) {
	var e Event
	if err := detcbor.Dec.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("posture: decoding event: %w", err)
	}
	if err := e.check(); err != nil {
		return Event{}, err
	}
	canon, err := detcbor.Enc.Marshal(e)
	if err != nil {
		return Event{}, fmt.Errorf("posture: encoding event: %w", err)
	}
	if !bytes.Equal(canon, b) {
		return Event{}, errors.New("posture: event is not canonically encoded")
	}
	return e, nil
}

func checkText(what, s string, max int, required bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("posture: empty %s", what)
		}
		return nil
	}
	if len(s) > max {
		return fmt.Errorf("posture: %s longer than %d bytes", what, max)
	}
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return fmt.Errorf("posture: %s has non-printable characters", what)
	}
	return nil
}

// check enforces the shape each op requires (docs/posture.md, "Events").
func (e Event) check() error {
	c := e.Component
	if err := checkText("name", c.ID.Name, MaxNameLen, true); err != nil {
		return err
	}
	if err := checkText("version", c.ID.Version, MaxVersionLen, false); err != nil {
		return err
	}
	wantDigest := false
	switch e.Op {
	case OpSetModel, OpEnableTool, OpDisableTool:
		wantDigest = true
	case OpSetTemplate:
		wantDigest = true
		if c.ID.Version != "" {
			return errors.New("posture: set-template has no version")
		}
	case OpGrant, OpRevoke, OpSetFlag:
		if c.ID.Version != "" {
			return fmt.Errorf("posture: %v has no version", e.Op)
		}
	default:
		return fmt.Errorf("posture: unknown op %d", e.Op)
	}
	if wantDigest {
		if c.Digest == nil || c.Raw != nil {
			return fmt.Errorf("posture: %v needs a digested measurement only", e.Op)
		}
		if err := c.Digest.check(); err != nil {
			return fmt.Errorf("posture: %v: %w", e.Op, err)
		}
		return nil
	}
	if c.Digest != nil || c.Raw == nil {
		return fmt.Errorf("posture: %v needs a raw measurement only", e.Op)
	}
	raw := *c.Raw
	switch e.Op {
	case OpRevoke:
		if len(raw) != 0 {
			return errors.New("posture: revoke carries an empty raw measurement")
		}
	case OpSetFlag:
		if err := checkText("flag value", string(raw), MaxValueLen, false); err != nil {
			return err
		}
	case OpGrant:
		if _, err := decodeScopes(raw); err != nil {
			return err
		}
	}
	return nil
}

// encodeScopes returns the canonical raw measurement of a grant: a CBOR
// array of the scopes, sorted and without duplicates.
func encodeScopes(scopes []string) ([]byte, error) {
	s := slices.Clone(scopes)
	slices.Sort(s)
	s = slices.Compact(s)
	if len(s) > MaxScopes {
		return nil, fmt.Errorf("posture: more than %d scopes", MaxScopes)
	}
	for _, sc := range s {
		if err := checkText("scope", sc, MaxNameLen, true); err != nil {
			return nil, err
		}
	}
	if s == nil {
		s = []string{}
	}
	return detcbor.Enc.Marshal(s)
}

func decodeScopes(raw []byte) ([]string, error) {
	var s []string
	if err := detcbor.Dec.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("posture: grant scopes: %w", err)
	}
	canon, err := encodeScopes(s)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(canon, raw) {
		return nil, errors.New("posture: grant scopes are not sorted, unique and canonical")
	}
	return s, nil
}
