package tdx

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	"github.com/google/go-tdx-guest/verify"

	"github.com/reattest/reattest/postauth"
)

//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

// IntelRoot returns Intel's SGX Root CA certificate (the root of every
// genuine PCK chain and of Intel's TCB signing certificates), the
// Verifier's default trusted root. It is the certificate go-tdx-guest
// embeds. Each call returns a new copy.
func IntelRoot() *x509.Certificate {
	b, _ := pem.Decode(intelRootPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		panic("tdx: embedded Intel SGX Root CA: " + err.Error())
	}
	return c
}

// Certificate names of an Intel PCK chain (checked by go-tdx-guest).
const (
	rootCN         = "Intel SGX Root CA"
	platformCAName = "Intel SGX PCK Platform CA"
	processorCA    = "Intel SGX PCK Processor CA"
	pckCN          = "Intel SGX PCK Certificate"
)

// Verifier checks TDX quote Evidence: the quote with go-tdx-guest's
// verify package against the trusted roots, the binding to the
// connection, Intel's collateral from a [CollateralSource], the TCB
// status and measurement policy; it reports the posture log with RTMR3 as
// its head, for the relying party to replay. It is safe for concurrent use.
type Verifier struct {
	src            CollateralSource
	roots          []*x509.Certificate
	pool           *x509.CertPool
	intel          []byte // Intel SGX Root CA, DER
	policy         *compiledPolicy
	now            func() time.Time
	grace          time.Duration
	requirePosture bool
	warn           func(context.Context, []string)

	signers           *signerCache // verified signers, bound to the collateral they were checked against
	crls              crlMarks     // the newest CRL seen per issuer
	fullVerifications atomic.Int64 // go-tdx-guest verifications run (tests, benchmarks)
}

var _ postauth.Verifier = (*Verifier)(nil)

// NewVerifier returns a Verifier that gets collateral from src (for
// example NewCache(pcs), with pcs from [NewPCS]). By default it trusts
// only Intel's SGX Root CA and applies the zero [Policy]; see the
// VerifierOptions.
func NewVerifier(src CollateralSource, opts ...VerifierOption) (*Verifier, error) {
	if src == nil {
		return nil, errors.New("tdx: nil collateral source")
	}
	c, err := newVerifierConfig(opts)
	if err != nil {
		return nil, err
	}
	pol, err := c.policy.compile()
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		src: src, roots: slices.Clone(c.roots), pool: x509.NewCertPool(), intel: IntelRoot().Raw,
		policy: pol, now: c.now, grace: c.grace, requirePosture: c.requirePosture, warn: c.warn,
		signers: newSignerCache(),
	}
	for _, r := range v.roots {
		v.pool.AddCert(r)
	}
	return v, nil
}

// MediaTypes returns the CMW media types the Verifier accepts.
func (v *Verifier) MediaTypes() []string { return []string{MediaType} }

// Verify checks the Evidence in the order of docs/tdx.md section 5:
//
//  1. the media type (format_not_accepted);
//  2. the Evidence encoding and bounds, and the quote's structure (V4 or
//     V5, nothing after the signed data) (evidence_invalid);
//  3. go-tdx-guest's verify.TdxQuote: the PCK chain (Intel's certificate
//     names, ECDSA P-256, each certificate valid now) verifies to a
//     trusted root (untrusted_attester), the quote signature by the
//     attestation key, the QE report signature by the PCK key and the QE
//     report data binding the attestation key (bad_evidence_signature);
//     for a signer verified before under the same collateral, the
//     chain's validity now and the quote signature only (see
//     verifyQuote);
//  4. the QE vendor id is Intel's (qe_identity_mismatch);
//  5. REPORTDATA is the binder followed by zero bytes (binder_mismatch);
//  6. the collateral for the PCK's FMSPC (collateral_unavailable) is
//     signed by TCB signing certificates of the quote's root, its CRLs by
//     the quote's PCK CA and root (collateral_invalid), and not past its
//     nextUpdate plus grace (collateral_expired), and its CRLs are not
//     older than CRLs of the same issuers seen before (collateral_invalid);
//     a remembered signer checked against other collateral is verified in
//     full again;
//  7. neither the PCK certificate nor its CA is revoked (pck_revoked),
//     on every quote, against the current CRLs;
//  8. the TDX module (tdx_module_mismatch) and the quoting enclave
//     (qe_identity_mismatch) are Intel's, and a TCB level matches
//     (tcb_not_supported);
//  9. the posture log, if any, is reported with RTMR3 as its head (the
//     relying party replays it: posture_invalid), or is required
//     (posture_missing);
//  10. the TCB status policy (tcb_status_denied, CodePolicyDenied);
//  11. the measurement policy (tdx_policy_denied, CodePolicyDenied).
//
// Collateral failures are CodeUnavailable: no verdict, never a pass.
// It reports Nonce = REPORTDATA without its padding, KeyHash = the
// Challenge's key hash once the binder matched (the binder covers the
// authenticator key), MachineID, the measurements, and the posture.
func (v *Verifier) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if postauth.BaseMediaType(ev.Type) != MediaType {
		return nil, postauth.ErrorFor(postauth.ReasonFormatNotAccepted, fmt.Errorf("tdx: media type %q", ev.Type))
	}
	e, err := DecodeEvidence(ev.Value)
	if err != nil {
		return nil, postauth.ErrorFor(postauth.ReasonEvidenceInvalid, err)
	}
	q, err := ParseQuote(e.Quote)
	if err != nil {
		return nil, postauth.ErrorFor(postauth.ReasonEvidenceInvalid, err)
	}
	now := v.now()
	id := sha256.Sum256(q.certified)
	k, known, err := v.verifyQuote(ctx, q, id, now)
	if err != nil {
		return nil, err
	}
	if !isIntelQE(q.QEVendorID) { // mutation: tdx qe vendor
		return nil, postauth.ErrorFor(postauth.ReasonQEIdentityMismatch, errors.New("tdx: the quote's QE vendor id is not Intel's"))
	}
	nonce := binderFromReportData(q.ReportData, len(ch.Binder))
	if nonce == nil || subtle.ConstantTimeCompare(nonce, ch.Binder) != 1 { // mutation: tdx binder compare
		return nil, postauth.ErrorFor(postauth.ReasonBinderMismatch, postauth.ErrBinderMismatch)
	}
	col, err := v.collateral(ctx, k, now)
	if err != nil {
		return nil, err
	}
	if known != nil && !known.boundTo(col, now) { // mutation: tdx signer bound to collateral
		// The signer was checked against other collateral (a new TCB
		// info, QE identity or CRL came since), or that collateral
		// reached its nextUpdate: what was remembered is void. Verify the
		// signer in full again, under the current collateral.
		v.signers.forget(id)
		if k, err = v.verifyFull(ctx, q, now); err != nil {
			return nil, err
		}
		known = nil
	}
	// Revocation, on every quote, against the current CRLs: a remembered
	// signer never outlives the revocation of its PCK certificate or CA.
	chain := k.chain
	if isRevoked(col.revoked, chain.PCKCertificate.SerialNumber) { // mutation: tdx pck revocation
		return nil, postauth.ErrorFor(postauth.ReasonPCKRevoked, errors.New("tdx: the PCK certificate is revoked"))
	}
	if isRevoked(col.rootRevd, chain.IntermediateCertificate.SerialNumber) { // mutation: tdx pck ca revocation
		return nil, postauth.ErrorFor(postauth.ReasonPCKRevoked, errors.New("tdx: the PCK CA certificate is revoked"))
	}
	if known == nil {
		v.signers.remember(id, &signerEntry{key: k, col: col.id, until: col.NextUpdate().Add(v.grace)})
	}
	tcb, err := evaluateTCB(col, q, k.ext)
	if err != nil {
		var te *tcbError
		var ce *collateralError
		switch {
		case errors.As(err, &te):
			return nil, postauth.ErrorFor(te.reason, err)
		case errors.As(err, &ce):
			return nil, postauth.ErrorFor(ce.reason, err)
		}
		return nil, postauth.ErrorFor(postauth.ReasonEvidenceInvalid, err)
	}
	app := &postauth.Appraisal{
		Nonce:        slices.Clone(nonce),
		KeyHash:      slices.Clone(ch.KeyHash),
		MachineID:    q.machineID(),
		Expiry:       expiry(col.NextUpdate().Add(v.grace), chain),
		Measurements: measurements(q, tcb, k.ext),
	}
	app.Format, app.HardwareBacked = v.formatOf(k.root)
	switch {
	case e.Posture != nil:
		// The relying party replays the log to this head
		// (postauth.RelyingParty.Verify). The head's form is fixed: RTMR3
		// is a SHA-384 register, 48 bytes (ParseQuote checked the size),
		// and a log measured with another hash cannot replay to it.
		app.PostureHead = slices.Clone(q.RTMRs[PostureRTMR])
		app.PostureLog = slices.Clone(e.Posture.Log)
	case v.requirePosture:
		return nil, postauth.ErrorFor(postauth.ReasonPostureMissing, errors.New("tdx: evidence carries no posture"))
	}
	viol, warnings := v.policy.tcbViolations(tcb)
	if len(viol) > 0 { // mutation: tdx tcb status policy
		return nil, &postauth.Error{Code: postauth.CodePolicyDenied, Reason: postauth.ReasonTCBStatusDenied, Violations: viol, Err: errors.New("tdx: TCB status not allowed by policy")}
	}
	if viol := v.policy.measurementViolations(q); len(viol) > 0 { // mutation: tdx measurement policy
		return nil, &postauth.Error{Code: postauth.CodePolicyDenied, Reason: postauth.ReasonTDXPolicyDenied, Violations: viol, Err: errors.New("tdx: TD refused by the measurement policy")}
	}
	if len(warnings) > 0 {
		for _, w := range warnings {
			app.Measurements = append(app.Measurements, postauth.Measurement{Name: "tcb_warning", Version: w})
		}
		if v.warn != nil {
			for _, a := range tcb.AdvisoryIDs {
				warnings = append(warnings, "advisory "+a)
			}
			v.warn(ctx, warnings)
		}
	}
	return app, nil
}

// verifyQuote verifies the quote's signature and signer at now and
// returns the signer, and the remembered entry it came from (nil if the
// signer was verified in full now). The first quote of a signer
// (attestation key and certification data: QE report, its signature, the
// PCK chain) goes through go-tdx-guest's verify.TdxQuote against the
// trusted roots (see verifyFull). Once its checks against the collateral
// passed (revocation included), the Verifier remembers the signer, bound
// to that collateral; later quotes with the same bytes get the time
// checks of the chain again and the one check that differs per quote, the
// attestation key's ECDSA signature over header || body. Verify then
// checks that the entry is still bound to the current collateral, and the
// revocation of the PCK and its CA against the current CRLs, on every
// quote.
func (v *Verifier) verifyQuote(ctx context.Context, q *Quote, id [sha256.Size]byte, now time.Time) (*platformKey, *signerEntry, error) {
	if e := v.signers.lookup(id); e != nil {
		k := e.key
		if err := k.validAt(now); err != nil {
			return nil, nil, postauth.ErrorFor(postauth.ReasonUntrustedAttester, err)
		}
		if !verifySig(k.ak, q.signed, q.sig) { // mutation: tdx quote signature (known signer)
			return nil, nil, postauth.ErrorFor(postauth.ReasonBadEvidenceSignature, errors.New("tdx: quote signature does not verify"))
		}
		return k, e, nil
	}
	k, err := v.verifyFull(ctx, q, now)
	return k, nil, err
}

// verifyFull verifies the quote with go-tdx-guest's verify.TdxQuote
// against the trusted roots at now: the PCK chain, the quote signature,
// the QE report signature by the PCK key and the QE report data binding
// the attestation key. It returns the signer.
func (v *Verifier) verifyFull(ctx context.Context, q *Quote, now time.Time) (*platformKey, error) {
	v.fullVerifications.Add(1)
	opts := &verify.Options{
		TrustedRoots: v.pool,
		Now:          &verify.TimeSet{PckCertChain: now, TcbInfo: now, QeIdentity: now, PckCrl: now, RootCaCrl: now},
	}
	if err := verify.TdxQuoteContext(ctx, q.proto, opts); err != nil { // mutation: tdx quote verification
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		// go-tdx-guest's errors are not typed: tell an untrusted chain
		// from a bad signature by checking the chain alone (failure path
		// only).
		if chainErr := v.checkChain(q, now); chainErr != nil {
			return nil, postauth.ErrorFor(postauth.ReasonUntrustedAttester, fmt.Errorf("tdx: PCK chain: %w", chainErr))
		}
		return nil, postauth.ErrorFor(postauth.ReasonBadEvidenceSignature, fmt.Errorf("tdx: quote: %w", err))
	}
	k := &platformKey{}
	var err error
	if k.chain, err = verify.ExtractChainFromQuote(q.proto); err != nil {
		return nil, postauth.ErrorFor(postauth.ReasonEvidenceInvalid, err)
	}
	if k.root = v.rootOf(k.chain); k.root == nil {
		return nil, postauth.ErrorFor(postauth.ReasonUntrustedAttester, errors.New("tdx: PCK chain does not end at a trusted root"))
	}
	if k.ext, err = pcs.PckCertificateExtensions(k.chain.PCKCertificate); err != nil {
		return nil, postauth.ErrorFor(postauth.ReasonEvidenceInvalid, fmt.Errorf("tdx: PCK certificate extensions: %w", err))
	}
	if k.ak, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, q.certified[:64]...)); err != nil {
		return nil, postauth.ErrorFor(postauth.ReasonEvidenceInvalid, fmt.Errorf("tdx: attestation key: %w", err))
	}
	return k, nil
}

// verifySig verifies an ECDSA P-256 SHA-256 signature r || s over msg.
func verifySig(pub *ecdsa.PublicKey, msg, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	d := sha256.Sum256(msg)
	return ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}

// checkChain checks the quote's PCK chain the way go-tdx-guest does in
// outline: Intel's certificate names, and a chain to a trusted root valid
// at now.
func (v *Verifier) checkChain(q *Quote, now time.Time) error {
	chain, err := verify.ExtractChainFromQuote(q.proto)
	if err != nil {
		return err
	}
	if chain.PCKCertificate.Subject.CommonName != pckCN || chain.IntermediateCertificate.Subject.CommonName != platformCAName || chain.RootCertificate.Subject.CommonName != rootCN {
		return errors.New("not an Intel PCK chain")
	}
	inter := x509.NewCertPool()
	inter.AddCert(chain.IntermediateCertificate)
	_, err = chain.PCKCertificate.Verify(x509.VerifyOptions{Roots: v.pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// formatOf returns the Format and HardwareBacked of a quote whose PCK
// chain ends at root: hardware-backed only for Intel's SGX Root CA.
func (v *Verifier) formatOf(root *x509.Certificate) (string, bool) {
	if bytes.Equal(root.Raw, v.intel) { // mutation: tdx hardware-backed only for Intel's root
		return Format, true
	}
	return FormatTestRoot, false
}

// rootOf returns the trusted root that issued chain's PCK CA certificate:
// the trusted root equal to the chain's root certificate, or else the one
// whose key signed the CA certificate.
func (v *Verifier) rootOf(chain *verify.PCKCertificateChain) *x509.Certificate {
	for _, r := range v.roots {
		if bytes.Equal(r.Raw, chain.RootCertificate.Raw) {
			return r
		}
	}
	for _, r := range v.roots {
		if bytes.Equal(chain.IntermediateCertificate.RawIssuer, r.RawSubject) && chain.IntermediateCertificate.CheckSignatureFrom(r) == nil {
			return r
		}
	}
	return nil
}

// collateral gets and checks the collateral for the signer's platform.
func (v *Verifier) collateral(ctx context.Context, k *platformKey, now time.Time) (*Collateral, error) {
	chain, ext := k.chain, k.ext
	ca := CAPlatform
	if chain.IntermediateCertificate.Subject.CommonName == processorCA {
		ca = CAProcessor
	}
	fmspc := strings.ToLower(ext.FMSPC)
	col, err := v.src.Collateral(ctx, fmspc, ca)
	if err != nil || col == nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		if err == nil {
			err = errors.New("no collateral")
		}
		return nil, postauth.ErrorFor(postauth.ReasonCollateralUnavailable, fmt.Errorf("tdx: collateral for FMSPC %s: %w", fmspc, err))
	}
	if col.FMSPC() != fmspc || col.CA() != ca { // mutation: tdx collateral platform
		return nil, postauth.ErrorFor(postauth.ReasonCollateralInvalid, fmt.Errorf("tdx: collateral for FMSPC %s/%s, want %s/%s", col.FMSPC(), col.CA(), fmspc, ca))
	}
	if err := col.check(k.root, chain.IntermediateCertificate, now, v.grace); err != nil {
		var ce *collateralError
		if errors.As(err, &ce) {
			return nil, postauth.ErrorFor(ce.reason, err)
		}
		return nil, postauth.ErrorFor(postauth.ReasonCollateralInvalid, err)
	}
	// The CRLs verified: refuse one older than a CRL of the same issuer
	// this Verifier already accepted (a rolled-back source would
	// otherwise un-revoke a PCK until the old CRL's nextUpdate).
	if err := v.crls.admit(chain.IntermediateCertificate, col.pckCRL); err != nil { // mutation: tdx crl rollback
		return nil, postauth.ErrorFor(postauth.ReasonCollateralInvalid, err)
	}
	if err := v.crls.admit(k.root, col.rootCRL); err != nil { // mutation: tdx root crl rollback
		return nil, postauth.ErrorFor(postauth.ReasonCollateralInvalid, err)
	}
	return col, nil
}

// expiry is the earliest of the collateral's expiry and the PCK chain's
// certificates' NotAfter.
func expiry(collateral time.Time, chain *verify.PCKCertificateChain) time.Time {
	t := collateral
	for _, c := range []*x509.Certificate{chain.PCKCertificate, chain.IntermediateCertificate} {
		if c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// machineID is SHA-256(MRTD || MRCONFIGID || MROWNER || MROWNERCONFIG).
func machineID(mrtd, configID, owner, ownerConfig []byte) []byte {
	h := sha256.New()
	for _, b := range [][]byte{mrtd, configID, owner, ownerConfig} {
		h.Write(b)
	}
	return h.Sum(nil)
}

// measurements are the values the Appraisal reports (docs/tdx.md section
// 5): SHA-384 registers with Alg SHA384, raw values with Alg 0, and the
// TCB statuses in Version.
func measurements(q *Quote, t *tcbResult, ext *pcs.PckExtensions) []postauth.Measurement {
	ms := []postauth.Measurement{
		{Name: "mrtd", Alg: crypto.SHA384, Digest: slices.Clone(q.MRTD)},
		{Name: "rtmr0", Alg: crypto.SHA384, Digest: slices.Clone(q.RTMRs[0])},
		{Name: "rtmr1", Alg: crypto.SHA384, Digest: slices.Clone(q.RTMRs[1])},
		{Name: "rtmr2", Alg: crypto.SHA384, Digest: slices.Clone(q.RTMRs[2])},
		{Name: "rtmr3", Alg: crypto.SHA384, Digest: slices.Clone(q.RTMRs[3])},
		{Name: "mrseam", Alg: crypto.SHA384, Digest: slices.Clone(q.MRSEAM)},
		{Name: "mrconfigid", Digest: slices.Clone(q.MRCONFIGID)},
		{Name: "mrowner", Digest: slices.Clone(q.MROWNER)},
		{Name: "mrownerconfig", Digest: slices.Clone(q.MROWNERCONFIG)},
		{Name: "td_attributes", Digest: slices.Clone(q.TDAttributes)},
		{Name: "xfam", Digest: slices.Clone(q.XFAM)},
		{Name: "tee_tcb_svn", Digest: slices.Clone(q.TEETCBSVN)},
	}
	if fmspc, err := hex.DecodeString(ext.FMSPC); err == nil {
		ms = append(ms, postauth.Measurement{Name: "pck_fmspc", Digest: fmspc})
	}
	ms = append(ms,
		postauth.Measurement{Name: "tcb_status", Version: t.Status},
		postauth.Measurement{Name: "qe_tcb_status", Version: t.QEStatus},
		postauth.Measurement{Name: "tcb_date", Version: t.TCBDate},
		postauth.Measurement{Name: "tcb_evaluation_data_number", Version: strconv.Itoa(t.EvaluationDataNumber)},
	)
	if t.ModuleStatus != "" {
		ms = append(ms, postauth.Measurement{Name: "tdx_module_tcb_status", Version: t.ModuleStatus})
	}
	for _, a := range t.AdvisoryIDs {
		ms = append(ms, postauth.Measurement{Name: "tcb_advisory", Version: a})
	}
	return ms
}
