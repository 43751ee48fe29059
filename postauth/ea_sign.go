package postauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"io"
	"slices"
)

// DefaultSignatureSchemes are the TLS 1.3 signature schemes this package
// signs and verifies with, in order of preference.
var DefaultSignatureSchemes = []tls.SignatureScheme{
	tls.ECDSAWithP256AndSHA256,
	tls.Ed25519,
	tls.ECDSAWithP384AndSHA384,
	tls.PSSWithSHA256,
	tls.PSSWithSHA384,
	tls.PSSWithSHA512,
}

// RSA keys accepted in authenticators (and their chains): a modulus of
// 2048 to 4096 bits and the public exponent 65537. crypto/tls caps peer RSA
// keys at 8192 bits; 4096 keeps a forged authenticator from costing us much
// more than it costs its sender (docs/threat-model.md).
const (
	minRSABits  = 2048
	maxRSABits  = 4096
	rsaExponent = 65537
)

// acceptableKey reports whether pub is a key this package verifies
// signatures with: ECDSA P-256 or P-384, Ed25519, or RSA within the bounds
// above.
func acceptableKey(pub crypto.PublicKey) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return k.Curve == elliptic.P256() || k.Curve == elliptic.P384()
	case ed25519.PublicKey:
		return len(k) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		return rsaAcceptable(k)
	}
	return false
}

func rsaAcceptable(k *rsa.PublicKey) bool {
	n := k.N.BitLen()
	return n >= minRSABits && n <= maxRSABits && k.E == rsaExponent // mutation: rsa bounds
}

// keyDescription names a key's type and size for error messages.
func keyDescription(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d (e=%d)", k.N.BitLen(), k.E)
	}
	return fmt.Sprintf("%T", pub)
}

// signaturePrefix is the constant part of the CertificateVerify input
// (RFC 9261 section 5.2.2): 64 spaces, the context string, a zero byte.
var signaturePrefix = func() []byte {
	b := make([]byte, 0, 64+len("Exported Authenticator")+1)
	for range 64 {
		b = append(b, 0x20)
	}
	b = append(b, "Exported Authenticator"...)
	return append(b, 0)
}()

// signatureInput returns the bytes a CertificateVerify signs, given the
// transcript hash Hash(Handshake Context || request || Certificate).
func signatureInput(transcriptHash []byte) []byte {
	out := make([]byte, 0, len(signaturePrefix)+len(transcriptHash))
	out = append(out, signaturePrefix...)
	return append(out, transcriptHash...)
}

// schemeHash is the hash a signature scheme signs with (0 for Ed25519).
func schemeHash(s tls.SignatureScheme) (crypto.Hash, bool) {
	switch s {
	case tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256:
		return crypto.SHA256, true
	case tls.ECDSAWithP384AndSHA384, tls.PSSWithSHA384:
		return crypto.SHA384, true
	case tls.PSSWithSHA512:
		return crypto.SHA512, true
	case tls.Ed25519:
		return 0, true
	}
	return 0, false
}

// keyFitsScheme reports whether pub can produce signatures of scheme s.
func keyFitsScheme(pub crypto.PublicKey, s tls.SignatureScheme) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch s {
		case tls.ECDSAWithP256AndSHA256:
			return k.Curve == elliptic.P256()
		case tls.ECDSAWithP384AndSHA384:
			return k.Curve == elliptic.P384()
		}
	case ed25519.PublicKey:
		return s == tls.Ed25519
	case *rsa.PublicKey:
		if !rsaAcceptable(k) {
			return false
		}
		switch s {
		case tls.PSSWithSHA256, tls.PSSWithSHA384, tls.PSSWithSHA512:
			return true
		}
	}
	return false
}

// chooseScheme picks the first of our schemes that the peer offered and the
// key can use.
func chooseScheme(pub crypto.PublicKey, offered, ours []tls.SignatureScheme) (tls.SignatureScheme, error) {
	for _, s := range ours {
		if slices.Contains(offered, s) && keyFitsScheme(pub, s) {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w: no scheme offered by the peer fits a %T key", ErrUnsupportedScheme, pub)
}

func sign(signer crypto.Signer, rand io.Reader, s tls.SignatureScheme, msg []byte) ([]byte, error) {
	h, ok := schemeHash(s)
	if !ok {
		return nil, ErrUnsupportedScheme
	}
	var opts crypto.SignerOpts = h
	digest := msg
	if h != 0 {
		hh := h.New()
		hh.Write(msg)
		digest = hh.Sum(nil)
		if _, isRSA := signer.Public().(*rsa.PublicKey); isRSA {
			opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
		}
	}
	return signer.Sign(rand, digest, opts)
}

func verifySignature(pub crypto.PublicKey, s tls.SignatureScheme, msg, sig []byte) error {
	if !keyFitsScheme(pub, s) {
		return ErrUnsupportedScheme
	}
	h, _ := schemeHash(s)
	var digest []byte
	if h != 0 {
		hh := h.New()
		hh.Write(msg)
		digest = hh.Sum(nil)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return ErrBadSignature
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, msg, sig) {
			return ErrBadSignature
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}); err != nil {
			return ErrBadSignature
		}
	default:
		return ErrUnsupportedScheme
	}
	return nil
}
