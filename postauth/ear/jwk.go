package ear

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxJWKLen bounds a JWK document.
const MaxJWKLen = 8 << 10

// ParseJWK parses an EAR verification key given as a JSON Web Key (RFC
// 7517/7518): kty "EC", crv "P-256", 32-byte x and y (base64url, no
// padding) naming a point on the curve. An "alg" member, if present, must be
// "ES256" and a "use" member "sig". A JWK with a private part ("d") is
// refused: pin public keys only. Other members (kid, key_ops, x5c, ...) are
// ignored.
func ParseJWK(data []byte) (*ecdsa.PublicKey, error) {
	if len(data) == 0 || len(data) > MaxJWKLen {
		return nil, errors.New("ear: JWK size out of range")
	}
	fields, err := jsonObject(data)
	if err != nil {
		return nil, fmt.Errorf("ear: JWK: %w", err)
	}
	str := func(name string) (string, bool, error) {
		raw, ok := fields[name]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", true, fmt.Errorf("ear: JWK: %q is not a string", name)
		}
		return s, true, nil
	}
	if _, ok := fields["d"]; ok {
		return nil, errors.New("ear: JWK carries a private key (d): pin the public key only")
	}
	want := map[string]string{"kty": "EC", "crv": "P-256"}
	for name, v := range want {
		s, ok, err := str(name)
		if err != nil {
			return nil, err
		}
		if !ok || s != v {
			return nil, fmt.Errorf("ear: JWK: %s must be %q", name, v)
		}
	}
	for name, v := range map[string]string{"alg": "ES256", "use": "sig"} {
		s, ok, err := str(name)
		if err != nil {
			return nil, err
		}
		if ok && s != v {
			return nil, fmt.Errorf("ear: JWK: %s must be %q", name, v)
		}
	}
	point := []byte{4}
	for _, name := range []string{"x", "y"} {
		s, ok, err := str(name)
		if err != nil {
			return nil, err
		}
		c, derr := b64.DecodeString(s)
		if !ok || derr != nil || len(c) != 32 {
			return nil, fmt.Errorf("ear: JWK: %s must be 32 bytes, base64url", name)
		}
		point = append(point, c...)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("ear: JWK: %w", err)
	}
	return pub, nil
}

// MarshalJWK returns the JWK of a P-256 public key, with "alg": "ES256" and
// "use": "sig", as the well-known endpoint publishes it.
func MarshalJWK(pub *ecdsa.PublicKey) ([]byte, error) {
	if _, err := ES256Key(pub); err != nil {
		return nil, err
	}
	raw, err := pub.Bytes()
	if err != nil || len(raw) != 65 {
		return nil, errors.New("ear: cannot encode the public key")
	}
	return json.Marshal(struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Y   string `json:"y"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}{"EC", "P-256", b64.EncodeToString(raw[1:33]), b64.EncodeToString(raw[33:]), "ES256", "sig"})
}
