package postauth

import (
	"errors"
	"fmt"
	"mime"

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

// Evidence is one RATS conceptual message carried in a CMW record: Evidence
// from an Attester, or an Attestation Result (passport model).
type Evidence struct {
	// Type is the media type, for example "application/eat+cwt".
	Type string
	// Value is the serialised Evidence.
	Value []byte
}

// EncodeCMW wraps ev in a CMW record with the Evidence indicator.
func EncodeCMW(ev Evidence, enc CMWEncoding) ([]byte, error) {
	if err := ev.check(); err != nil {
		return nil, err
	}
	rec, err := cmw.NewMonad(ev.Type, ev.Value, cmw.Evidence)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedCMW, err)
	}
	var out []byte
	switch enc {
	case CMWCBOR:
		out, err = rec.MarshalCBOR()
	case CMWJSON:
		out, err = rec.MarshalJSON()
	default:
		return nil, fmt.Errorf("%w: unknown encoding %d", ErrUnsupportedCMW, enc)
	}
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
// cmw_attestation carries one record.
func DecodeCMW(b []byte) (ev Evidence, err error) {
	if len(b) == 0 || len(b) > 0xFFFF {
		return Evidence{}, fmt.Errorf("%w: CMW size %d out of range", ErrUnsupportedCMW, len(b))
	}
	switch cmw.Sniff(b) {
	case cmw.FormatCBORRecord, cmw.FormatJSONRecord:
	case cmw.FormatCBORCollection, cmw.FormatJSONCollection:
		return Evidence{}, fmt.Errorf("%w: CMW collections are not supported", ErrUnsupportedCMW)
	default:
		return Evidence{}, fmt.Errorf("%w: not a CMW record", ErrUnsupportedCMW)
	}
	// The CMW parser is third-party code fed with peer input: a panic
	// there must become an error, not a crashed server.
	defer func() {
		if r := recover(); r != nil {
			ev, err = Evidence{}, fmt.Errorf("%w: CMW decoder failed", ErrUnsupportedCMW)
		}
	}()
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
	if ind, err := rec.GetMonadIndicator(); err == nil && !ind.Empty() && !ind.Has(cmw.Evidence) && !ind.Has(cmw.AttestationResults) {
		return Evidence{}, fmt.Errorf("%w: CMW indicator %v is neither evidence nor attestation result", ErrUnsupportedCMW, ind)
	}
	ev = Evidence{Type: typ, Value: val}
	if err := ev.check(); err != nil {
		return Evidence{}, err
	}
	return ev, nil
}

func (ev Evidence) check() error {
	if ev.Type == "" || len(ev.Type) > maxMediaTypeLen {
		return fmt.Errorf("%w: bad media type", ErrUnsupportedCMW)
	}
	if _, _, err := mime.ParseMediaType(ev.Type); err != nil {
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
	mt, _, err := mime.ParseMediaType(t)
	if err != nil {
		return ""
	}
	return mt
}

var errNoEvidence = errors.New("postauth: verifier returned no appraisal")
