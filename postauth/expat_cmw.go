package postauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/reattest/reattest/internal/detcbor"
	"github.com/veraison/cmw"
)

// CMWEncoding selects how a CMW record is serialised in cmw_attestation.
type CMWEncoding uint8

const (
	// CMWCBOR encodes the record as a CBOR array [type, value, ind] (the
	// default; compact).
	CMWCBOR CMWEncoding = iota
	// CMWJSON encodes the record as a JSON array [type, base64url(value), ind].
	CMWJSON
)

// MaxEvidenceLen bounds the value of one Evidence record. The CMW, with its
// framing, must fit the 2^16-1 bytes of cmw_data.
const MaxEvidenceLen = 60 << 10

// maxMediaTypeLen bounds an Evidence media type.
const maxMediaTypeLen = 256

// Kind says which RATS conceptual message an [Evidence] value is; the CMW
// record's indicator (ind) carries it. The zero value is KindEvidence.
type Kind uint8

const (
	// KindEvidence: Evidence produced by an Attester (CMW indicator 4).
	KindEvidence Kind = iota
	// KindAttestationResult: an Attestation Result produced by a verifier
	// about the attester, which the attester passes on (the RATS passport
	// model, for example an EAR; CMW indicator 8).
	KindAttestationResult
)

// String returns "evidence" or "attestation result".
func (k Kind) String() string {
	switch k {
	case KindEvidence:
		return "evidence"
	case KindAttestationResult:
		return "attestation result"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Evidence is one RATS conceptual message carried in a CMW record: Evidence
// from an Attester, or an Attestation Result (passport model), as Kind
// says.
type Evidence struct {
	// Type is the media type, for example "application/eat+cwt".
	Type string
	// Value is the serialised Evidence.
	Value []byte
	// Kind is what Value is: Evidence (the zero value, CMW indicator 4) or
	// an Attestation Result (CMW indicator 8). An Attester that passes on a
	// verifier's Attestation Result (postauth/ear's passport Attester) sets
	// KindAttestationResult; [DecodeCMW] reports the indicator it read.
	Kind Kind
}

// indicator is the CMW indicator of k.
func (k Kind) indicator() (cmw.Indicator, error) {
	switch k {
	case KindEvidence:
		return cmw.Evidence, nil
	case KindAttestationResult:
		return cmw.AttestationResults, nil
	}
	return cmw.IndicatorNone, fmt.Errorf("%w: unknown kind %d", ErrUnsupportedCMW, uint8(k))
}

// EncodeCMW wraps ev in a CMW record with the indicator of ev.Kind: 4
// (Evidence) by default, 8 (Attestation Results) for
// KindAttestationResult.
func EncodeCMW(ev Evidence, enc CMWEncoding) ([]byte, error) {
	if err := ev.check(); err != nil {
		return nil, err
	}
	ind, err := ev.Kind.indicator()
	if err != nil {
		return nil, err
	}
	if enc == CMWCBOR {
		// The fixed shape [tstr, bstr, uint] by hand: the same bytes
		// veraison/cmw writes (CBOR core deterministic encoding; the
		// tests compare both), without its reflection.
		return encodeCBORRecord(ev.Type, ev.Value, uint64(ind)), nil
	}
	rec, err := cmw.NewMonad(ev.Type, ev.Value, ind)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedCMW, err)
	}
	if enc != CMWJSON {
		return nil, fmt.Errorf("%w: unknown encoding %d", ErrUnsupportedCMW, enc)
	}
	out, err := rec.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedCMW, err)
	}
	if len(out) > 0xFFFF {
		return nil, fmt.Errorf("%w: CMW larger than 65535 bytes", ErrTooLarge)
	}
	return out, nil
}

// DecodeCMW decodes a CMW record in CBOR or JSON. CMW collections and CBOR
// tag encodings are refused in this version of the protocol: one
// cmw_attestation carries one record. The record's indicator sets Kind:
// KindAttestationResult if it has the Attestation Results bit (8) and not
// the Evidence bit (4), KindEvidence otherwise (Evidence, both bits, or a
// record without an indicator); an indicator with neither bit is refused.
func DecodeCMW(b []byte) (ev Evidence, err error) {
	// The CMW parser is third-party code fed with peer input: a panic
	// there must become an error, not a crashed server. The fuzz target
	// calls decodeCMW, without this recover, so that it sees such panics.
	defer func() {
		if r := recover(); r != nil {
			ev, err = Evidence{}, fmt.Errorf("%w: CMW decoder failed", ErrUnsupportedCMW)
		}
	}()
	return decodeCMW(b)
}

func decodeCMW(b []byte) (Evidence, error) {
	if len(b) == 0 || len(b) > 0xFFFF {
		return Evidence{}, fmt.Errorf("%w: CMW size %d out of range", ErrUnsupportedCMW, len(b))
	}
	if ev, ind, ok := decodeCBORRecord(b); ok {
		return evidenceOf(ev, ind)
	}
	return decodeCMWRecord(b)
}

// decodeCMWRecord decodes b with veraison/cmw (JSON records, and CBOR
// records in forms decodeCBORRecord leaves to it).
func decodeCMWRecord(b []byte) (Evidence, error) {
	switch cmw.Sniff(b) {
	case cmw.FormatCBORRecord:
	case cmw.FormatJSONRecord:
		if err := checkJSONRecord(b); err != nil { // mutation: cmw json record shape
			return Evidence{}, err
		}
	case cmw.FormatCBORCollection, cmw.FormatJSONCollection:
		return Evidence{}, fmt.Errorf("%w: CMW collections are not supported", ErrUnsupportedCMW)
	default:
		return Evidence{}, fmt.Errorf("%w: not a CMW record", ErrUnsupportedCMW)
	}
	var rec cmw.CMW
	if err := rec.Deserialize(b); err != nil {
		return Evidence{}, fmt.Errorf("%w: %v", ErrUnsupportedCMW, err)
	}
	if rec.GetKind() != cmw.KindMonad {
		return Evidence{}, fmt.Errorf("%w: not a CMW record", ErrUnsupportedCMW)
	}
	typ, err := rec.GetMonadType()
	if err != nil {
		return Evidence{}, fmt.Errorf("%w: %v", ErrUnsupportedCMW, err)
	}
	val, err := rec.GetMonadValue()
	if err != nil {
		return Evidence{}, fmt.Errorf("%w: %v", ErrUnsupportedCMW, err)
	}
	ind, err := rec.GetMonadIndicator()
	if err != nil {
		ind = cmw.IndicatorNone
	}
	return evidenceOf(Evidence{Type: typ, Value: val}, ind)
}

// evidenceOf sets ev.Kind from the record's indicator and checks ev.
func evidenceOf(ev Evidence, ind cmw.Indicator) (Evidence, error) {
	if !ind.Empty() {
		if !ind.Has(cmw.Evidence) && !ind.Has(cmw.AttestationResults) {
			return Evidence{}, fmt.Errorf("%w: CMW indicator %v is neither evidence nor attestation result", ErrUnsupportedCMW, ind)
		}
		if ind.Has(cmw.AttestationResults) && !ind.Has(cmw.Evidence) {
			ev.Kind = KindAttestationResult
		}
	}
	if err := ev.check(); err != nil {
		return Evidence{}, err
	}
	return ev, nil
}

// encodeCBORRecord writes the CBOR CMW record [typ, val, ind] (RFC 8949
// core deterministic encoding: definite lengths, shortest heads). ind is
// never zero here (a Kind always has an indicator).
func encodeCBORRecord(typ string, val []byte, ind uint64) []byte {
	out := make([]byte, 0, 1+9+len(typ)+9+len(val)+9)
	out = append(out, 0x83)
	out = detcbor.AppendHead(out, 3, uint64(len(typ)))
	out = append(out, typ...)
	out = detcbor.AppendHead(out, 2, uint64(len(val)))
	out = append(out, val...)
	return detcbor.AppendHead(out, 0, ind)
}

// decodeCBORRecord reads the common form of a CBOR CMW record, the one
// encodeCBORRecord writes: a definite array of two or three items, a text
// type, a byte string value and an unsigned indicator, every head in its
// shortest form, the type valid UTF-8, nothing after the record. ok is
// false for anything else, which decodeCMWRecord (veraison/cmw) then
// decides: this path accepts nothing that one refuses and reads what both
// accept the same way (FuzzDecodeCMW compares them). The value is copied.
func decodeCBORRecord(b []byte) (ev Evidence, ind cmw.Indicator, ok bool) {
	if len(b) == 0 || (b[0] != 0x82 && b[0] != 0x83) {
		return Evidence{}, 0, false
	}
	n := int(b[0] & 0x1f)
	rest := b[1:]
	typ, rest, ok := cborItem(rest, 3)
	if !ok || !utf8.Valid(typ) {
		return Evidence{}, 0, false
	}
	val, rest, ok := cborItem(rest, 2)
	if !ok {
		return Evidence{}, 0, false
	}
	if n == 3 {
		var v uint64
		if v, rest, ok = cborHead(rest, 0); !ok || v > uint64(^cmw.Indicator(0)) {
			return Evidence{}, 0, false // an indicator wider than uint (32-bit): veraison/cmw refuses it
		}
		ind = cmw.Indicator(v)
	}
	if len(rest) != 0 {
		return Evidence{}, 0, false
	}
	return Evidence{Type: string(typ), Value: bytes.Clone(val)}, ind, true
}

// cborItem reads a definite-length string of major type major (2 or 3)
// with a shortest head, returning its content and what follows.
func cborItem(b []byte, major byte) (content, rest []byte, ok bool) {
	n, rest, ok := cborHead(b, major)
	if !ok || n > uint64(len(rest)) {
		return nil, nil, false
	}
	return rest[:n], rest[n:], true
}

// cborHead reads a head of major type major in its shortest form.
func cborHead(b []byte, major byte) (n uint64, rest []byte, ok bool) {
	n, hl, ok := detcbor.ReadArg(b)
	// Shortest form only: a longer head than needed is left to the
	// general decoder.
	if !ok || b[0]>>5 != major || hl != detcbor.HeadLen(n) {
		return 0, nil, false
	}
	return n, b[hl:], true
}

// checkJSONRecord refuses a JSON CMW record whose entries do not have the
// types of the record, [string, string, ?number], before veraison/cmw sees
// it. cmw v0.2.0 reads the value as a quoted string without checking: a
// one-byte literal (["",0]) makes it panic (slice bounds out of range), and
// a longer one ("true", "null", {}) is read as base64url of its inner bytes
// and accepted (docs/threat-model.md, "Third-party parsers").
func checkJSONRecord(b []byte) error {
	var a []json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("%w: JSON CMW record: %v", ErrUnsupportedCMW, err)
	}
	if len(a) < 2 || len(a) > 3 {
		return fmt.Errorf("%w: JSON CMW record of %d entries", ErrUnsupportedCMW, len(a))
	}
	for i, e := range a {
		e = bytes.TrimSpace(e)
		if i < 2 && (len(e) < 2 || e[0] != '"') {
			return fmt.Errorf("%w: JSON CMW record: entry %d is not a string", ErrUnsupportedCMW, i)
		}
		if i == 2 && (len(e) == 0 || e[0] < '0' || e[0] > '9') {
			return fmt.Errorf("%w: JSON CMW record: the indicator is not an unsigned integer", ErrUnsupportedCMW)
		}
	}
	return nil
}

func (ev Evidence) check() error {
	if ev.Type == "" || len(ev.Type) > maxMediaTypeLen {
		return fmt.Errorf("%w: bad media type", ErrUnsupportedCMW)
	}
	if BaseMediaType(ev.Type) == "" {
		return fmt.Errorf("%w: bad media type", ErrUnsupportedCMW)
	}
	if len(ev.Value) == 0 {
		return fmt.Errorf("%w: empty evidence", ErrUnsupportedCMW)
	}
	if len(ev.Value) > MaxEvidenceLen {
		return fmt.Errorf("%w: evidence larger than %d bytes", ErrTooLarge, MaxEvidenceLen)
	}
	return nil
}

// BaseMediaType returns the media type without parameters, lower-cased
// ("application/eat+cwt; eat_profile=x" gives "application/eat+cwt").
func BaseMediaType(t string) string {
	if plainMediaType(t) {
		return t // what mime.ParseMediaType would return, without its map
	}
	// mime.ParseMediaType accepts a bare token ("nope"): a media type is
	// type/subtype.
	mt, _, err := mime.ParseMediaType(t)
	if err != nil || !strings.Contains(mt, "/") {
		return ""
	}
	return mt
}

// plainMediaType reports whether t is a lower-case type/subtype without
// parameters, made of RFC 6838 restricted-name characters only: the common
// case, which is its own base media type.
func plainMediaType(t string) bool {
	slash := -1
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '/':
			if slash >= 0 {
				return false
			}
			slash = i
		case strings.IndexByte("!#$&^_.+-", c) >= 0:
		default:
			return false
		}
	}
	return slash > 0 && slash < len(t)-1
}

var errNoEvidence = errors.New("postauth: verifier returned no appraisal")
