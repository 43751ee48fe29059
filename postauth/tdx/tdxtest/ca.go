// Package tdxtest makes TDX quote Evidence without TDX hardware, for tests
// and demos: a test PKI shaped like Intel's (certificate names "Intel SGX
// Root CA", "Intel SGX PCK Platform CA", "Intel SGX PCK Certificate",
// "Intel SGX TCB Signing", ECDSA P-256), simulated platforms that mint
// quotes with any REPORTDATA and keep simulated RTMRs, matching collateral
// (TCB info, QE identity, CRLs) signed by the test keys, and a local fake
// of the Intel PCS served by net/http/httptest.
//
// Everything is generated at run time: no key of anyone else is in this
// package. The quotes follow the structure of go-tdx-guest's Intel-signed
// sample quote (cloned, then every signed field replaced and signed with
// the test keys), so go-tdx-guest's verify package accepts them against
// the test root and refuses them against Intel's root. A Verifier that
// trusts the test root ([tdx.WithTrustedRoots]) reports Format
// tdx.FormatTestRoot and HardwareBacked false for them: they prove
// nothing about any hardware. Never trust a test root outside tests and
// demos.
package tdxtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"
)

// TB is the part of testing.TB the helpers use (the same as
// postauthtest.TB, so postauthtest.Must works for examples).
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// testOrg marks every test certificate.
const testOrg = "reattest TDX test PKI (not Intel, not hardware)"

// Validity of the test certificates.
const (
	certBefore = time.Hour
	certAfter  = 10 * 365 * 24 * time.Hour
)

// CA is a test PKI shaped like Intel's SGX PKI: a root, a PCK Platform CA
// that issues PCK certificates, and a TCB signing certificate that signs
// collateral. The CRL distribution points name nothing reachable.
type CA struct {
	Root       *x509.Certificate
	PlatformCA *x509.Certificate
	TCBSigning *x509.Certificate

	rootKey, pcaKey, tcbKey *ecdsa.PrivateKey
	serial                  atomic.Int64
	now                     time.Time
}

// NewCA returns a CA with fresh keys, its certificates valid from an hour
// ago for ten years.
func NewCA(tb TB) *CA {
	tb.Helper()
	ca, err := newCA(time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return ca
}

func newCA(now time.Time) (*CA, error) {
	ca := &CA{now: now}
	ca.serial.Store(0x1000)
	var err error
	if ca.rootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if ca.pcaKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if ca.tcbKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	rootTmpl := ca.template("Intel SGX Root CA", &ca.rootKey.PublicKey)
	rootTmpl.IsCA, rootTmpl.MaxPathLen = true, 1
	rootTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	rootTmpl.CRLDistributionPoints = []string{"https://tdx-test.invalid/IntelSGXRootCA.der"}
	if ca.Root, err = createCert(rootTmpl, rootTmpl, &ca.rootKey.PublicKey, ca.rootKey); err != nil {
		return nil, err
	}
	pcaTmpl := ca.template("Intel SGX PCK Platform CA", &ca.pcaKey.PublicKey)
	pcaTmpl.IsCA, pcaTmpl.MaxPathLenZero = true, true
	pcaTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	pcaTmpl.CRLDistributionPoints = []string{"https://tdx-test.invalid/IntelSGXRootCA.der"}
	if ca.PlatformCA, err = createCert(pcaTmpl, ca.Root, &ca.pcaKey.PublicKey, ca.rootKey); err != nil {
		return nil, err
	}
	tcbTmpl := ca.template("Intel SGX TCB Signing", &ca.tcbKey.PublicKey)
	tcbTmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	if ca.TCBSigning, err = createCert(tcbTmpl, ca.Root, &ca.tcbKey.PublicKey, ca.rootKey); err != nil {
		return nil, err
	}
	return ca, nil
}

// Roots returns the test root, for tdx.WithTrustedRoots.
func (ca *CA) Roots() []*x509.Certificate { return []*x509.Certificate{ca.Root} }

func (ca *CA) template(cn string, pub *ecdsa.PublicKey) *x509.Certificate {
	enc, _ := pub.Bytes()
	ski := sha256.Sum256(enc)
	return &x509.Certificate{
		SerialNumber:          big.NewInt(ca.serial.Add(1)),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{testOrg}},
		NotBefore:             ca.now.Add(-certBefore),
		NotAfter:              ca.now.Add(certAfter),
		BasicConstraintsValid: true,
		SubjectKeyId:          ski[:20],
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}
}

func createCert(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, key *ecdsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("tdxtest: creating %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// signP256 signs SHA-256(msg) and returns r || s (32 bytes each), the
// signature encoding of quotes and collateral.
func signP256(key *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		return nil, err
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

// pubXY returns X || Y (32 bytes each) of a P-256 key.
func pubXY(k *ecdsa.PublicKey) ([]byte, error) {
	b, err := k.Bytes()
	if err != nil {
		return nil, err
	}
	if len(b) != 65 {
		return nil, errors.New("tdxtest: not a P-256 key")
	}
	return b[1:], nil
}
