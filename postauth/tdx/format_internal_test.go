package tdx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

type noCollateral struct{}

func (noCollateral) Collateral(context.Context, string, string) (*Collateral, error) {
	return nil, context.Canceled
}

// TestFormatOf: only a chain ending at Intel's SGX Root CA is
// hardware-backed and reported as Format; any other trusted root (here a
// root with Intel's name and another key, as package tdxtest makes) is
// FormatTestRoot and not hardware-backed. (End to end, Intel's recorded
// sample collateral does not match its sample quote's TCB, so no
// Intel-rooted quote reaches an Appraisal in the tests; see
// TestIntelSampleFullPipeline.)
func TestFormatOf(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: rootCN},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	fake, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(noCollateral{}, WithTrustedRoots(IntelRoot(), fake))
	if err != nil {
		t.Fatal(err)
	}
	if f, hw := v.formatOf(IntelRoot()); f != Format || !hw {
		t.Fatalf("Intel root: %q %v", f, hw)
	}
	if f, hw := v.formatOf(fake); f != FormatTestRoot || hw {
		t.Fatalf("test root: %q %v", f, hw)
	}
}
