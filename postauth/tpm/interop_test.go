package tpm_test

import (
	"crypto/x509"
	"testing"

	"github.com/google/go-tpm-tools/server"
)

// TestInteropGoTPMTools: an AK certificate of this profile is an AK
// certificate for go-tpm-tools v0.4.10 too: server.VerifyAKCert accepts the
// golden chain's AK certificate with the enrollment CA root, and refuses
// it with another root. (The package does not link go-tpm-tools' server
// itself: it pulls in protobuf, go-sev-guest, go-tdx-guest and
// go-eventlog; see docs/tpm.md section 3.)
func TestInteropGoTPMTools(t *testing.T) {
	c := loadChainGolden(t)
	parse := func() *x509.Certificate {
		ak, err := x509.ParseCertificate(c.decode.AKChain[0])
		if err != nil {
			t.Fatal(err)
		}
		return ak
	}
	// VerifyAKCert checks at the current time: the golden chain is valid
	// for 20 years from its recording.
	if err := server.VerifyAKCert(parse(), []*x509.Certificate{c.caRoot}, nil); err != nil {
		t.Fatalf("go-tpm-tools refuses the AK certificate: %v", err)
	}
	if err := server.VerifyAKCert(parse(), []*x509.Certificate{c.ekRoot}, nil); err == nil {
		t.Fatal("go-tpm-tools accepts the AK certificate under another root")
	}
}
