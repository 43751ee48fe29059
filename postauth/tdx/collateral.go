package tdx

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	"github.com/reattest/reattest/postauth"
)

// CollateralSource supplies the collateral a Verifier needs for a
// platform: Intel's signed TCB info for the platform's FMSPC, the TD QE
// identity, and the CRLs. [PCS] fetches it from Intel's Provisioning
// Certification Service; [Cache] keeps it in memory until its
// nextUpdate. Implementations must be safe for concurrent use.
//
// The Verifier asks for collateral only after the quote's PCK chain
// verified, with the FMSPC of that PCK certificate: a peer cannot make it
// fetch collateral for arbitrary platforms.
type CollateralSource interface {
	// Collateral returns the collateral for the platforms whose PCK
	// certificates carry FMSPC fmspc (12 lowercase hex digits) and are
	// issued by the PCK CA ca ("platform" or "processor"). It returns an
	// error if it has none; the Verifier checks signatures and expiry.
	Collateral(ctx context.Context, fmspc, ca string) (*Collateral, error)
}

// PCK CA identifiers (the "ca" query parameter of the PCS PCK CRL API).
const (
	CAPlatform  = "platform"
	CAProcessor = "processor"
)

// MaxCollateralLen bounds each part of a RawCollateral.
const MaxCollateralLen = 1 << 20

// RawCollateral is collateral as the Intel PCS (API v4) serves it. It is
// plain bytes so that it can be stored or shared (a cache across
// replicas) and parsed again with [ParseCollateral].
type RawCollateral struct {
	// CA is the PCK CA the CRL is for ("platform" or "processor").
	CA string
	// TCBInfo is the body of GET /tdx/certification/v4/tcb?fmspc=...:
	// JSON {"tcbInfo": {...}, "signature": "<hex r||s>"}.
	TCBInfo []byte
	// TCBInfoIssuerChain is the TCB-Info-Issuer-Chain header, URL-decoded:
	// PEM certificates, the TCB signing certificate first.
	TCBInfoIssuerChain []byte
	// QEIdentity is the body of GET /tdx/certification/v4/qe/identity:
	// JSON {"enclaveIdentity": {...}, "signature": "<hex r||s>"}.
	QEIdentity []byte
	// QEIdentityIssuerChain is the SGX-Enclave-Identity-Issuer-Chain
	// header, URL-decoded (PEM, signing certificate first).
	QEIdentityIssuerChain []byte
	// PCKCRL is the DER CRL of the PCK CA (GET
	// /sgx/certification/v4/pckcrl?ca=...&encoding=der).
	PCKCRL []byte
	// RootCACRL is the DER CRL of the root CA.
	RootCACRL []byte
}

// Collateral is parsed, not yet verified collateral for one platform
// (FMSPC) and PCK CA. It is immutable: a Cache shares one among
// concurrent verifications. [ParseCollateral] makes one; the Verifier
// verifies it against the root of each quote's chain, and remembers
// which roots it verified it for.
type Collateral struct {
	raw        RawCollateral
	tcbInfo    pcs.TcbInfo
	tcbBody    []byte // the signed bytes: the "tcbInfo" value as served
	tcbSig     []byte // r || s
	tcbSigner  *x509.Certificate
	qe         pcs.EnclaveIdentity
	qeBody     []byte
	qeSig      []byte
	qeSigner   *x509.Certificate
	pckCRL     *x509.RevocationList
	rootCRL    *x509.RevocationList
	revoked    map[string]struct{} // PCK CRL serials (hex)
	rootRevd   map[string]struct{} // root CA CRL serials (hex)
	nextUpdate time.Time
	id         [sha256.Size]byte // identity: SHA-256 over every raw part (see ParseCollateral)

	mu       sync.Mutex
	verified map[[sha256.Size]byte]struct{} // (root, PCK CA) pairs the signatures verified for
}

// Collateral identifiers and versions this package accepts (TDX TCB info
// v3 and TD QE identity v2 of the PCS API v4).
const (
	tcbInfoID         = "TDX"
	tcbInfoVersion    = 3
	qeIdentityID      = "TD_QE"
	qeIdentityVersion = 2
	tcbSigningCN      = "Intel SGX TCB Signing"
)

// ParseCollateral parses raw collateral: both JSON documents (keeping the
// exact bytes that were signed), the signers' certificates and both CRLs.
// It checks the identifiers ("TDX" TCB info version 3, "TD_QE" identity
// version 2), that each has TCB levels and a 64-byte signature, and the
// size of every part (MaxCollateralLen). It verifies no signature.
func ParseCollateral(raw RawCollateral) (*Collateral, error) {
	for _, b := range [][]byte{raw.TCBInfo, raw.TCBInfoIssuerChain, raw.QEIdentity, raw.QEIdentityIssuerChain, raw.PCKCRL, raw.RootCACRL} {
		if len(b) == 0 || len(b) > MaxCollateralLen {
			return nil, errors.New("tdx: collateral part missing or too large")
		}
	}
	if raw.CA != CAPlatform && raw.CA != CAProcessor {
		return nil, fmt.Errorf("tdx: collateral for unknown PCK CA %q", raw.CA)
	}
	c := &Collateral{raw: cloneRaw(raw)}
	var err error
	if c.tcbBody, c.tcbSig, err = splitSigned(c.raw.TCBInfo, "tcbInfo"); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(c.tcbBody, &c.tcbInfo); err != nil {
		return nil, fmt.Errorf("tdx: TCB info: %w", err)
	}
	if c.tcbInfo.ID != tcbInfoID || c.tcbInfo.Version != tcbInfoVersion || len(c.tcbInfo.TcbLevels) == 0 {
		return nil, fmt.Errorf("tdx: TCB info: id %q version %d with %d levels (want %q version %d)", c.tcbInfo.ID, c.tcbInfo.Version, len(c.tcbInfo.TcbLevels), tcbInfoID, tcbInfoVersion)
	}
	if _, err := hex.DecodeString(c.tcbInfo.Fmspc); err != nil || len(c.tcbInfo.Fmspc) != 12 {
		return nil, errors.New("tdx: TCB info: bad fmspc")
	}
	if c.qeBody, c.qeSig, err = splitSigned(c.raw.QEIdentity, "enclaveIdentity"); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(c.qeBody, &c.qe); err != nil {
		return nil, fmt.Errorf("tdx: QE identity: %w", err)
	}
	if c.qe.ID != qeIdentityID || c.qe.Version != qeIdentityVersion || len(c.qe.TcbLevels) == 0 {
		return nil, fmt.Errorf("tdx: QE identity: id %q version %d with %d levels (want %q version %d)", c.qe.ID, c.qe.Version, len(c.qe.TcbLevels), qeIdentityID, qeIdentityVersion)
	}
	if c.tcbSigner, err = firstCert(c.raw.TCBInfoIssuerChain); err != nil {
		return nil, fmt.Errorf("tdx: TCB info issuer chain: %w", err)
	}
	if c.qeSigner, err = firstCert(c.raw.QEIdentityIssuerChain); err != nil {
		return nil, fmt.Errorf("tdx: QE identity issuer chain: %w", err)
	}
	if c.pckCRL, err = x509.ParseRevocationList(c.raw.PCKCRL); err != nil {
		return nil, fmt.Errorf("tdx: PCK CRL: %w", err)
	}
	if c.rootCRL, err = x509.ParseRevocationList(c.raw.RootCACRL); err != nil {
		return nil, fmt.Errorf("tdx: root CA CRL: %w", err)
	}
	if c.pckCRL.NextUpdate.IsZero() || c.rootCRL.NextUpdate.IsZero() || c.tcbInfo.NextUpdate.IsZero() || c.qe.NextUpdate.IsZero() {
		return nil, errors.New("tdx: collateral without nextUpdate")
	}
	c.revoked = serials(c.pckCRL)
	c.rootRevd = serials(c.rootCRL)
	c.nextUpdate = slices.MinFunc([]time.Time{c.tcbInfo.NextUpdate, c.qe.NextUpdate, c.pckCRL.NextUpdate, c.rootCRL.NextUpdate}, time.Time.Compare)
	c.id = identity(c.raw)
	return c, nil
}

// identity is SHA-256 over the collateral's parts, each preceded by its
// length: two Collaterals have the same identity exactly when they carry
// the same TCB info, QE identity, signers, CRLs and PCK CA. The Verifier
// binds what it remembers about a quote's signer to it.
func identity(r RawCollateral) [sha256.Size]byte {
	h := sha256.New()
	for _, b := range [][]byte{[]byte(r.CA), r.TCBInfo, r.TCBInfoIssuerChain, r.QEIdentity, r.QEIdentityIssuerChain, r.PCKCRL, r.RootCACRL} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var id [sha256.Size]byte
	h.Sum(id[:0])
	return id
}

// Raw returns a copy of the raw collateral.
func (c *Collateral) Raw() RawCollateral { return cloneRaw(c.raw) }

// FMSPC is the TCB info's FMSPC, 12 lowercase hex digits.
func (c *Collateral) FMSPC() string { return strings.ToLower(c.tcbInfo.Fmspc) }

// CA is the PCK CA the collateral's PCK CRL is for.
func (c *Collateral) CA() string { return c.raw.CA }

// NextUpdate is the earliest nextUpdate of the TCB info, the QE identity
// and both CRLs: after it (plus the Verifier's grace) the collateral is
// expired.
func (c *Collateral) NextUpdate() time.Time { return c.nextUpdate }

// TCBEvaluationDataNumber is the TCB info's tcbEvaluationDataNumber
// (Intel's TCB recovery counter).
func (c *Collateral) TCBEvaluationDataNumber() int { return c.tcbInfo.TcbEvaluationDataNumber }

func cloneRaw(r RawCollateral) RawCollateral {
	return RawCollateral{
		CA: r.CA, TCBInfo: slices.Clone(r.TCBInfo), TCBInfoIssuerChain: slices.Clone(r.TCBInfoIssuerChain),
		QEIdentity: slices.Clone(r.QEIdentity), QEIdentityIssuerChain: slices.Clone(r.QEIdentityIssuerChain),
		PCKCRL: slices.Clone(r.PCKCRL), RootCACRL: slices.Clone(r.RootCACRL),
	}
}

// splitSigned returns the exact bytes of body's field (what Intel signed)
// and the decoded "signature" (64 bytes, r || s).
func splitSigned(body []byte, field string) (signed, sig []byte, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, nil, fmt.Errorf("tdx: collateral %s: %w", field, err)
	}
	signed = top[field]
	if len(signed) == 0 || signed[0] != '{' {
		return nil, nil, fmt.Errorf("tdx: collateral: no %q object", field)
	}
	var sigHex string
	if err := json.Unmarshal(top["signature"], &sigHex); err != nil {
		return nil, nil, fmt.Errorf("tdx: collateral %s: no signature", field)
	}
	if sig, err = hex.DecodeString(sigHex); err != nil || len(sig) != 64 {
		return nil, nil, fmt.Errorf("tdx: collateral %s: bad signature encoding", field)
	}
	return signed, sig, nil
}

// firstCert parses the first certificate of a PEM chain.
func firstCert(chain []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(chain)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func serials(crl *x509.RevocationList) map[string]struct{} {
	m := make(map[string]struct{}, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			m[e.SerialNumber.Text(16)] = struct{}{}
		}
	}
	return m
}

func isRevoked(set map[string]struct{}, serial *big.Int) bool {
	if serial == nil {
		return true
	}
	_, ok := set[serial.Text(16)]
	return ok
}

// collateralError is a failure of the collateral itself (not of the
// Evidence), with the reason the Verifier reports.
type collateralError struct {
	reason postauth.Reason
	err    error
}

func (e *collateralError) Error() string { return e.err.Error() }
func (e *collateralError) Unwrap() error { return e.err }

func collErr(reason postauth.Reason, format string, args ...any) error {
	return &collateralError{reason: reason, err: fmt.Errorf("tdx: collateral: "+format, args...)}
}

// check verifies the collateral for a quote whose PCK chain ends at root
// (a trusted root) through the PCK CA certificate pca, at now with grace:
//
//   - the TCB info and QE identity signers are "Intel SGX TCB Signing"
//     certificates issued and signed by root, not on the root CA CRL, and
//     valid now; each document's signature verifies with its signer's key;
//   - the PCK CRL is issued and signed by pca, the root CA CRL by root;
//   - no part is past its nextUpdate plus grace.
//
// The signature checks depend only on the bytes, root and pca, so they
// run once per (root, pca) and are remembered; the time checks run every
// time.
func (c *Collateral) check(root, pca *x509.Certificate, now time.Time, grace time.Duration) error {
	for _, s := range []*x509.Certificate{c.tcbSigner, c.qeSigner} {
		if now.Before(s.NotBefore) || now.After(s.NotAfter) {
			return collErr(postauth.ReasonCollateralExpired, "signing certificate not valid at %v", now)
		}
	}
	for name, next := range map[string]time.Time{"TCB info": c.tcbInfo.NextUpdate, "QE identity": c.qe.NextUpdate, "PCK CRL": c.pckCRL.NextUpdate, "root CA CRL": c.rootCRL.NextUpdate} {
		if now.After(next.Add(grace)) { // mutation: tdx collateral expiry
			return collErr(postauth.ReasonCollateralExpired, "%s expired at %v (grace %v)", name, next, grace)
		}
	}
	key := sha256.Sum256(append(slices.Clone(root.Raw), pca.Raw...))
	c.mu.Lock()
	_, ok := c.verified[key]
	c.mu.Unlock()
	if ok {
		return nil
	}
	if err := c.checkSignatures(root, pca); err != nil {
		return err
	}
	c.mu.Lock()
	if c.verified == nil || len(c.verified) >= 16 {
		c.verified = make(map[[sha256.Size]byte]struct{})
	}
	c.verified[key] = struct{}{}
	c.mu.Unlock()
	return nil
}

func (c *Collateral) checkSignatures(root, pca *x509.Certificate) error {
	docs := []struct {
		name   string
		signer *x509.Certificate
		body   []byte
		sig    []byte
	}{
		{"TCB info", c.tcbSigner, c.tcbBody, c.tcbSig},
		{"QE identity", c.qeSigner, c.qeBody, c.qeSig},
	}
	for _, d := range docs {
		if d.signer.Subject.CommonName != tcbSigningCN || !bytes.Equal(d.signer.RawIssuer, root.RawSubject) {
			return collErr(postauth.ReasonCollateralInvalid, "%s signer is not a TCB signing certificate of the quote's root", d.name)
		}
		if err := d.signer.CheckSignatureFrom(root); err != nil { // mutation: tdx collateral signer chain
			return collErr(postauth.ReasonCollateralInvalid, "%s signer: %v", d.name, err)
		}
		if isRevoked(c.rootRevd, d.signer.SerialNumber) {
			return collErr(postauth.ReasonCollateralInvalid, "%s signer is revoked", d.name)
		}
		if !verifyP256(d.signer, d.body, d.sig) { // mutation: tdx collateral signature
			return collErr(postauth.ReasonCollateralInvalid, "%s signature does not verify", d.name)
		}
	}
	if !bytes.Equal(c.pckCRL.RawIssuer, pca.RawSubject) || c.pckCRL.CheckSignatureFrom(pca) != nil { // mutation: tdx pck crl signature
		return collErr(postauth.ReasonCollateralInvalid, "PCK CRL is not signed by the quote's PCK CA")
	}
	if !bytes.Equal(c.rootCRL.RawIssuer, root.RawSubject) || c.rootCRL.CheckSignatureFrom(root) != nil {
		return collErr(postauth.ReasonCollateralInvalid, "root CA CRL is not signed by the quote's root")
	}
	return nil
}

// verifyP256 verifies an ECDSA P-256 SHA-256 signature (r || s, 32 bytes
// each) over msg with cert's key.
func verifyP256(cert *x509.Certificate, msg, sig []byte) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() || len(sig) != 64 {
		return false
	}
	d := sha256.Sum256(msg)
	return ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}
