// Package detcbor holds the CBOR encoding and decoding modes reattest uses
// for everything it signs or hashes: deterministic encoding (RFC 8949
// section 4.2.1) and strict, bounded decoding of peer input.
package detcbor

import (
	"github.com/fxamacker/cbor/v2"
)

// Enc encodes with the RFC 8949 core deterministic rules: shortest integer
// forms, definite lengths, map keys sorted bytewise.
var Enc cbor.EncMode

// Dec decodes peer input strictly: no duplicate map keys, no
// indefinite lengths, no unknown struct fields, bounded nesting and sizes.
var Dec cbor.DecMode

// DecNoTags is Dec that also refuses CBOR tags (for claim sets whose
// profile allows none, such as an untagged CWT NumericDate).
var DecNoTags cbor.DecMode

func init() {
	var err error
	Enc, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	opts := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		MaxNestedLevels:   16,
		MaxArrayElements:  4096,
		MaxMapPairs:       256,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		IntDec:            cbor.IntDecConvertSignedOrFail,
	}
	if Dec, err = opts.DecMode(); err != nil {
		panic(err)
	}
	opts.TagsMd = cbor.TagsForbidden
	if DecNoTags, err = opts.DecMode(); err != nil {
		panic(err)
	}
}
