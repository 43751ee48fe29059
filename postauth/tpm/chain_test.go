//go:build cgo

package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"net/http/httptest"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/postauth/tpm/enroll"
)

// TestTrustChain is the whole chain on the simulator: the EK certificate in
// NV (from the test manufacturer), the AK enrolled with the enrollment CA
// over HTTP (credential activation), the authenticator key created in the
// TPM and used as the TLS 1.3 client certificate key, and an attested
// exchange whose Evidence certifies that key. The verifier trusts the
// enrollment CA root and the manufacturer root, not AKs.
func TestTrustChain(t *testing.T) {
	mfr, ca := trustSetup(t)
	ek := provision(t)
	srv := httptest.NewServer(ca.Handler())
	defer srv.Close()
	client, err := enroll.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	att := newAttester(t, tpm.WithCertifiedKey(key), tpm.IncludeEKCertificate())
	if err := att.Enroll(context.Background(), client); err != nil {
		t.Fatal(err)
	}
	id, err := ek.MachineID()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(att.MachineID(), id) {
		t.Fatal("the AK certificate names another machine")
	}

	policy := map[int][][]byte{0: {make([]byte, 32)}}
	v := chainVerifier(t, tpm.WithEKRoots(mfr.Root()), tpm.WithMachineIDs(id), tpm.WithPCRPolicy(policy))
	e := newTLSEnvKey(t, v, key)
	res, err := e.exchange(att)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	kh := sha256.Sum256(spki)
	if !res.HardwareBacked() || !bytes.Equal(res.MachineID(), id) || !bytes.Equal(res.KeyHash(), kh[:]) {
		t.Fatalf("result: hardware %v machine %x key hash %x", res.HardwareBacked(), res.MachineID(), res.KeyHash())
	}
	// The TLS client certificate's key is the TPM key: the handshake's
	// CertificateVerify was signed by the TPM.
	if !bytes.Equal(e.clientID.SPKI(), spki) {
		t.Fatal("the client certificate is not the TPM key's")
	}
}

// TestSoftwareKeyRefused: Evidence without a certification of the
// authenticator key is refused by default (403 key_not_resident), even
// when everything else is valid; AllowSoftwareKey lifts it.
func TestSoftwareKeyRefused(t *testing.T) {
	att := enrolledAttester(t, nil)
	e := newTLSEnv(t, chainVerifier(t))
	_, err := e.exchange(att)
	postauthtest.WantError(t, err, postauth.CodePolicyDenied, postauth.ReasonKeyNotResident)

	e = newTLSEnv(t, chainVerifier(t, tpm.AllowSoftwareKey()))
	if _, err := e.exchange(att); err != nil {
		t.Fatalf("AllowSoftwareKey: %v", err)
	}
}

var _ = crypto.SHA256
