//go:build cgo

package tpm_test

// Attacks on the TPM trust chain (issue "TPM 2.0 trust chain", item 8).
// Each test fails if the check that stops its attack is removed
// (tools/mutation-check.py names them).

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/postauth/tpm/enroll"
	"github.com/reattest/reattest/postauth/tpm/tpmtest"
)

// softwareKeyArea is a TPMT_PUBLIC that claims the attributes of a
// TPM-resident key for a software key: no TPM holds it.
func softwareKeyArea(t testing.TB, pub *ecdsa.PublicKey) []byte {
	t.Helper()
	tmpl, err := tpm.KeyTemplate(tpm.KeyECCP256)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: enc[1:33]},
		Y: tpm2.TPM2BECCParameter{Buffer: enc[33:]},
	})
	return tpm2.Marshal(tmpl)
}

// TestAttackSoftwareKeyWithOtherCertification: the authenticator key is a
// software key; the Evidence carries a genuine certification of another
// key, one that lives in the TPM. Presented as is, the verifier reports
// the TPM key's hash and the relying party refuses it (key_hash_mismatch);
// with the certified key's public area swapped for the software key's,
// the certified name does not match (key_certification_invalid).
func TestAttackSoftwareKeyWithOtherCertification(t *testing.T) {
	tpmKey := newKey(t)
	att := enrolledAttester(t, tpmKey)
	e := newTLSEnv(t, chainVerifier(t)) // the client's TLS and authenticator key is a software key
	_, err := e.exchange(att)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonKeyHashMismatch)

	swKey := e.clientID.Signer().Public().(*ecdsa.PublicKey)
	_, err = e.exchange(tamperedAttester{att, func(d *tpm.Evidence) {
		d.Certification.Key = softwareKeyArea(t, swKey)
	}})
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonKeyCertificationInvalid)

	// The same Evidence for the TPM key's own connection passes.
	if _, err := newTLSEnvKey(t, chainVerifier(t), tpmKey).exchange(att); err != nil {
		t.Fatal(err)
	}
}

// issueAK signs an AK certificate with the test enrollment CA's key,
// edited by edit: what a CA that misissues would produce.
func issueAK(t testing.TB, akArea, machine []byte, edit func(*x509.Certificate)) [][]byte {
	t.Helper()
	trustSetup(t)
	tmpl, err := tpm.NewAKCertificateTemplate(akArea, machine, big.NewInt(7), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caRoot(t), tmpl.PublicKey, trust.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{der}
}

// TestAttackUntrustedAK: certifications and quotes from an AK that does
// not chain to the trusted enrollment CA are refused (untrusted_attester):
// an AK enrolled with another CA (which verified the same EK), a software
// key dressed as an AK with a certificate of its own, and certificates
// the trusted CA issued for something else (another AK public area,
// another key, a certificate that is not an AK certificate).
func TestAttackUntrustedAK(t *testing.T) {
	ctx := context.Background()
	mfr, _ := trustSetup(t)
	provision(t)
	key := newKey(t)
	v := chainVerifier(t)
	e := newTLSEnvKey(t, v, key)

	// Another enrollment CA: it did credential activation with this very
	// TPM, but the verifier does not trust it.
	rogueCert, rogueKey, err := enroll.NewRoot("rogue enrollment CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := enroll.New(rogueCert, rogueKey, enroll.WithEKRoots(mfr.Root()))
	if err != nil {
		t.Fatal(err)
	}
	att := newAttester(t, tpm.WithCertifiedKey(key))
	if err := att.Enroll(ctx, rogue); err != nil {
		t.Fatal(err)
	}
	_, err = e.exchange(att)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUntrustedAttester)
	if err := att.Enroll(ctx, trust.ca); err != nil {
		t.Fatal(err)
	}
	if _, err := e.exchange(att); err != nil {
		t.Fatalf("enrolled with the trusted CA: %v", err)
	}

	// Certificates the trusted CA signed, for something else.
	ch := challenge(crypto.SHA256)
	ev, d := attestDecoded(t, att, ch)
	if _, err := v.Verify(ctx, ch, ev); err != nil {
		t.Fatal(err)
	}
	id := att.MachineID()
	other := postauthtest.NewKey(t)
	cases := map[string][][]byte{
		"rogue-chain":   {rogueCert.Raw},
		"another-name":  issueAK(t, d.AK, id, func(c *x509.Certificate) { c.SubjectKeyId = bytes.Repeat([]byte{1}, 34) }),
		"another-key":   issueAK(t, d.AK, id, func(c *x509.Certificate) { c.PublicKey = other.Public() }),
		"not-an-ak-eku": issueAK(t, d.AK, id, func(c *x509.Certificate) { c.UnknownExtKeyUsage = nil }),
		"ca-cert":       issueAK(t, d.AK, id, func(c *x509.Certificate) { c.IsCA, c.KeyUsage = true, x509.KeyUsageCertSign }),
		"expired":       issueAK(t, d.AK, id, func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Minute) }),
		"no-machine":    issueAK(t, d.AK, id, func(c *x509.Certificate) { c.Subject.SerialNumber = "" }),
		"self-signed":   {selfSignedAK(t, d.AK)},
	}
	for name, chain := range cases {
		t.Run(name, func(t *testing.T) {
			dd, _ := tpm.DecodeEvidence(ev.Value)
			dd.AKChain = chain
			_, err := v.Verify(ctx, ch, encode(t, dd))
			postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUntrustedAttester)
		})
	}

	// A software "AK" with a certificate of its own making: a forged quote
	// over the right binder is refused before its signature is looked at.
	sw := postauthtest.NewKey(t)
	forged := forgeQuote(t, sw, ch.Binder, d.PCRs)
	fd, _ := tpm.DecodeEvidence(forged.Value)
	fd.AKChain = [][]byte{selfSignedAK(t, fd.AK)}
	fd.Certification = d.Certification
	_, err = v.Verify(ctx, ch, encode(t, fd))
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUntrustedAttester)
}

// selfSignedAK is an AK certificate for akArea signed by its own throwaway
// CA.
func selfSignedAK(t testing.TB, akArea []byte) []byte {
	t.Helper()
	cert, key, err := enroll.NewRoot("self", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := tpm.NewAKCertificateTemplate(akArea, bytes.Repeat([]byte{9}, 32), big.NewInt(1), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, cert, tmpl.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestAttackStaleCertification: a certification made for an earlier
// request (another binder), spliced into Evidence that is fresh otherwise,
// is refused (binder_mismatch).
func TestAttackStaleCertification(t *testing.T) {
	key := newKey(t)
	att := enrolledAttester(t, key)
	e := newTLSEnvKey(t, chainVerifier(t), key)
	old, err := e.reqr.NewRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, oldEv := attestDecoded(t, att, e.challengeFor(old))
	res, err := e.exchange(tamperedAttester{att, func(d *tpm.Evidence) { d.Certification = oldEv.Certification }})
	if res != nil {
		t.Fatal("a stale certification passed")
	}
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBinderMismatch)
	// The same path with the fresh certification passes.
	if _, err := e.exchange(tamperedAttester{att, func(*tpm.Evidence) {}}); err != nil {
		t.Fatal(err)
	}
}

// rsaEKArea is the public area of an EK of the TCG RSA template holding
// key (a software key standing for another TPM's EK).
func rsaEKArea(key *rsa.PublicKey) []byte {
	tmpl := tpm2.RSAEKTemplate
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: key.N.FillBytes(make([]byte, 256))})
	return tpm2.Marshal(tmpl)
}

// TestAttackAKCertificateForAnotherEK: the Evidence pairs an AK
// certificate with the EK certificate of another TPM (a genuine
// manufacturer certificate), or with an EK certificate that no trusted
// manufacturer signed: a verifier that checks the EK refuses both
// (ek_invalid). And at enrollment, a TPM that asks for an AK certificate
// in the name of another TPM's EK cannot activate the credential, so the
// CA issues nothing.
func TestAttackAKCertificateForAnotherEK(t *testing.T) {
	ctx := context.Background()
	mfr, ca := trustSetup(t)
	key := newKey(t)
	att := enrolledAttester(t, key, tpm.IncludeEKCertificate())
	v := chainVerifier(t, tpm.WithEKRoots(mfr.Root()))
	ch := challenge(crypto.SHA256)
	ev, d := attestDecoded(t, att, ch)
	if len(d.EKChain) != 1 {
		t.Fatal("no EK certificate in the evidence")
	}
	if _, err := v.Verify(ctx, ch, ev); err != nil {
		t.Fatal(err)
	}
	otherEK, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherCert, err := mfr.Certify(otherEK.Public())
	if err != nil {
		t.Fatal(err)
	}
	cheap, err := tpmtest.NewManufacturer("untrusted TPM vendor")
	if err != nil {
		t.Fatal(err)
	}
	ekPub, _ := x509.ParseCertificate(d.EKChain[0])
	sameKeyUntrusted, err := cheap.Certify(ekPub.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, chain := range map[string][][]byte{
		"another-ek":          {otherCert},
		"untrusted-vendor":    {sameKeyUntrusted},
		"no-ek-certificate":   nil,
		"not-a-certificate":   {{0x30, 0x00}},
		"another-ek-and-root": {otherCert, mfr.Root().Raw},
	} {
		t.Run(name, func(t *testing.T) {
			dd, _ := tpm.DecodeEvidence(ev.Value)
			dd.EKChain = chain
			_, err := v.Verify(ctx, ch, encode(t, dd))
			postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonEKInvalid)
		})
	}

	// Enrollment: this TPM claims the other TPM's EK (its certificate is
	// public). The CA encrypts the credential to that EK; this TPM cannot
	// recover it, and a guessed secret is refused.
	var stolen *tpm.EnrollmentRequest
	var challenge *tpm.EnrollmentChallenge
	thief := enrollerFunc{
		challenge: func(ctx context.Context, req *tpm.EnrollmentRequest) (*tpm.EnrollmentChallenge, error) {
			r := *req
			r.EKCertificate, r.EKPublic = otherCert, rsaEKArea(&otherEK.PublicKey)
			stolen = &r
			c, err := ca.Challenge(ctx, &r)
			if err != nil {
				t.Errorf("the CA refused the request: %v", err)
			}
			challenge = c
			return c, err
		},
		issue: ca.Issue,
	}
	att.Close() // the simulator has three object slots: key, AK, EK
	att2 := newAttester(t, tpm.WithCertifiedKey(key))
	if err := att2.Enroll(ctx, thief); err == nil {
		t.Fatal("a TPM activated a credential made for another EK")
	}
	if stolen == nil || challenge == nil {
		t.Fatal("the CA did not challenge the request")
	}
	_, err = ca.Issue(ctx, &tpm.EnrollmentProof{Request: *stolen, State: challenge.State, Activated: bytes.Repeat([]byte{1}, 32)})
	if !errors.Is(err, enroll.ErrActivation) {
		t.Fatalf("guessed secret: %v", err)
	}
	if att2.AKCertificate() != nil {
		t.Fatal("an AK certificate was issued")
	}
}

type enrollerFunc struct {
	challenge func(context.Context, *tpm.EnrollmentRequest) (*tpm.EnrollmentChallenge, error)
	issue     func(context.Context, *tpm.EnrollmentProof) ([][]byte, error)
}

func (f enrollerFunc) Challenge(ctx context.Context, r *tpm.EnrollmentRequest) (*tpm.EnrollmentChallenge, error) {
	return f.challenge(ctx, r)
}

func (f enrollerFunc) Issue(ctx context.Context, p *tpm.EnrollmentProof) ([][]byte, error) {
	return f.issue(ctx, p)
}

// TestAttackPCRsOutsidePolicy: the boot-state policy requires reference
// values; a platform whose PCR moved is denied (403 pcr_policy_denied,
// naming the PCR), although every signature is genuine.
func TestAttackPCRsOutsidePolicy(t *testing.T) {
	ctx := context.Background()
	reg, err := tpm.NewPCRRegister(ctx, simTPM(t), tpm.WithPCR(16)) // resets PCR 16
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	att := enrolledAttester(t, key, tpm.WithPCRs(0, 1, 2, 3, 4, 5, 6, 7, 16))
	zero := make([]byte, 32)
	policy := map[int][][]byte{0: {zero}, 7: {zero}, 16: {zero}}
	e := newTLSEnvKey(t, chainVerifier(t, tpm.WithPCRPolicy(policy)), key)
	res, err := e.exchange(att)
	if err != nil {
		t.Fatal(err)
	}
	if !res.HardwareBacked() {
		t.Fatal("a quote that meets the boot policy is not hardware-backed")
	}
	if err := reg.Extend(ctx, bytes.Repeat([]byte{0xbb}, 32)); err != nil { // an unexpected boot component
		t.Fatal(err)
	}
	_, err = e.exchange(att)
	postauthtest.WantError(t, err, postauth.CodePolicyDenied, postauth.ReasonPCRPolicyDenied)
	var pe *postauth.Error
	if !errors.As(err, &pe) || !slices.Equal(pe.Violations, []string{"pcr:16 value not allowed"}) {
		t.Fatalf("violations %v", pe)
	}
}

// TestHardwareBackedNeedsBootPolicy: without a boot-state policy the
// Result does not claim hardware backing, however valid the Evidence.
func TestHardwareBackedNeedsBootPolicy(t *testing.T) {
	key := newKey(t)
	att := enrolledAttester(t, key)
	res, err := newTLSEnvKey(t, chainVerifier(t), key).exchange(att)
	if err != nil {
		t.Fatal(err)
	}
	if res.HardwareBacked() {
		t.Fatal("hardware-backed without a boot-state policy")
	}
	res, err = newTLSEnvKey(t, chainVerifier(t, tpm.WithPCRPolicy(map[int][][]byte{0: {make([]byte, 32)}})), key).exchange(att)
	if err != nil || !res.HardwareBacked() {
		t.Fatalf("with a boot-state policy: %v", err)
	}
}

// TestAttackQuoteAndCertificationFromTwoTPMs: a quote from one TPM and a
// certification from another, both genuine, both for the same binder and
// the same key, with either TPM's AK certificate, are refused: one AK
// must sign both (bad_evidence_signature). The simulator becomes the
// second TPM with a new endorsement seed.
func TestAttackQuoteAndCertificationFromTwoTPMs(t *testing.T) {
	ctx := context.Background()
	key := newKey(t) // the owner hierarchy survives the change of machine
	v := chainVerifier(t)
	e := newTLSEnvKey(t, v, key)
	req, err := e.reqr.NewRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := e.challengeFor(req)
	evA, dA := attestOnce(t, key, ch)
	changeMachine(t)
	evB, dB := attestOnce(t, key, ch)
	for name, ev := range map[string]postauth.Evidence{"A": evA, "B": evB} {
		if _, err := v.Verify(ctx, ch, ev); err != nil {
			t.Fatalf("machine %s alone: %v", name, err)
		}
	}
	mix := func(quote, cert *tpm.Evidence) postauth.Evidence {
		d := *quote
		d.Certification = cert.Certification
		return encode(t, &d)
	}
	for name, ev := range map[string]postauth.Evidence{"quote-A-cert-B": mix(dA, dB), "quote-B-cert-A": mix(dB, dA)} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(ctx, ch, ev)
			postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature)
		})
	}
	// End to end on the connection the binder belongs to.
	_, err = e.reqr.Verify(ctx, e.respond(fixedAttester{mix(dA, dB)}, req), nil)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature)
}

// TestDiversion: the relying party pins machine A. Evidence from machine
// B, a TPM enrolled with the same CA, presented on a connection whose
// authenticator key lives on machine A, is refused: by the machine pin
// (unknown_machine), and without the pin because B's Evidence certifies
// B's key, not A's (key_hash_mismatch). Even a certification of A's key
// by B (possible here only because the simulator's two "machines" share
// an owner hierarchy) is stopped by the pin.
func TestDiversion(t *testing.T) {
	keyA := newKey(t)
	idA := machineID(t)
	pinned := chainVerifier(t, tpm.WithMachineIDs(idA))
	attA, err := tpm.NewAttester(context.Background(), simTPM(t), tpm.WithCertifiedKey(keyA))
	if err != nil {
		t.Fatal(err)
	}
	_, ca := trustSetup(t)
	provision(t)
	if err := attA.Enroll(context.Background(), ca); err != nil {
		t.Fatal(err)
	}
	if _, err := newTLSEnvKey(t, pinned, keyA).exchange(attA); err != nil {
		t.Fatalf("machine A: %v", err)
	}
	attA.Close()

	idB := changeMachine(t)
	// The simulator has three object slots: enroll B's AK (AK, EK, keyA),
	// then certify B's key with the same AK (AK, keyA, keyB).
	enrolling := newAttester(t)
	if err := enrolling.Enroll(context.Background(), ca); err != nil {
		t.Fatal(err)
	}
	chainB := enrolling.AKCertificate()
	enrolling.Close()
	keyB := newKey(t)
	attB := newAttester(t, tpm.WithCertifiedKey(keyB))
	if err := attB.SetAKCertificate(chainB); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(attB.MachineID(), idB) {
		t.Fatal("B's AK certificate names another machine")
	}
	_, err = newTLSEnvKey(t, pinned, keyA).exchange(attB)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUnknownMachine)
	_, err = newTLSEnvKey(t, chainVerifier(t), keyA).exchange(attB)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonKeyHashMismatch)

	if _, err := newTLSEnvKey(t, chainVerifier(t, tpm.WithMachineIDs(idB)), keyB).exchange(attB); err != nil {
		t.Fatalf("machine B on its own connection: %v", err)
	}
	attB.Close()
	attBForA := newAttester(t, tpm.WithCertifiedKey(keyA))
	if err := attBForA.SetAKCertificate(chainB); err != nil {
		t.Fatal(err)
	}
	_, err = newTLSEnvKey(t, pinned, keyA).exchange(attBForA)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUnknownMachine)
}

// TestCertifiedKeyAttributes: the TPM genuinely certifies a key that may
// leave it (created without fixedTPM and fixedParent: duplicable); the
// verifier refuses it (key_certification_invalid), though the signature,
// binder and name all check out.
func TestCertifiedKeyAttributes(t *testing.T) {
	ctx := context.Background()
	dev := simTPM(t)
	att := enrolledAttester(t, nil)
	tmpl, err := tpm.KeyTemplate(tpm.KeyECCP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.ObjectAttributes.FixedTPM, tmpl.ObjectAttributes.FixedParent = false, false
	srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(dev)
	if err != nil {
		t.Fatal(err)
	}
	parent := tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name}
	created, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(tmpl)}.Execute(dev)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := tpm2.Load{ParentHandle: parent, InPublic: created.OutPublic, InPrivate: created.OutPrivate}.Execute(dev)
	tpm2.FlushContext{FlushHandle: srk.ObjectHandle}.Execute(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: loaded.ObjectHandle}.Execute(dev)

	ch := challenge(crypto.SHA256)
	_, d := attestDecoded(t, att, ch)
	h := akHandle(t, att)
	rsp, err := tpm2.Certify{
		ObjectHandle:   tpm2.AuthHandle{Handle: loaded.ObjectHandle, Name: loaded.Name, Auth: tpm2.PasswordAuth(nil)},
		SignHandle:     tpm2.AuthHandle{Handle: h, Name: tpm2.TPM2BName{Buffer: att.AKName()}, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: ch.Binder},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
	}.Execute(dev)
	if err != nil {
		t.Fatal(err)
	}
	d.Certification = &tpm.Certification{Attest: rsp.CertifyInfo.Bytes(), Signature: tpm2.Marshal(rsp.Signature), Key: created.OutPublic.Bytes()}
	_, err = chainVerifier(t).Verify(ctx, ch, encode(t, d))
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonKeyCertificationInvalid)
}
