package postauth

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// Identity is what an endpoint signs authenticators with: a certificate
// chain and the private key of its end-entity certificate. The key is a
// [crypto.Signer], so it may live in a TPM or an HSM. An Identity is
// immutable and safe for concurrent use.
type Identity struct {
	chain  [][]byte
	leaf   *x509.Certificate
	signer crypto.Signer
}

// NewIdentity returns an Identity for signer and chain (DER, end-entity
// first). It checks that the end-entity certificate holds signer's public key.
func NewIdentity(signer crypto.Signer, chain ...[]byte) (*Identity, error) {
	if signer == nil || len(chain) == 0 {
		return nil, errors.New("postauth: identity needs a signer and a certificate")
	}
	if len(chain) > maxChainLen {
		return nil, fmt.Errorf("postauth: identity chain longer than %d", maxChainLen)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("postauth: identity certificate: %w", err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, errors.New("postauth: identity certificate does not hold the signer's public key")
	}
	if !slices.ContainsFunc(DefaultSignatureSchemes, func(s tls.SignatureScheme) bool { return keyFitsScheme(leaf.PublicKey, s) }) {
		return nil, fmt.Errorf("postauth: identity key type %T is not supported", leaf.PublicKey)
	}
	c := make([][]byte, len(chain))
	for i, der := range chain {
		c[i] = slices.Clone(der)
	}
	return &Identity{chain: c, leaf: leaf, signer: signer}, nil
}

// IdentityFromTLS returns an Identity that reuses a TLS certificate and its
// key, so that the authenticator key is the key that authenticated the TLS
// connection (compound authentication, [KeyTrustSamePeer]).
func IdentityFromTLS(cert *tls.Certificate) (*Identity, error) {
	if cert == nil {
		return nil, errors.New("postauth: nil certificate")
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("postauth: TLS certificate key is not a crypto.Signer")
	}
	return NewIdentity(signer, cert.Certificate...)
}

// SelfSignedIdentity returns an Identity with a self-signed certificate for
// signer, valid for validity from now. It is for [KeyTrustAttestedKeyOnly],
// where only the Evidence vouches for the key.
func SelfSignedIdentity(signer crypto.Signer, commonName string, validity time.Duration) (*Identity, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("postauth: self-signed certificate: %w", err)
	}
	return NewIdentity(signer, der)
}

// Leaf is the end-entity certificate.
func (id *Identity) Leaf() *x509.Certificate { return id.leaf }

// SPKI is the DER SubjectPublicKeyInfo of the end-entity key.
func (id *Identity) SPKI() []byte { return id.leaf.RawSubjectPublicKeyInfo }

// Signer is the end-entity key.
func (id *Identity) Signer() crypto.Signer { return id.signer }
