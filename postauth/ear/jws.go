package ear

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// MaxTokenLen bounds an EAR (JWT) this package parses: the size of one
// Evidence value ([postauth.MaxEvidenceLen]).
const MaxTokenLen = 60 << 10

// Sentinel causes (wrapped in a *postauth.Error; test with errors.Is).
var (
	// ErrAlgorithm: the JWS header is not exactly {alg: "ES256"} with an
	// optional typ and kid ("none", HS256, RS256, ES384, an embedded jwk,
	// crit, ... are all refused).
	ErrAlgorithm = errors.New("ear: JWS header must be alg ES256 with only typ and kid besides")
	// ErrMalformed: not a compact JWS, or claims that do not decode.
	ErrMalformed = errors.New("ear: malformed EAR")
	// ErrUntrustedSigner: no pinned verifier key verifies the signature.
	ErrUntrustedSigner = errors.New("ear: EAR not signed by a pinned verifier key")
)

var b64 = base64.RawURLEncoding.Strict()

// jws is a parsed compact JWS with an ES256 header.
type jws struct {
	kid     string
	input   []byte // ASCII(header) || '.' || ASCII(payload): what is signed
	payload []byte
	sig     []byte
}

// parseJWS parses a compact JWS (RFC 7515 section 7.1): three base64url
// parts without padding. The protected header must be a JSON object with
// "alg": "ES256" and at most "typ" (JWT) and "kid" (a string) besides: no
// other algorithm, no "none", no embedded or referenced keys, no "crit".
// It verifies nothing.
func parseJWS(token []byte) (*jws, error) {
	if len(token) == 0 || len(token) > MaxTokenLen {
		return nil, fmt.Errorf("%w: token size %d out of range", ErrMalformed, len(token))
	}
	h, rest, ok := bytes.Cut(token, []byte{'.'})
	p, s, ok2 := bytes.Cut(rest, []byte{'.'})
	if !ok || !ok2 || bytes.IndexByte(s, '.') >= 0 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	header, err := b64.DecodeString(string(h))
	if err != nil {
		return nil, fmt.Errorf("%w: header encoding", ErrMalformed)
	}
	payload, err := b64.DecodeString(string(p))
	if err != nil {
		return nil, fmt.Errorf("%w: payload encoding", ErrMalformed)
	}
	sig, err := b64.DecodeString(string(s))
	if err != nil {
		return nil, fmt.Errorf("%w: signature encoding", ErrMalformed)
	}
	kid, err := checkHeader(header)
	if err != nil {
		return nil, err
	}
	if len(sig) != 64 {
		return nil, fmt.Errorf("%w: ES256 signature of %d bytes", ErrAlgorithm, len(sig))
	}
	return &jws{kid: kid, input: token[:len(h)+1+len(p)], payload: payload, sig: sig}, nil
}

// checkHeader enforces the closed header set and returns the kid.
func checkHeader(header []byte) (kid string, err error) {
	fields, err := jsonObject(header)
	if err != nil {
		return "", fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	var alg string
	for k, v := range fields {
		switch k {
		case "alg":
			if json.Unmarshal(v, &alg) != nil {
				return "", ErrAlgorithm
			}
		case "typ":
			var typ string
			if json.Unmarshal(v, &typ) != nil || !strings.EqualFold(typ, "JWT") && !strings.EqualFold(typ, "application/jwt") {
				return "", fmt.Errorf("%w: typ", ErrAlgorithm)
			}
		case "kid":
			if json.Unmarshal(v, &kid) != nil || len(kid) > 256 {
				return "", fmt.Errorf("%w: kid", ErrAlgorithm)
			}
		default:
			return "", fmt.Errorf("%w: header parameter %q", ErrAlgorithm, trunc(k))
		}
	}
	if alg != "ES256" { // mutation: ear jws alg
		return "", ErrAlgorithm
	}
	return kid, nil
}

// jsonObject decodes one JSON object into its members, refusing duplicate
// member names (also names that differ only in case, which encoding/json
// would merge into one struct field) and trailing data.
func jsonObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	out := make(map[string]json.RawMessage)
	folded := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad member name")
		}
		if folded[strings.ToLower(key)] {
			return nil, fmt.Errorf("duplicate member %q", trunc(key))
		}
		folded[strings.ToLower(key)] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON object")
	}
	return out, nil
}

// verifyES256 checks the signature with each of keys and returns nil as
// soon as one verifies.
func (t *jws) verifyES256(keys []*ecdsa.PublicKey) error {
	digest := sha256.Sum256(t.input)
	r := new(big.Int).SetBytes(t.sig[:32])
	s := new(big.Int).SetBytes(t.sig[32:])
	for _, k := range keys {
		if ecdsa.Verify(k, digest[:], r, s) { // mutation: ear signature
			return nil
		}
	}
	return ErrUntrustedSigner
}

// ES256Key returns k as a P-256 ECDSA public key, the only kind of EAR
// verification key this package accepts.
func ES256Key(k crypto.PublicKey) (*ecdsa.PublicKey, error) {
	switch pub := k.(type) {
	case *ecdsa.PublicKey:
		if pub != nil && pub.Curve == elliptic.P256() {
			return pub, nil
		}
	case *ecdsa.PrivateKey:
		return nil, errors.New("ear: a private key where a public key is expected")
	}
	return nil, fmt.Errorf("ear: EAR verification keys must be ECDSA P-256 (ES256), not %T", k)
}
