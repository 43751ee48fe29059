package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	_ "crypto/sha512" // SHA-384 key hashes
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"sync/atomic"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// KeyAlgorithm selects the type of a TPM-resident authenticator key.
type KeyAlgorithm int

// Key algorithms.
const (
	// KeyECCP256 is an ECDSA P-256 key (TLS 1.3 ecdsa_secp256r1_sha256).
	// It is the default.
	KeyECCP256 KeyAlgorithm = iota
	// KeyRSA2048 is an RSA 2048-bit key with exponent 65537; it signs
	// RSASSA-PSS with a salt as long as the hash (TLS 1.3
	// rsa_pss_rsae_sha256) or PKCS #1 v1.5.
	KeyRSA2048
)

func (a KeyAlgorithm) String() string {
	switch a {
	case KeyECCP256:
		return "ECC P-256"
	case KeyRSA2048:
		return "RSA 2048"
	}
	return fmt.Sprintf("KeyAlgorithm(%d)", int(a))
}

// KeyTemplate returns the template of a TPM-resident authenticator key: a
// signing key (sign, not decrypt, not restricted, so that it signs TLS
// and Exported Authenticator transcripts) that never leaves the TPM
// (fixedTPM, fixedParent: no duplication), whose private part the TPM
// generated (sensitiveDataOrigin), with an empty authorization value
// (userWithAuth) and name algorithm SHA-256. The scheme is NULL: each
// signature names its own (ECDSA with the caller's hash, RSASSA-PSS or
// RSASSA-PKCS1-v1_5).
func KeyTemplate(alg KeyAlgorithm) (tpm2.TPMTPublic, error) {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		SignEncrypt:         true,
	}
	switch alg {
	case KeyECCP256:
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
				CurveID:   tpm2.TPMECCNistP256,
				KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}, nil
	case KeyRSA2048:
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
				KeyBits:   2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("tpm: unknown key algorithm %d", int(alg))
}

// Key is a [crypto.Signer] whose private key lives in the TPM: a key of
// [KeyTemplate] created under the storage root key (SRK, the primary key
// of the TCG ECC P-256 SRK template in the owner hierarchy). Use it as the
// Exported Authenticator key (postauth.NewIdentity,
// postauth.SelfSignedIdentity) and as the TLS client certificate key
// (tls.Certificate{PrivateKey: key}). With [WithCertifiedKey], the
// [Attester] certifies it (TPM2_Certify) in every Evidence, so that a
// relying party learns that the key cannot leave this TPM.
//
// The key stays loaded (one of the TPM's few transient object slots)
// until Close. Sign does not take a context: it waits for the TPM like
// every other command of the *[SharedTPM]. A Key is safe for concurrent
// use.
type Key struct {
	tpm     *SharedTPM
	handle  tpm2.TPMHandle
	name    tpm2.TPM2BName
	pubArea []byte // TPMT_PUBLIC
	private []byte // TPM2B_PRIVATE, to load the key again ([LoadKey])
	pub     crypto.PublicKey
	alg     KeyAlgorithm
	closed  atomic.Bool
}

var _ crypto.Signer = (*Key)(nil)

// KeyOption configures [NewKey] and [LoadKey].
type KeyOption interface{ applyKey(*keyConfig) }

type keyConfig struct {
	alg       KeyAlgorithm
	ownerAuth []byte
}

type keyOption func(*keyConfig)

func (f keyOption) applyKey(c *keyConfig) { f(c) }

// WithKeyAlgorithm sets the key type. The default is [KeyECCP256].
func WithKeyAlgorithm(alg KeyAlgorithm) KeyOption {
	return keyOption(func(c *keyConfig) { c.alg = alg })
}

// WithOwnerAuth sets the owner hierarchy's authorization value (empty by
// default on most TPMs), used to create the storage root key.
func WithOwnerAuth(auth []byte) KeyOption {
	a := slices.Clone(auth)
	return keyOption(func(c *keyConfig) { c.ownerAuth = a })
}

func newKeyConfig(opts []KeyOption) keyConfig {
	var c keyConfig // defaults: ECC P-256, empty owner authorization
	for _, o := range opts {
		if o != nil {
			o.applyKey(&c)
		}
	}
	return c
}

// NewKey creates a new authenticator key of [KeyTemplate] in the TPM behind
// t and loads it. Save [Key.Blob] to load the same key later with
// [LoadKey] (the blob is the key's public area and its private part
// encrypted by the TPM's storage root key: it is useless on another TPM).
// t may be the *[SharedTPM] of an [Attester] ([Share]); otherwise it is
// wrapped in one. Options: [WithKeyAlgorithm], [WithOwnerAuth].
func NewKey(ctx context.Context, t transport.TPM, opts ...KeyOption) (*Key, error) {
	if t == nil {
		return nil, errors.New("tpm: nil transport")
	}
	cfg := newKeyConfig(opts)
	tmpl, err := KeyTemplate(cfg.alg)
	if err != nil {
		return nil, err
	}
	k := &Key{tpm: Share(t), alg: cfg.alg}
	err = k.tpm.do(ctx, func(t transport.TPM) error {
		return withSRK(t, cfg.ownerAuth, func(srk tpm2.NamedHandle) error {
			rsp, err := tpm2.Create{ParentHandle: srk, InPublic: tpm2.New2B(tmpl)}.Execute(t)
			if err != nil {
				return fmt.Errorf("tpm: creating the key: %w", err)
			}
			return k.load(t, srk, rsp.OutPublic.Bytes(), rsp.OutPrivate.Buffer)
		})
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// LoadKey loads a key that [NewKey] created on the same TPM, from its
// [Key.Blob]. The key's public area must still be a key of [KeyTemplate].
func LoadKey(ctx context.Context, t transport.TPM, blob []byte, opts ...KeyOption) (*Key, error) {
	if t == nil {
		return nil, errors.New("tpm: nil transport")
	}
	pubArea, private, err := splitBlob(blob)
	if err != nil {
		return nil, err
	}
	cfg := newKeyConfig(opts)
	k := &Key{tpm: Share(t)}
	err = k.tpm.do(ctx, func(t transport.TPM) error {
		return withSRK(t, cfg.ownerAuth, func(srk tpm2.NamedHandle) error {
			return k.load(t, srk, pubArea, private)
		})
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// withSRK creates the storage root key, runs f and flushes the SRK.
func withSRK(t transport.TPM, ownerAuth []byte, f func(srk tpm2.NamedHandle) error) error {
	srk, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(ownerAuth)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("tpm: creating the storage root key: %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: srk.ObjectHandle}.Execute(t) //nolint:errcheck // best effort
	return f(tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name})
}

func (k *Key) load(t transport.TPM, srk tpm2.NamedHandle, pubArea, private []byte) error {
	pub, alg, err := parseKeyPublic(pubArea)
	if err != nil {
		return err
	}
	rsp, err := tpm2.Load{
		ParentHandle: srk,
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](slices.Clone(pubArea)),
		InPrivate:    tpm2.TPM2BPrivate{Buffer: slices.Clone(private)},
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("tpm: loading the key: %w", err)
	}
	k.handle, k.name = rsp.ObjectHandle, rsp.Name
	k.pubArea, k.private, k.pub, k.alg = slices.Clone(pubArea), slices.Clone(private), pub, alg
	return nil
}

// Blob returns what [LoadKey] needs to load the key again: its
// TPM2B_PUBLIC followed by its TPM2B_PRIVATE.
func (k *Key) Blob() []byte {
	b := tpm2.Marshal(tpm2.BytesAs2B[tpm2.TPMTPublic](k.pubArea))
	return append(b, tpm2.Marshal(tpm2.TPM2BPrivate{Buffer: k.private})...)
}

func splitBlob(blob []byte) (pubArea, private []byte, err error) {
	if len(blob) < 4 || len(blob) > 4096 {
		return nil, nil, errors.New("tpm: key blob size out of range")
	}
	n := int(blob[0])<<8 | int(blob[1])
	if 2+n+2 > len(blob) {
		return nil, nil, errors.New("tpm: truncated key blob")
	}
	pubArea = blob[2 : 2+n]
	rest := blob[2+n:]
	m := int(rest[0])<<8 | int(rest[1])
	if 2+m != len(rest) || m == 0 {
		return nil, nil, errors.New("tpm: malformed key blob")
	}
	return pubArea, rest[2:], nil
}

// Public returns the public key (*ecdsa.PublicKey or *rsa.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Algorithm is the key's type.
func (k *Key) Algorithm() KeyAlgorithm { return k.alg }

// PublicArea returns the key's TPMT_PUBLIC: what the Evidence carries
// next to its certification.
func (k *Key) PublicArea() []byte { return slices.Clone(k.pubArea) }

// Name returns the key's TPM name (0x000B || SHA-256 of the public area):
// what TPM2_Certify certifies.
func (k *Key) Name() []byte { return slices.Clone(k.name.Buffer) }

// Close flushes the key from the TPM (a saved [Key.Blob] can load it
// again). Sign fails afterwards.
func (k *Key) Close() error {
	return k.tpm.do(context.Background(), func(t transport.TPM) error {
		if k.closed.Swap(true) {
			return nil
		}
		if _, err := (tpm2.FlushContext{FlushHandle: k.handle}).Execute(t); err != nil {
			return fmt.Errorf("tpm: flushing the key: %w", err)
		}
		return nil
	})
}

// handle is the key as a command's authorized handle (empty password).
func (k *Key) authHandle() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)}
}

// Sign signs digest with the TPM key. opts.HashFunc() must be SHA-256,
// SHA-384 or SHA-512 and digest its size. An ECDSA key returns an ASN.1
// ECDSA signature; an RSA key signs RSASSA-PSS when opts is an
// *rsa.PSSOptions (the TPM's salt is as long as the hash, so SaltLength
// must be PSSSaltLengthAuto, PSSSaltLengthEqualsHash or the hash size) and
// RSASSA-PKCS1-v1_5 otherwise. rand is not used: the TPM has its own.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		return nil, errors.New("tpm: Sign needs SignerOpts")
	}
	h := opts.HashFunc()
	var alg tpm2.TPMIAlgHash
	switch h {
	case crypto.SHA256:
		alg = tpm2.TPMAlgSHA256
	case crypto.SHA384:
		alg = tpm2.TPMAlgSHA384
	case crypto.SHA512:
		alg = tpm2.TPMAlgSHA512
	default:
		return nil, fmt.Errorf("tpm: hash %v not supported", h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("tpm: digest of %d bytes for %v", len(digest), h)
	}
	var scheme tpm2.TPMTSigScheme
	switch k.pub.(type) {
	case *ecdsa.PublicKey:
		scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: alg})}
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			if pss.SaltLength != rsa.PSSSaltLengthAuto && pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != h.Size() {
				return nil, fmt.Errorf("tpm: PSS salt length %d not supported (the TPM uses the hash size)", pss.SaltLength)
			}
			scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgRSAPSS, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSchemeHash{HashAlg: alg})}
		} else {
			scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgRSASSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSchemeHash{HashAlg: alg})}
		}
	}
	var sig *tpm2.TPMTSignature
	err := k.tpm.do(context.Background(), func(t transport.TPM) error {
		if k.closed.Load() {
			return errors.New("tpm: key closed")
		}
		rsp, err := tpm2.Sign{
			KeyHandle:  k.authHandle(),
			Digest:     tpm2.TPM2BDigest{Buffer: slices.Clone(digest)},
			InScheme:   scheme,
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm: signing: %w", err)
		}
		sig = &rsp.Signature
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch sig.SigAlg {
	case tpm2.TPMAlgECDSA:
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return nil, err
		}
		return asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer),
		})
	case tpm2.TPMAlgRSAPSS:
		r, err := sig.Signature.RSAPSS()
		if err != nil {
			return nil, err
		}
		return slices.Clone(r.Sig.Buffer), nil
	case tpm2.TPMAlgRSASSA:
		r, err := sig.Signature.RSASSA()
		if err != nil {
			return nil, err
		}
		return slices.Clone(r.Sig.Buffer), nil
	}
	return nil, fmt.Errorf("tpm: unexpected signature algorithm %#04x", uint16(sig.SigAlg))
}

// parseKeyPublic parses the public area of an authenticator key: a
// TPMT_PUBLIC (canonical, nothing after it) of a key that never leaves the
// TPM and only signs (the attributes of [KeyTemplate], whatever its
// scheme, authorization and restriction): fixedTPM, fixedParent,
// sensitiveDataOrigin, sign, not decrypt; name algorithm SHA-256; ECC
// P-256 with a point on the curve, or RSA 2048 to 4096 bits with exponent
// 65537. It returns the public key and its algorithm.
func parseKeyPublic(raw []byte) (crypto.PublicKey, KeyAlgorithm, error) {
	if len(raw) == 0 || len(raw) > MaxAKLen {
		return nil, 0, errors.New("tpm: key public area size out of range")
	}
	pub, err := unmarshalSigningPublic(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("tpm: key public area: %w", err)
	}
	a := pub.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.SignEncrypt || a.Decrypt { // mutation: tpm key attributes
		return nil, 0, errors.New("tpm: the key is not a non-duplicable TPM signing key (fixedTPM, fixedParent, sensitiveDataOrigin, sign, not decrypt)")
	}
	if pub.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, 0, errors.New("tpm: the key's name algorithm must be SHA-256")
	}
	switch pub.Type {
	case tpm2.TPMAlgECC:
		key, err := eccPublic(pub)
		if err != nil {
			return nil, 0, err
		}
		return key, KeyECCP256, nil
	case tpm2.TPMAlgRSA:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, 0, fmt.Errorf("tpm: RSA parameters: %w", err)
		}
		n, err := pub.Unique.RSA()
		if err != nil {
			return nil, 0, fmt.Errorf("tpm: RSA modulus: %w", err)
		}
		if parms.Exponent != 0 && parms.Exponent != 65537 {
			return nil, 0, errors.New("tpm: RSA exponent must be 65537")
		}
		bitsN := int(parms.KeyBits)
		if bitsN < 2048 || bitsN > 4096 || len(n.Buffer)*8 != bitsN || n.Buffer[0]&0x80 == 0 {
			return nil, 0, errors.New("tpm: RSA key size must be 2048 to 4096 bits")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: 65537}, KeyRSA2048, nil
	}
	return nil, 0, fmt.Errorf("tpm: key type %#04x not supported", uint16(pub.Type))
}

var elliptic256 = elliptic.P256()

// eccPublic returns the P-256 public key of an ECC TPMT_PUBLIC, checking
// that the point is on the curve.
func eccPublic(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("tpm: ECC parameters: %w", err)
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, errors.New("tpm: the ECC key must be on curve P-256")
	}
	pt, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("tpm: ECC point: %w", err)
	}
	x, y := pt.X.Buffer, pt.Y.Buffer
	if len(x) > 32 || len(y) > 32 {
		return nil, errors.New("tpm: ECC point coordinates too long")
	}
	enc := make([]byte, 65)
	enc[0] = 4
	copy(enc[33-len(x):33], x)
	copy(enc[65-len(y):], y)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic256, enc)
	if err != nil {
		return nil, fmt.Errorf("tpm: ECC point: %w", err)
	}
	return key, nil
}

// keyHash is Hash(SPKI) of a public key, the SPKI being Go's canonical
// PKIX encoding (what x509.CreateCertificate writes for that key).
func keyHash(h crypto.Hash, pub crypto.PublicKey) ([]byte, error) {
	if h != crypto.SHA256 && h != crypto.SHA384 {
		return nil, fmt.Errorf("tpm: key hash %v not supported", h)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(spki)
	return d.Sum(nil), nil
}

// unmarshalSigningPublic decodes the public area of a signing key (an AK or
// an authenticator key) with go-tpm's tpm2.Unmarshal and checks that it has
// nothing after it by computing its encoded length, which it can for the
// forms a signing key of this profile has: an ECC or RSA key without a
// symmetric algorithm, with a NULL or hash-based signing scheme, and (ECC)
// a NULL key derivation function. (Encoding it again, as
// unmarshalCanonical does, costs as much as decoding: about 500
// allocations per public area.)
func unmarshalSigningPublic(b []byte) (*tpm2.TPMTPublic, error) {
	p, err := unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, err
	}
	n := 2 + 2 + 4 + 2 + len(p.AuthPolicy.Buffer)
	scheme := func(alg tpm2.TPMAlgID) (int, error) {
		switch alg {
		case tpm2.TPMAlgNull:
			return 2, nil
		case tpm2.TPMAlgECDSA, tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
			return 4, nil // the scheme and its hash algorithm
		}
		return 0, fmt.Errorf("signing scheme %#04x not supported", uint16(alg))
	}
	switch p.Type {
	case tpm2.TPMAlgECC:
		e, err := p.Parameters.ECCDetail()
		if err != nil {
			return nil, err
		}
		if e.Symmetric.Algorithm != tpm2.TPMAlgNull || e.KDF.Scheme != tpm2.TPMAlgNull {
			return nil, errors.New("a signing key has no symmetric algorithm and no key derivation function")
		}
		sl, err := scheme(e.Scheme.Scheme)
		if err != nil {
			return nil, err
		}
		pt, err := p.Unique.ECC()
		if err != nil {
			return nil, err
		}
		n += 2 + sl + 2 + 2 + 2 + len(pt.X.Buffer) + 2 + len(pt.Y.Buffer)
	case tpm2.TPMAlgRSA:
		r, err := p.Parameters.RSADetail()
		if err != nil {
			return nil, err
		}
		if r.Symmetric.Algorithm != tpm2.TPMAlgNull {
			return nil, errors.New("a signing key has no symmetric algorithm")
		}
		sl, err := scheme(r.Scheme.Scheme)
		if err != nil {
			return nil, err
		}
		u, err := p.Unique.RSA()
		if err != nil {
			return nil, err
		}
		n += 2 + sl + 2 + 4 + 2 + len(u.Buffer)
	default:
		return nil, fmt.Errorf("key type %#04x not supported", uint16(p.Type))
	}
	if n != len(b) {
		return nil, errors.New("trailing bytes")
	}
	return p, nil
}
