//go:build cgo

package tpm_test

// Integration tests against swtpm (a second, independent TPM 2.0
// implementation: libtpms), whose NV holds EK certificates that
// swtpm_setup --create-ek-cert wrote, signed by swtpm's local CA. .ci/run
// starts one and sets REATTEST_SWTPM; without it these tests skip.

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/postauth/tpm/enroll"
	"github.com/reattest/reattest/postauth/tpm/tpmtest"
)

// swtpm connects to the swtpm of REATTEST_SWTPM (skipping without one),
// flushes what earlier runs left loaded, and returns it behind a lock with
// the certificates of swtpm's local CA.
func swtpm(t *testing.T) (*tpm.SharedTPM, *x509.Certificate, *x509.Certificate) {
	t.Helper()
	addr := os.Getenv(tpmtest.EnvSWTPM)
	if addr == "" {
		t.Skip(tpmtest.SkipMessage)
	}
	dev, err := tpmtest.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := tpmtest.FlushTransient(dev); err != nil {
		t.Fatal(err)
	}
	root, issuer, err := tpmtest.SWTPMRoots()
	if err != nil {
		t.Fatalf("swtpm's local CA (which signed the EK certificates): %v", err)
	}
	return tpm.Share(dev), root, issuer
}

// swtpmCA is an enrollment CA that trusts swtpm's local CA (and the test
// manufacturer of the simulator).
func swtpmCA(t *testing.T, root, issuer *x509.Certificate) *enroll.CA {
	t.Helper()
	mfr, _ := trustSetup(t)
	ca, err := enroll.New(caRoot(t), trust.caKey, enroll.WithEKRoots(root, mfr.Root()), enroll.WithEKIntermediates(issuer))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestSWTPMTrustChain: on swtpm, the EK certificate swtpm_setup wrote
// verifies against swtpm's local CA; the AK enrolls with credential
// activation against the RSA EK (policy-authorized) and the ECC P-384 EK
// (password-authorized, SHA-384 name algorithm); the authenticator key
// (ECDSA P-256 and RSA) lives in swtpm, is the TLS 1.3 client key, and
// the exchange verifies against the enrollment CA and the EK roots.
func TestSWTPMTrustChain(t *testing.T) {
	dev, root, issuer := swtpm(t)
	ctx := context.Background()
	ca := swtpmCA(t, root, issuer)
	ek, err := tpm.ReadEK(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(ek.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if err := tpm.VerifyEKCertificate(cert, pool(root), pool(issuer), time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		alg   tpm.KeyAlgorithm
		index uint32
	}{
		{"ecc-key-rsa-ek", tpm.KeyECCP256, tpm.EKCertIndexRSA},
		{"rsa-key-rsa-ek", tpm.KeyRSA2048, tpm.EKCertIndexRSA},
		{"ecc-key-ecc-p384-ek", tpm.KeyECCP256, 0x01c00016},
	} {
		t.Run(c.name, func(t *testing.T) {
			key, err := tpm.NewKey(ctx, dev, tpm.WithKeyAlgorithm(c.alg))
			if err != nil {
				t.Fatal(err)
			}
			defer key.Close()
			att, err := tpm.NewAttester(ctx, dev, tpm.WithCertifiedKey(key), tpm.IncludeEKCertificate())
			if err != nil {
				t.Fatal(err)
			}
			defer att.Close()
			if err := att.Enroll(ctx, ca, tpm.WithEKCertIndex(c.index)); err != nil {
				t.Fatal(err)
			}
			ek, err := tpm.ReadEK(ctx, dev, tpm.WithEKCertIndex(c.index))
			if err != nil {
				t.Fatal(err)
			}
			id, _ := ek.MachineID()
			if !bytes.Equal(att.MachineID(), id) {
				t.Fatal("the AK certificate names another machine")
			}
			zero := make([]byte, 32)
			v := chainVerifier(t, tpm.WithEKRoots(root), tpm.WithEKIntermediates(issuer), tpm.WithMachineIDs(id),
				tpm.WithPCRPolicy(map[int][][]byte{0: {zero}, 7: {zero}}))
			res, err := newTLSEnvKey(t, v, key).exchange(att)
			if err != nil {
				t.Fatal(err)
			}
			if !res.HardwareBacked() || !bytes.Equal(res.MachineID(), id) {
				t.Fatal("result does not name swtpm")
			}
			// A software authenticator key with swtpm's Evidence: refused.
			_, err = newTLSEnv(t, v).exchange(att)
			postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonKeyHashMismatch)
		})
	}
}

// TestSWTPMTwoTPMs: two real, independent TPMs (the simulator and swtpm),
// both enrolled with the same CA. A quote from one with a certification
// from the other is refused; Evidence from swtpm for a connection whose
// key lives in the simulator is refused by the machine pin and by the key
// hash.
func TestSWTPMTwoTPMs(t *testing.T) {
	dev, root, issuer := swtpm(t)
	ctx := context.Background()
	ca := swtpmCA(t, root, issuer)
	simKey := newKey(t)
	simID := machineID(t)
	v := chainVerifier(t)
	e := newTLSEnvKey(t, v, simKey)
	req, err := e.reqr.NewRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := e.challengeFor(req)
	_, dSim := attestOnce(t, simKey, ch)

	swKey, err := tpm.NewKey(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	defer swKey.Close()
	swAtt, err := tpm.NewAttester(ctx, dev, tpm.WithCertifiedKey(swKey))
	if err != nil {
		t.Fatal(err)
	}
	defer swAtt.Close()
	if err := swAtt.Enroll(ctx, ca); err != nil {
		t.Fatal(err)
	}
	evSw, err := swAtt.Attest(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	dSw, _ := tpm.DecodeEvidence(evSw.Value)
	mix := func(quote, cert *tpm.Evidence) postauth.Evidence {
		d := *quote
		d.Certification = cert.Certification
		return encode(t, &d)
	}
	for name, ev := range map[string]postauth.Evidence{"quote-sim-cert-swtpm": mix(dSim, dSw), "quote-swtpm-cert-sim": mix(dSw, dSim)} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(ctx, ch, ev)
			postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonBadEvidenceSignature)
		})
	}
	// Diversion: swtpm's Evidence on the simulator key's connection.
	_, err = e.reqr.Verify(ctx, e.respond(fixedAttester{evSw}, req), nil)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonKeyHashMismatch)
	pinned := chainVerifier(t, tpm.WithMachineIDs(simID))
	if _, err := pinned.Verify(ctx, ch, evSw); postauth.ReasonOf(err) != postauth.ReasonUnknownMachine {
		t.Fatalf("pinned to the simulator: %v", err)
	}
}
