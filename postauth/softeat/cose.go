package softeat

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"io"
	"math/big"

	"github.com/reattest/reattest/internal/detcbor"
)

// The profile's token has one shape (docs/protocol.md section 4.7), so it
// is written and read here directly rather than through a general COSE and
// CBOR library: a tagged COSE_Sign1 (RFC 9052)
//
//	18([ bstr .cbor {1: -7, 4: kid}, {}, bstr payload, bstr r||s ])
//
// whose payload is the deterministically encoded claims. Anything else is
// not a token of this profile. TestTokenMatchesGoCose checks the bytes
// against veraison/go-cose, and the golden vectors against an independent
// recomputation.

// cborTag18 and array4 start a tagged COSE_Sign1.
const (
	cborTag18 = 0xd2
	array4    = 0x84
)

// sigStructure returns the CBOR encoding of the COSE Sig_structure
// ["Signature1", protected, h”, payload] that an ES256 COSE_Sign1 signs
// (RFC 9052 section 4.4). protected is the bstr-wrapped protected header
// as it appears in the token.
func sigStructure(protected, payload []byte) []byte {
	out := make([]byte, 0, 1+11+len(protected)+1+9+len(payload))
	out = append(out, array4)
	out = append(out, 0x6a)
	out = append(out, "Signature1"...)
	out = append(out, protected...)
	out = append(out, 0x40) // external_aad: empty
	out = detcbor.AppendHead(out, 2, uint64(len(payload)))
	return append(out, payload...)
}

// encodeToken returns the tagged COSE_Sign1 with the given bstr-wrapped
// protected header, payload and 64-byte r||s signature.
func encodeToken(protected, payload, sig []byte) []byte {
	out := make([]byte, 0, 2+len(protected)+1+9+len(payload)+2+len(sig))
	out = append(out, cborTag18, array4)
	out = append(out, protected...)
	out = append(out, emptyUnprotected...)
	out = detcbor.AppendHead(out, 2, uint64(len(payload)))
	out = append(out, payload...)
	out = detcbor.AppendHead(out, 2, uint64(len(sig)))
	return append(out, sig...)
}

// errNotToken is a token that does not have the profile's shape.
var errNotToken = errors.New("softeat: not a tagged COSE_Sign1 of this profile")

// decodeToken splits a token into its bstr-wrapped protected header (as it
// appears in the token), the raw unprotected header, the payload and the
// signature. It accepts the profile's shape only: the tag, four entries,
// definite lengths, and nothing after them.
func decodeToken(tok []byte) (protected, unprotected, payload, sig []byte, err error) {
	if len(tok) < 2 || tok[0] != cborTag18 || tok[1] != array4 {
		return nil, nil, nil, nil, errNotToken
	}
	rest := tok[2:]
	if protected, rest, err = readBstrItem(rest); err != nil {
		return nil, nil, nil, nil, err
	}
	// The unprotected header is a map; the caller accepts only the empty
	// one, but any well-formed map is read here so that the refusal is
	// the caller's, with its reason.
	if len(rest) == 0 || rest[0]>>5 != 5 {
		return nil, nil, nil, nil, errNotToken
	}
	after, ok := skipItem(rest, 0)
	if !ok {
		return nil, nil, nil, nil, errNotToken
	}
	unprotected, rest = rest[:len(rest)-len(after)], after
	var p []byte
	if p, rest, err = readBstrItem(rest); err != nil {
		return nil, nil, nil, nil, err
	}
	payload = bstrContent(p)
	var s []byte
	if s, rest, err = readBstrItem(rest); err != nil {
		return nil, nil, nil, nil, err
	}
	if len(rest) != 0 {
		return nil, nil, nil, nil, errNotToken
	}
	return protected, unprotected, payload, bstrContent(s), nil
}

// maxSkipDepth bounds the nesting skipItem follows.
const maxSkipDepth = 8

// skipItem returns what follows the well-formed, definite-length CBOR item
// at the start of b.
func skipItem(b []byte, depth int) ([]byte, bool) {
	if len(b) == 0 || depth > maxSkipDepth {
		return nil, false
	}
	major := b[0] >> 5
	n, hl, ok := detcbor.ReadArg(b)
	if !ok {
		return nil, false
	}
	b = b[hl:]
	switch major {
	case 0, 1, 7:
		return b, true
	case 2, 3:
		if uint64(len(b)) < n {
			return nil, false
		}
		return b[n:], true
	case 4, 5:
		items := n
		if major == 5 {
			items *= 2
		}
		if items > uint64(len(b)) { // every item takes at least a byte
			return nil, false
		}
		for range items {
			if b, ok = skipItem(b, depth+1); !ok {
				return nil, false
			}
		}
		return b, true
	case 6:
		return skipItem(b, depth+1)
	}
	return nil, false
}

// readBstrItem reads one definite-length byte string item from b and
// returns it whole (head included) and what follows.
func readBstrItem(b []byte) (item, rest []byte, err error) {
	if len(b) == 0 || b[0]>>5 != 2 {
		return nil, nil, errNotToken
	}
	n, hl, ok := detcbor.ReadArg(b)
	if !ok || uint64(len(b)-hl) < n {
		return nil, nil, errNotToken
	}
	end := hl + int(n)
	return b[:end], b[end:], nil
}

// bstrContent returns the content of a byte string item read by
// readBstrItem.
func bstrContent(item []byte) []byte {
	_, hl, _ := detcbor.ReadArg(item)
	return item[hl:]
}

// kidOf returns the kid of a protected header of the profile's form
// (bstr .cbor {1: -7, 4: bstr kid}); the caller compares the whole header
// with protectedHeader(kid), which makes the form exact.
func kidOf(protected []byte) ([]byte, bool) {
	if len(protected) == 0 {
		return nil, false
	}
	m := bstrContent(protected)
	if len(m) < 5 || m[0] != 0xa2 || m[1] != 0x01 || m[2] != 0x26 || m[3] != 0x04 || m[4]>>5 != 2 {
		return nil, false
	}
	kid, rest, err := readBstrItem(m[4:])
	if err != nil || len(rest) != 0 {
		return nil, false
	}
	return bstrContent(kid), true
}

// signES256 signs the token's Sig_structure and returns r||s (RFC 9053
// section 2.1).
func (a *Attester) signES256(rand io.Reader, protected, payload []byte) ([]byte, error) {
	return es256Signer{a.key}.Sign(rand, sigStructure(protected, payload))
}

// verifyES256 checks an r||s signature over the token's Sig_structure.
func verifyES256(pub *ecdsa.PublicKey, protected, payload, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	digest := sha256.Sum256(sigStructure(protected, payload))
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, digest[:], r, s)
}

// encodeClaims returns the deterministic CBOR encoding (RFC 8949 section
// 4.2.1) of c: what the reflection encoder (internal/detcbor) gives, written
// by hand for the profile's fixed shape. TestEncodeClaimsMatchesDetcbor
// keeps the two equal.
func encodeClaims(c *claims) []byte {
	n := 6
	if c.Posture == nil {
		n = 5
	}
	size := 64 + len(c.Nonce) + len(c.UEID) + len(c.Profile) + len(c.KeyHash.Value)
	if c.Posture != nil {
		size += 16 + len(c.Posture.Head.Value) + len(c.Posture.Log)
	}
	out := make([]byte, 0, size)
	out = detcbor.AppendHead(out, 5, uint64(n))
	out = append(out, 0x06) // iat
	out = appendInt(out, c.IssuedAt)
	out = append(out, 0x0a) // eat_nonce
	out = appendBytes(out, c.Nonce)
	out = append(out, 0x19, 0x01, 0x00) // ueid (256)
	out = appendBytes(out, c.UEID)
	out = append(out, 0x19, 0x01, 0x09) // eat_profile (265)
	out = detcbor.AppendHead(out, 3, uint64(len(c.Profile)))
	out = append(out, c.Profile...)
	out = append(out, 0x3a, 0x00, 0x01, 0x11, 0x6f) // -70000: key hash
	out = appendDigest(out, c.KeyHash.Alg, c.KeyHash.Value)
	if c.Posture != nil {
		out = append(out, 0x3a, 0x00, 0x01, 0x11, 0x70) // -70001: posture
		out = append(out, 0xa2, 0x01)
		out = appendDigest(out, c.Posture.Head.Alg, c.Posture.Head.Value)
		out = append(out, 0x02)
		out = append(out, c.Posture.Log...) // already CBOR (a RawMessage)
	}
	return out
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return detcbor.AppendHead(b, 0, uint64(v))
	}
	return detcbor.AppendHead(b, 1, uint64(-(v + 1)))
}

func appendBytes(b, v []byte) []byte {
	return append(detcbor.AppendHead(b, 2, uint64(len(v))), v...)
}

func appendDigest(b []byte, alg int, v []byte) []byte {
	b = append(b, 0x82)
	b = appendInt(b, int64(alg))
	return appendBytes(b, v)
}
