package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// NV indices of EK certificates (TCG EK Credential Profile 2.x, low range).
const (
	// EKCertIndexRSA is the NV index of the RSA 2048 EK certificate.
	EKCertIndexRSA = 0x01c00002
	// EKCertIndexECC is the NV index of the ECC P-256 EK certificate.
	EKCertIndexECC = 0x01c0000a
)

// ekPersistentFirst and ekPersistentLast bound the persistent handles
// reserved for endorsement keys (TCG Provisioning Guidance).
const (
	ekPersistentFirst = 0x81010000
	ekPersistentLast  = 0x810100ff
)

// policySecretEndorsement is the SHA-256 policy digest of
// TPM2_PolicySecret(TPM_RH_ENDORSEMENT): the authPolicy of the TCG
// low-range EK templates.
var policySecretEndorsement = tpm2.RSAEKTemplate.AuthPolicy.Buffer

// EK is a TPM's endorsement key: its certificate, read from the TPM's NV
// memory, and its public area. The EK identifies the TPM; its certificate,
// signed by the TPM manufacturer, says that the key is a TPM's.
type EK struct {
	// Certificate is the EK certificate (DER), as read from NV (without
	// padding).
	Certificate []byte
	// Public is the EK's public area (TPMT_PUBLIC).
	Public []byte
	// CertIndex is the NV index the certificate was read from.
	CertIndex uint32
}

// MachineID is the machine identifier this profile derives from the EK:
// SHA-256 of the EK public key's DER SubjectPublicKeyInfo (Go's canonical
// encoding of the certificate's key). It does not change when the EK
// certificate is reissued for the same key.
func (ek *EK) MachineID() ([]byte, error) {
	cert, err := x509.ParseCertificate(ek.Certificate)
	if err != nil {
		return nil, fmt.Errorf("tpm: EK certificate: %w", err)
	}
	return MachineID(cert.PublicKey)
}

// MachineID returns SHA-256 of the DER SubjectPublicKeyInfo of an EK
// public key: the machine identifier of the TPM that holds it.
func MachineID(ekPublic crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(ekPublic)
	if err != nil {
		return nil, fmt.Errorf("tpm: EK public key: %w", err)
	}
	sum := sha256.Sum256(spki)
	return sum[:], nil
}

// EKOption configures [ReadEK] and [Attester.Enroll].
type EKOption interface{ applyEK(*ekConfig) }

type ekConfig struct {
	index           uint32 // 0: the first of EKCertIndexRSA, EKCertIndexECC that holds a certificate
	endorsementAuth []byte
}

type ekOption func(*ekConfig)

func (f ekOption) applyEK(c *ekConfig) { f(c) }

// WithEKCertIndex reads the EK certificate from NV index idx. By default
// the first of [EKCertIndexRSA] and [EKCertIndexECC] that exists is used.
// The EK is then the persistent key (0x81010000 to 0x810100ff) with the
// certificate's public key or, if none, the primary key of the TCG
// template for the certificate's key type (RSA 2048 or ECC P-256).
func WithEKCertIndex(idx uint32) EKOption {
	return ekOption(func(c *ekConfig) { c.index = idx })
}

// WithEKEndorsementAuth sets the endorsement hierarchy's authorization
// value (empty by default), used to create the EK and to authorize its
// use in credential activation.
func WithEKEndorsementAuth(auth []byte) EKOption {
	a := slices.Clone(auth)
	return ekOption(func(c *ekConfig) { c.endorsementAuth = a })
}

func newEKConfig(opts []EKOption) ekConfig {
	var c ekConfig
	for _, o := range opts {
		if o != nil {
			o.applyEK(&c)
		}
	}
	return c
}

// ReadEK reads the EK certificate from the TPM's NV memory, finds the EK
// it certifies (a persistent EK, or the primary key of the TCG template)
// and returns both. It fails if no certificate is found or if the EK's
// key is not the certificate's. Options: [WithEKCertIndex],
// [WithEKEndorsementAuth].
func ReadEK(ctx context.Context, t transport.TPM, opts ...EKOption) (*EK, error) {
	if t == nil {
		return nil, errors.New("tpm: nil transport")
	}
	cfg := newEKConfig(opts)
	var ek *EK
	err := Share(t).do(ctx, func(t transport.TPM) error {
		l, err := loadEK(t, cfg)
		if err != nil {
			return err
		}
		l.flush(t)
		ek = l.ek
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ek, nil
}

// loadedEK is an EK loaded for credential activation.
type loadedEK struct {
	ek        *EK
	handle    tpm2.TPMHandle
	name      tpm2.TPM2BName
	transient bool
	userAuth  bool // userWithAuth: a password authorizes USER role
	policy    bool // authPolicy is PolicySecret(TPM_RH_ENDORSEMENT)
}

// flush flushes a transient EK.
func (l *loadedEK) flush(t transport.TPM) {
	if l.transient {
		tpm2.FlushContext{FlushHandle: l.handle}.Execute(t) //nolint:errcheck // best effort
	}
}

// auth authorizes the EK's USER role (TPM2_ActivateCredential's keyHandle).
func (l *loadedEK) auth(endorsementAuth []byte) (tpm2.Session, error) {
	switch {
	case l.userAuth:
		return tpm2.PasswordAuth(nil), nil
	case l.policy:
		return tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, h tpm2.TPMISHPolicy, nonce tpm2.TPM2BNonce) error {
			_, err := tpm2.PolicySecret{
				AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(endorsementAuth)},
				PolicySession: h,
				NonceTPM:      nonce,
			}.Execute(t)
			return err
		}), nil
	}
	return nil, errors.New("tpm: the EK's authorization policy is not supported (neither userWithAuth nor PolicySecret(endorsement))")
}

// loadEK reads the EK certificate and loads the EK it certifies.
func loadEK(t transport.TPM, cfg ekConfig) (*loadedEK, error) {
	der, index, err := readEKCert(t, cfg)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tpm: EK certificate at %#x: %w", index, err)
	}
	l, err := findEK(t, cert.PublicKey, cfg.endorsementAuth)
	if err != nil {
		return nil, err
	}
	l.ek.Certificate, l.ek.CertIndex = der, index
	return l, nil
}

// readEKCert reads the EK certificate from NV: from the configured index,
// or the first of EKCertIndexRSA, EKCertIndexECC that holds one.
func readEKCert(t transport.TPM, cfg ekConfig) ([]byte, uint32, error) {
	indices := []uint32{EKCertIndexRSA, EKCertIndexECC}
	if cfg.index != 0 {
		indices = []uint32{cfg.index}
	}
	var lastErr error
	for _, idx := range indices {
		b, err := readNV(t, idx)
		if err != nil {
			lastErr = err
			continue
		}
		return b, idx, nil
	}
	return nil, 0, fmt.Errorf("tpm: no EK certificate in NV: %w", lastErr)
}

// findEK returns the persistent EK with key pub, or creates the primary
// key of the TCG template of pub's type and checks that it has key pub.
func findEK(t transport.TPM, pub crypto.PublicKey, endorsementAuth []byte) (*loadedEK, error) {
	caps, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: ekPersistentFirst, PropertyCount: 64}.Execute(t)
	if err == nil {
		if hs, err := caps.CapabilityData.Data.Handles(); err == nil {
			for _, h := range hs.Handle {
				if h > ekPersistentLast {
					break
				}
				rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t)
				if err != nil {
					continue
				}
				if l, ok := ekIfMatches(rsp.OutPublic.Bytes(), pub); ok {
					l.handle, l.name = h, rsp.Name
					return l, nil
				}
			}
		}
	}
	var tmpl tpm2.TPMTPublic
	switch k := pub.(type) {
	case interface{ Size() int }: // *rsa.PublicKey
		if k.Size() != 256 {
			return nil, errors.New("tpm: RSA EK certificate for a key that is not 2048 bits and no persistent EK")
		}
		tmpl = tpm2.RSAEKTemplate
	default:
		tmpl = tpm2.ECCEKTemplate
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(endorsementAuth)},
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: creating the EK: %w", err)
	}
	l, ok := ekIfMatches(rsp.OutPublic.Bytes(), pub)
	if !ok {
		tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(t) //nolint:errcheck // best effort
		return nil, errors.New("tpm: the EK of the TCG template does not have the EK certificate's key")
	}
	l.handle, l.name, l.transient = rsp.ObjectHandle, rsp.Name, true
	return l, nil
}

// ekIfMatches returns the EK of a public area if it is a restricted
// decryption key with key pub.
func ekIfMatches(area []byte, pub crypto.PublicKey) (*loadedEK, bool) {
	p, err := ekPublicKey(area)
	if err != nil {
		return nil, false
	}
	if eq, ok := p.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
		return nil, false
	}
	tp, _ := tpm2.Unmarshal[tpm2.TPMTPublic](area)
	return &loadedEK{
		ek:       &EK{Public: slices.Clone(area)},
		userAuth: tp.ObjectAttributes.UserWithAuth,
		policy:   tp.NameAlg == tpm2.TPMAlgSHA256 && bytes.Equal(tp.AuthPolicy.Buffer, policySecretEndorsement),
	}, true
}

// ekPublicKey parses an EK public area (canonical TPMT_PUBLIC of a
// fixedTPM, fixedParent restricted decryption key, RSA or ECC) and returns
// its public key.
func ekPublicKey(area []byte) (crypto.PublicKey, error) {
	if len(area) == 0 || len(area) > MaxAKLen {
		return nil, errors.New("tpm: EK public area size out of range")
	}
	p, err := unmarshalCanonical[tpm2.TPMTPublic](area)
	if err != nil {
		return nil, fmt.Errorf("tpm: EK public area: %w", err)
	}
	a := p.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.Restricted || !a.Decrypt || a.SignEncrypt {
		return nil, errors.New("tpm: the EK is not a fixedTPM restricted decryption key")
	}
	pub, err := tpm2.Pub(*p)
	if err != nil {
		return nil, fmt.Errorf("tpm: EK public key: %w", err)
	}
	return pub, nil
}

// EKPublicKey returns the public key of an EK public area (TPMT_PUBLIC),
// which must be a fixedTPM, fixedParent restricted decryption key.
func EKPublicKey(area []byte) (crypto.PublicKey, error) { return ekPublicKey(area) }

// readNV reads a whole NV index with its own (empty) authorization, in
// chunks, and returns the DER element it holds (NV areas may be padded).
func readNV(t transport.TPM, idx uint32) ([]byte, error) {
	h := tpm2.TPMHandle(idx)
	pub, err := tpm2.NVReadPublic{NVIndex: h}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: NV index %#x: %w", idx, err)
	}
	nv, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, err
	}
	size := int(nv.DataSize)
	if size == 0 || size > 2*MaxCertLen {
		return nil, fmt.Errorf("tpm: NV index %#x holds %d bytes", idx, size)
	}
	out := make([]byte, 0, size)
	for len(out) < size {
		n := min(size-len(out), 512)
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: h, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: h, Name: pub.NVName},
			Size:       uint16(n),
			Offset:     uint16(len(out)),
		}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("tpm: reading NV index %#x: %w", idx, err)
		}
		if len(rsp.Data.Buffer) != n {
			return nil, fmt.Errorf("tpm: short read of NV index %#x", idx)
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return derElement(out)
}

// derElement returns the DER SEQUENCE at the start of b, which may be
// followed by zero padding only.
func derElement(b []byte) ([]byte, error) {
	s := cryptobyte.String(b)
	var elem cryptobyte.String
	if !s.ReadASN1Element(&elem, cbasn1.SEQUENCE) {
		return nil, errors.New("tpm: NV data is not a DER certificate")
	}
	if slices.ContainsFunc([]byte(s), func(c byte) bool { return c != 0 }) {
		return nil, errors.New("tpm: data after the DER certificate in NV")
	}
	return slices.Clone([]byte(elem)), nil
}

// verifyEKChain verifies an EK certificate chain (EK certificate first,
// then intermediates) against manufacturer roots at time now and returns
// the EK certificate and the validity window of the verified chain.
func verifyEKChain(chain [][]byte, roots, intermediates *x509.CertPool, now time.Time) (*x509.Certificate, time.Time, time.Time, error) {
	var zero time.Time
	if len(chain) == 0 || len(chain) > MaxChainLen {
		return nil, zero, zero, errors.New("tpm: EK chain length out of range")
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, zero, zero, fmt.Errorf("tpm: EK chain certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	if intermediates != nil {
		inter = intermediates.Clone()
	}
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	verified, err := verifyEK(certs[0], roots, inter, now)
	if err != nil {
		return nil, zero, zero, err
	}
	notBefore, notAfter := certs[0].NotBefore, certs[0].NotAfter
	for _, c := range verified[0] {
		notBefore, notAfter = later(notBefore, c.NotBefore), earlier(notAfter, c.NotAfter)
	}
	return certs[0], notBefore, notAfter, nil
}

// VerifyEKCertificate verifies an EK certificate against TPM manufacturer
// roots (and intermediates, which may be nil) at time now. EK
// certificates often carry a critical subject alternative name of
// directoryName form only (TPM manufacturer, model, version), which
// crypto/x509 leaves unhandled: it is accepted here, as go-tpm-tools'
// server.VerifyAKCert does. Any extended key usage is accepted (EK
// certificates name tcg-kp-EKCertificate or nothing). roots must not be
// nil (a nil pool would mean the system roots).
func VerifyEKCertificate(cert *x509.Certificate, roots, intermediates *x509.CertPool, now time.Time) error {
	_, err := verifyEK(cert, roots, intermediates, now)
	return err
}

func verifyEK(cert *x509.Certificate, roots, intermediates *x509.CertPool, now time.Time) ([][]*x509.Certificate, error) {
	if cert == nil || roots == nil {
		return nil, errors.New("tpm: no EK certificate or no manufacturer roots")
	}
	leaf := *cert // a copy: the unhandled list is edited
	leaf.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(leaf.UnhandledCriticalExtensions), func(id asn1.ObjectIdentifier) bool {
		return id.Equal(oidSubjectAltName)
	})
	verified, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: intermediates, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil { // mutation: tpm ek chain
		return nil, fmt.Errorf("tpm: EK certificate does not chain to a trusted manufacturer root: %w", err)
	}
	if len(verified) == 0 {
		verified = [][]*x509.Certificate{{cert}}
	}
	return verified, nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
