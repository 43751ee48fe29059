package tpm_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/tpm"
)

// FuzzParseAttest: the TPMS_ATTEST parsers (quote and certification, with
// go-tpm's tpm2.Unmarshal) never panic, and what they accept is canonical:
// it encodes back to the same bytes.
func FuzzParseAttest(f *testing.F) {
	c := loadChainGolden(f)
	f.Add(c.decode.Quote)
	f.Add(c.decode.Certification.Attest)
	for _, g := range loadGolden(f) {
		f.Add(g.decode.Quote)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, qerr := tpm.ParseAttest(b)
		cert, cerr := tpm.ParseCertification(b)
		if qerr == nil && cerr == nil {
			t.Fatal("a structure is both a quote and a certification")
		}
		if qerr != nil && cerr != nil {
			return
		}
		at, err := tpm2.Unmarshal[tpm2.TPMSAttest](b)
		if err != nil || !bytes.Equal(tpm2.Marshal(*at), b) {
			t.Fatalf("accepted a non-canonical TPMS_ATTEST: %v", err)
		}
		if q != nil && (len(q.PCRs) == 0 || len(q.PCRDigest) != 32) {
			t.Fatalf("quote %+v", q)
		}
		if cert != nil && len(cert.CertifiedName) == 0 && len(cert.CertifiedQualifiedName) == 0 && len(b) < 10 {
			t.Fatal("impossible certification")
		}
	})
}

// FuzzParseKeyPublic: the parser of the certified key's public area (the
// input of its TPM name and SPKI) never panics; what it accepts is
// canonical, a non-duplicable signing key, and has an SPKI.
func FuzzParseKeyPublic(f *testing.F) {
	c := loadChainGolden(f)
	f.Add(c.decode.Certification.Key)
	f.Add(c.decode.AK)
	for _, alg := range []tpm.KeyAlgorithm{tpm.KeyECCP256, tpm.KeyRSA2048} {
		tmpl, _ := tpm.KeyTemplate(alg)
		f.Add(tpm2.Marshal(tmpl))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, _, err := tpm.ParseKeyPublic(b)
		if err != nil {
			return
		}
		p, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
		if err != nil || !bytes.Equal(tpm2.Marshal(*p), b) {
			t.Fatal("accepted a non-canonical TPMT_PUBLIC")
		}
		a := p.ObjectAttributes
		if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.SignEncrypt || a.Decrypt {
			t.Fatalf("accepted attributes %+v", a)
		}
		if _, err := x509.MarshalPKIXPublicKey(pub); err != nil {
			t.Fatalf("accepted a key without an SPKI: %v", err)
		}
	})
}

// FuzzEKCertificate: EK certificate handling never panics: the NV data
// (a DER certificate and zero padding), the certificate's verification
// against the manufacturer root, the machine identifier; and an AK
// certificate's machine identifier (its subject serialNumber).
func FuzzEKCertificate(f *testing.F) {
	c := loadChainGolden(f)
	f.Add(c.decode.EKChain[0])
	f.Add(append(bytes.Clone(c.decode.EKChain[0]), 0, 0, 0))
	f.Add(c.decode.AKChain[0])
	roots := x509.NewCertPool()
	roots.AddCert(c.ekRoot)
	f.Fuzz(func(t *testing.T, b []byte) {
		der, err := tpm.DERElement(b)
		if err != nil {
			return
		}
		if len(der) > len(b) || !bytes.Equal(der, b[:len(der)]) {
			t.Fatal("the DER element is not the start of the NV data")
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		if tpm.VerifyEKCertificate(cert, roots, nil, c.now) == nil && !bytes.Equal(der, c.decode.EKChain[0]) {
			t.Fatal("verified an EK certificate the manufacturer did not sign")
		}
		if id, err := tpm.MachineID(cert.PublicKey); err == nil && len(id) != 32 {
			t.Fatal("machine identifier size")
		}
		if id, err := tpm.MachineIDOf(cert); err == nil && len(id) != 32 {
			t.Fatal("AK certificate machine identifier size")
		}
	})
}

// FuzzVerifyChain feeds arbitrary Evidence to the golden trust-chain
// verifier: no panic, and nothing verifies unless it carries the
// genuinely signed golden quote and certification.
func FuzzVerifyChain(f *testing.F) {
	c := loadChainGolden(f)
	f.Add(c.ev.Value)
	d := *c.decode
	d.Certification = nil
	f.Add(encode(f, &d).Value)
	v := c.verifier(f, tpm.AllowSoftwareKey())
	f.Fuzz(func(t *testing.T, b []byte) {
		app, err := v.Verify(context.Background(), c.ch, postauth.Evidence{Type: tpm.MediaType, Value: b})
		if err != nil {
			if code := postauth.CodeOf(err); code != postauth.CodeInvalid && code != postauth.CodePolicyDenied {
				t.Fatalf("uncoded error %v", err)
			}
			return
		}
		got, _ := tpm.DecodeEvidence(b)
		if !bytes.Equal(got.Quote, c.decode.Quote) || !bytes.Equal(app.Nonce, c.ch.Binder) {
			t.Fatal("verified a quote nobody signed")
		}
		if got.Certification != nil && (!bytes.Equal(got.Certification.Attest, c.decode.Certification.Attest) || !bytes.Equal(app.KeyHash, c.keyHash)) {
			t.Fatal("verified a certification nobody signed")
		}
	})
}
