package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// OIDAKCertificate is the extended key usage of AK certificates,
// tcg-kp-AIKCertificate (2.23.133.8.3). The Verifier requires it.
var OIDAKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 3}

// AK certificates (docs/tpm.md, section 3) are X.509 certificates an
// enrollment CA issues after credential activation:
//
//   - the subject public key is the AK's;
//   - the subject key identifier is the AK's TPM name (0x000B ||
//     SHA-256(TPMT_PUBLIC)), so the certificate pins the whole public area,
//     attributes included;
//   - the subject's serialNumber attribute is the machine identifier, the
//     hex of SHA-256 of the EK's SubjectPublicKeyInfo ([MachineID]);
//   - the extended key usage is tcg-kp-AIKCertificate; the key usage
//     digitalSignature; it is not a CA.

// NewAKCertificateTemplate returns the template of the AK certificate an
// enrollment CA signs for the AK public area akPublic (which must be an AK
// [ValidateAKPublic] accepts) on the machine machineID (32 bytes), valid
// from notBefore to notAfter, with the given serial number. Sign it with
// x509.CreateCertificate(rand, template, caCert, template.PublicKey, caKey).
func NewAKCertificateTemplate(akPublic, machineID []byte, serial *big.Int, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	key, name, err := ValidateAKPublic(akPublic)
	if err != nil {
		return nil, err
	}
	if len(machineID) != 32 {
		return nil, errors.New("tpm: the machine identifier must be 32 bytes")
	}
	if serial == nil || serial.Sign() <= 0 || !notBefore.Before(notAfter) {
		return nil, errors.New("tpm: AK certificate needs a positive serial number and a validity period")
	}
	id := hex.EncodeToString(machineID)
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "reattest AK " + id[:16], SerialNumber: id},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{OIDAKCertificate},
		BasicConstraintsValid: true,
		SubjectKeyId:          name,
		PublicKey:             key,
	}, nil
}

// ValidateAKPublic checks an AK public area the way an enrollment CA must
// before it certifies it: an AK of this profile (ECC P-256 restricted
// signing key with fixedTPM, name algorithm SHA-256, scheme ECDSA/SHA-256
// or NULL) whose key the TPM generated and keeps under its parent
// (sensitiveDataOrigin, fixedParent). It returns the public key and the
// AK's TPM name.
func ValidateAKPublic(area []byte) (*ecdsa.PublicKey, []byte, error) {
	key, name, err := parseAK(area)
	if err != nil {
		return nil, nil, err
	}
	pub, err := unmarshalCanonical[tpm2.TPMTPublic](area)
	if err != nil {
		return nil, nil, err
	}
	if !pub.ObjectAttributes.FixedParent || !pub.ObjectAttributes.SensitiveDataOrigin { // mutation: tpm ak generated in tpm
		return nil, nil, errors.New("tpm: the AK must be fixedParent and sensitiveDataOrigin")
	}
	return key, name, nil
}

// akIdentity is what a verified AK certificate says about the AK.
type akIdentity struct {
	machineID []byte
	// notBefore and notAfter bound the time when the verified chain is
	// valid.
	notBefore, notAfter time.Time
}

// verifyAKChain verifies an AK certificate chain (AK certificate first,
// then intermediates) against the enrollment CA roots at time now, and
// that it certifies the AK of the Evidence: its public key is the AK's,
// its subject key identifier the AK's TPM name, its extended key usage
// tcg-kp-AIKCertificate. It returns the machine identifier the
// certificate names.
func verifyAKChain(chain [][]byte, roots *x509.CertPool, now time.Time, ak *ecdsa.PublicKey, akName []byte) (*akIdentity, error) {
	if roots == nil {
		return nil, errors.New("tpm: no enrollment CA roots")
	}
	if len(chain) == 0 || len(chain) > MaxChainLen {
		return nil, errors.New("tpm: AK chain length out of range")
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("tpm: AK chain certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	verified, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil { // mutation: tpm ak chain
		return nil, fmt.Errorf("tpm: AK certificate does not chain to a trusted enrollment CA: %w", err)
	}
	if leaf.IsCA || !slices.ContainsFunc(leaf.UnknownExtKeyUsage, OIDAKCertificate.Equal) { // mutation: tpm ak eku
		return nil, errors.New("tpm: the certificate is not an AK certificate (tcg-kp-AIKCertificate)")
	}
	if !ak.Equal(leaf.PublicKey) { // mutation: tpm ak certificate key
		return nil, errors.New("tpm: the AK certificate is for another key")
	}
	if !bytes.Equal(leaf.SubjectKeyId, akName) { // mutation: tpm ak certificate name
		return nil, errors.New("tpm: the AK certificate is for another AK public area")
	}
	id, err := machineIDOf(leaf)
	if err != nil {
		return nil, err
	}
	out := &akIdentity{machineID: id, notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}
	if len(verified) > 0 {
		for _, c := range verified[0] {
			out.notBefore, out.notAfter = later(out.notBefore, c.NotBefore), earlier(out.notAfter, c.NotAfter)
		}
	}
	return out, nil
}

// machineIDOf returns the machine identifier an AK certificate names in
// its subject's serialNumber: exactly 64 lowercase hex digits.
func machineIDOf(cert *x509.Certificate) ([]byte, error) {
	var found []string
	for _, a := range cert.Subject.Names {
		if a.Type.Equal(oidSerialNumber) {
			s, _ := a.Value.(string)
			found = append(found, s)
		}
	}
	if len(found) != 1 || len(found[0]) != 64 || found[0] != hex.EncodeToString(mustHex(found[0])) {
		return nil, errors.New("tpm: the AK certificate names no machine identifier")
	}
	return mustHex(found[0]), nil
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil
	}
	return b
}

var oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}
