//go:build cgo

package tpm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

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

// bootEvents are the events the tests extended into PCR 9 of the shared
// simulator, in order (a second run of the test extends again).
var bootEvents []logEvent

// TestEventLog: a boot event log that replays to the quoted PCRs is
// accepted and its events reported; a log whose events do not produce the
// quoted values is refused (event_log_invalid), and so is Evidence without
// a log when the verifier requires one.
func TestEventLog(t *testing.T) {
	ctx := context.Background()
	dev := simTPM(t)
	for _, data := range []string{"bootloader", "kernel"} {
		e := logEvent{pcr: 9, typ: 0x0d, data: []byte(data)} // EV_IPL
		if _, err := (tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: 9, Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: e.digest()}}},
		}).Execute(dev); err != nil {
			t.Fatal(err)
		}
		bootEvents = append(bootEvents, e)
	}
	// PCR 12 is not quoted: its event cannot be checked and is dropped.
	log := buildLog(append([]logEvent{startupLocality(0), {pcr: 12, typ: 0x0d, data: []byte("unquoted")}}, bootEvents...)...)
	pcrs := []int{0, 1, 2, 3, 4, 5, 6, 7, 9}
	key := newKey(t)
	att := enrolledAttester(t, key, tpm.WithPCRs(pcrs...), tpm.WithEventLog(log))
	v := chainVerifier(t, tpm.RequireEventLog())
	e := newTLSEnvKey(t, v, key)
	res, err := e.exchange(att)
	if err != nil {
		t.Fatal(err)
	}
	var events int
	for _, m := range res.Measurements() {
		if strings.HasPrefix(m.Name, "pcr/9/event/") {
			events++
		}
		if strings.HasPrefix(m.Name, "pcr/12/") {
			t.Fatal("an unquoted PCR's event was reported")
		}
	}
	if events != len(bootEvents) {
		t.Fatalf("%d events reported, want %d", events, len(bootEvents))
	}

	forged := buildLog(append([]logEvent{startupLocality(0)}, append(bootEvents[:len(bootEvents)-1:len(bootEvents)-1], logEvent{pcr: 9, typ: 0x0d, data: []byte("another kernel")})...)...)
	for name, log := range map[string][]byte{"forged-event": forged, "garbage": {1, 2, 3}} {
		t.Run(name, func(t *testing.T) {
			_, err := e.exchange(tamperedAttester{att, func(d *tpm.Evidence) { d.EventLog = log }})
			postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonEventLogInvalid)
		})
	}
	t.Run("missing", func(t *testing.T) {
		_, err := e.exchange(tamperedAttester{att, func(d *tpm.Evidence) { d.EventLog = nil }})
		postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonEventLogInvalid)
	})
	if _, err := tpm.NewAttester(ctx, dev, tpm.WithEventLog([]byte{1, 2, 3})); err == nil {
		t.Fatal("an attester took a log that does not parse")
	}
}
