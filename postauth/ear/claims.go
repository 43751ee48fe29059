package ear

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/reattest/reattest/posture"
)

// Bounds of decoded claims.
const (
	maxSubmods          = 16
	maxAKPubLen         = 4 << 10
	minNonceLen         = 8
	maxNonceLen         = 64
	maxMachineID        = 256
	maxAttestationKeyID = 64
	maxSubmodName       = 128
	maxFormatName       = 128
	maxAnnotations      = 64
)

// claims is a decoded EAR. Nothing in it is verified by decoding.
type claims struct {
	profile  string
	issuedAt time.Time
	expiry   time.Time // zero: no exp claim
	nonce    []byte
	submods  []*submod // sorted by name
}

// submod is one decoded submodule appraisal.
type submod struct {
	name        string
	status      Status
	trustVector map[string]int8 // claims present in the vector
	akpub       []byte          // DER SubjectPublicKeyInfo, nil if absent
	ann         annotations
}

// annotations are the reattest members of ear.veraison.annotated-evidence.
type annotations struct {
	present     bool
	format      string
	mediaType   string
	keyHash     *posture.Digest
	machineID   []byte
	attKeyID    []byte
	attestedAt  time.Time
	postureHead *posture.Digest
	postureLog  []byte
}

type wireEAR struct {
	Profile  *string                    `json:"eat_profile"`
	IssuedAt *json.Number               `json:"iat"`
	Expiry   *json.Number               `json:"exp"`
	Nonce    *string                    `json:"eat_nonce"`
	Submods  map[string]json.RawMessage `json:"submods"`
}

type wireSubmod struct {
	Status         json.RawMessage            `json:"ear.status"`
	TrustVector    map[string]json.Number     `json:"ear.trustworthiness-vector"`
	Annotated      map[string]json.RawMessage `json:"ear.veraison.annotated-evidence"`
	KeyAttestation map[string]json.RawMessage `json:"ear.veraison.key-attestation"`
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// decodeClaims decodes an EAR claims set (the JWS payload). Top-level
// members must not repeat; unknown claims are ignored (EAR is extensible),
// but the claims this package reads must have their expected types.
func decodeClaims(payload []byte) (*claims, error) {
	if _, err := jsonObject(payload); err != nil {
		return nil, malformed("claims: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var w wireEAR
	if err := dec.Decode(&w); err != nil {
		return nil, malformed("claims: %v", err)
	}
	c := &claims{}
	if w.Profile == nil {
		return nil, malformed("no eat_profile")
	}
	c.profile = *w.Profile
	if w.IssuedAt == nil {
		return nil, malformed("no iat")
	}
	iat, err := seconds(*w.IssuedAt)
	if err != nil {
		return nil, malformed("iat: %v", err)
	}
	c.issuedAt = iat
	if w.Expiry != nil {
		if c.expiry, err = seconds(*w.Expiry); err != nil {
			return nil, malformed("exp: %v", err)
		}
	}
	if w.Nonce == nil {
		return nil, malformed("no eat_nonce")
	}
	if c.nonce, err = decodeNonce(*w.Nonce); err != nil {
		return nil, malformed("eat_nonce: %v", err)
	}
	if len(w.Submods) == 0 || len(w.Submods) > maxSubmods {
		return nil, malformed("want 1 to %d submods, got %d", maxSubmods, len(w.Submods))
	}
	for _, name := range slices.Sorted(maps.Keys(w.Submods)) {
		if name == "" || len(name) > maxSubmodName {
			return nil, malformed("submod name")
		}
		s, err := decodeSubmod(name, w.Submods[name])
		if err != nil {
			return nil, err
		}
		c.submods = append(c.submods, s)
	}
	return c, nil
}

func decodeSubmod(name string, raw json.RawMessage) (*submod, error) {
	if _, err := jsonObject(raw); err != nil {
		return nil, malformed("submod %s: %v", quoteName(name), err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var w wireSubmod
	if err := dec.Decode(&w); err != nil {
		return nil, malformed("submod %s: %v", quoteName(name), err)
	}
	s := &submod{name: name, trustVector: make(map[string]int8)}
	var err error
	if s.status, err = decodeStatus(w.Status); err != nil {
		return nil, malformed("submod %s: ear.status: %v", quoteName(name), err)
	}
	for k, v := range w.TrustVector {
		n, err := v.Int64()
		if err != nil || n < math.MinInt8 || n > math.MaxInt8 {
			return nil, malformed("submod %s: trust vector claim %s", quoteName(name), quoteName(k))
		}
		if isTrustClaim(k) {
			s.trustVector[k] = int8(n)
		}
	}
	if w.KeyAttestation != nil {
		var ak string
		raw, ok := w.KeyAttestation[ClaimAKPub]
		if !ok || json.Unmarshal(raw, &ak) != nil || len(ak) > maxAKPubLen {
			return nil, malformed("submod %s: key attestation", quoteName(name))
		}
		der, err := b64.DecodeString(ak)
		if err != nil {
			return nil, malformed("submod %s: akpub encoding", quoteName(name))
		}
		if _, err := x509.ParsePKIXPublicKey(der); err != nil {
			return nil, malformed("submod %s: akpub: %v", quoteName(name), err)
		}
		s.akpub = der
	}
	if s.ann, err = decodeAnnotations(w.Annotated); err != nil {
		return nil, malformed("submod %s: %v", quoteName(name), err)
	}
	return s, nil
}

// decodeStatus accepts a tier name ("affirming", as veraison/ear writes
// it) or its number.
func decodeStatus(raw json.RawMessage) (Status, error) {
	if raw == nil {
		return 0, errors.New("missing")
	}
	var name string
	if json.Unmarshal(raw, &name) == nil {
		return ParseStatus(name)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, errors.New("neither a name nor a number")
	}
	v, err := n.Int64()
	if err != nil {
		return 0, err
	}
	switch s := Status(v); {
	case v < math.MinInt8 || v > math.MaxInt8:
	case s == StatusNone || s == StatusAffirming || s == StatusWarning || s == StatusContraindicated:
		return s, nil
	}
	return 0, fmt.Errorf("unknown status %d", v)
}

func decodeAnnotations(m map[string]json.RawMessage) (annotations, error) {
	var a annotations
	if len(m) > maxAnnotations {
		return a, errors.New("too many annotated-evidence members")
	}
	str := func(name string, max int) (string, bool, error) {
		raw, ok := m[name]
		if !ok {
			return "", false, nil
		}
		var s string
		if json.Unmarshal(raw, &s) != nil || len(s) > max {
			return "", true, fmt.Errorf("annotation %s", name)
		}
		a.present = true
		return s, true, nil
	}
	var err error
	if a.format, _, err = str(AnnotationFormat, maxFormatName); err != nil {
		return a, err
	}
	if a.mediaType, _, err = str(AnnotationMediaType, 256); err != nil {
		return a, err
	}
	digest := func(name string) (*posture.Digest, error) {
		s, ok, err := str(name, 256)
		if err != nil || !ok {
			return nil, err
		}
		d, err := posture.ParseDigest(s)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", name, err)
		}
		return &d, nil
	}
	if a.keyHash, err = digest(AnnotationKeyHash); err != nil {
		return a, err
	}
	if a.postureHead, err = digest(AnnotationPostureHead); err != nil {
		return a, err
	}
	binary := func(name string, max int) ([]byte, error) {
		s, ok, err := str(name, base64.RawURLEncoding.EncodedLen(max))
		if err != nil || !ok {
			return nil, err
		}
		b, err := b64.DecodeString(s)
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("annotation %s", name)
		}
		return b, nil
	}
	if a.machineID, err = binary(AnnotationMachineID, maxMachineID); err != nil {
		return a, err
	}
	if a.attKeyID, err = binary(AnnotationAttestationKeyID, maxAttestationKeyID); err != nil {
		return a, err
	}
	if a.postureLog, err = binary(AnnotationPostureLog, MaxTokenLen); err != nil {
		return a, err
	}
	if raw, ok := m[AnnotationAttestedAt]; ok {
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return a, fmt.Errorf("annotation %s", AnnotationAttestedAt)
		}
		if a.attestedAt, err = seconds(n); err != nil {
			return a, fmt.Errorf("annotation %s: %w", AnnotationAttestedAt, err)
		}
		a.present = true
	}
	if (a.postureHead == nil) != (a.postureLog == nil) {
		return a, errors.New("posture head and log must come together")
	}
	return a, nil
}

// seconds parses a NumericDate: integer seconds since the epoch, in a
// sane range (years 1970 to 9999).
func seconds(n json.Number) (time.Time, error) {
	v, err := n.Int64()
	if err != nil || v < 0 || v > 253402300799 {
		return time.Time{}, errors.New("not an integer date")
	}
	return time.Unix(v, 0), nil
}

// decodeNonce decodes eat_nonce: base64url, padded (as Veraison writes it)
// or not, of 8 to 64 bytes.
func decodeNonce(s string) ([]byte, error) {
	b, err := base64.URLEncoding.Strict().DecodeString(s)
	if err != nil {
		b, err = b64.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("not base64url")
	}
	if len(b) < minNonceLen || len(b) > maxNonceLen {
		return nil, fmt.Errorf("%d bytes, want %d to %d", len(b), minNonceLen, maxNonceLen)
	}
	return b, nil
}

// EncodeNonce returns the eat_nonce text of a nonce as Veraison writes it:
// base64url with padding.
func EncodeNonce(nonce []byte) string { return base64.URLEncoding.EncodeToString(nonce) }

// keyAttestation returns the one key the EAR attests (every submodule that
// carries a key attestation must name the same key), or nil.
func (c *claims) keyAttestation() ([]byte, error) {
	var ak []byte
	for _, s := range c.submods {
		if s.akpub == nil {
			continue
		}
		if ak != nil && !bytes.Equal(ak, s.akpub) {
			return nil, errors.New("ear: submodules attest different keys")
		}
		ak = s.akpub
	}
	return ak, nil
}

// annotated returns the one submodule's reattest annotations (at most one
// submodule may carry them), or a zero value.
func (c *claims) annotated() (annotations, error) {
	var found *annotations
	for _, s := range c.submods {
		if !s.ann.present {
			continue
		}
		if found != nil {
			return annotations{}, errors.New("ear: more than one submodule carries reattest annotations")
		}
		found = &s.ann
	}
	if found == nil {
		return annotations{}, nil
	}
	return *found, nil
}
