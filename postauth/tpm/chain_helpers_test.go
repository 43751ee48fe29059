//go:build cgo

package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/postauth/tpm/enroll"
	"github.com/reattest/reattest/postauth/tpm/tpmtest"
)

// trust is the test's TPM manufacturer (it certifies the simulator's EK)
// and enrollment CA (it certifies AKs), shared by the tests of this binary.
var trust struct {
	once  sync.Once
	mfr   *tpmtest.Manufacturer
	ca    *enroll.CA
	caKey crypto.Signer // to issue certificates the CA would not (misissuance tests)
	err   error
}

func trustSetup(tb testing.TB) (*tpmtest.Manufacturer, *enroll.CA) {
	tb.Helper()
	trust.once.Do(func() {
		if trust.mfr, trust.err = tpmtest.NewManufacturer("reattest test TPM"); trust.err != nil {
			return
		}
		cert, key, err := enroll.NewRoot("reattest test enrollment CA", 24*time.Hour)
		if err != nil {
			trust.err = err
			return
		}
		trust.caKey = key
		trust.ca, trust.err = enroll.New(cert, key, enroll.WithEKRoots(trust.mfr.Root()))
	})
	if trust.err != nil {
		tb.Fatal(trust.err)
	}
	return trust.mfr, trust.ca
}

// caRoot is the enrollment CA's root certificate.
func caRoot(tb testing.TB) *x509.Certificate {
	_, ca := trustSetup(tb)
	return ca.Certificate()
}

// provision makes sure the simulator's NV holds an EK certificate from the
// test manufacturer for its current EK (the EK changes with
// tpmtest.ChangeEPS) and returns the EK.
func provision(tb testing.TB) *tpm.EK {
	tb.Helper()
	mfr, _ := trustSetup(tb)
	ctx := context.Background()
	dev := simTPM(tb)
	if ek, err := tpm.ReadEK(ctx, dev); err == nil {
		if cert, err := x509.ParseCertificate(ek.Certificate); err == nil &&
			tpm.VerifyEKCertificate(cert, pool(mfr.Root()), nil, time.Now()) == nil {
			return ek
		}
	}
	ek, err := mfr.Provision(ctx, dev)
	if err != nil {
		tb.Fatal(err)
	}
	return ek
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// machineID is the simulator's current machine identifier.
func machineID(tb testing.TB) []byte {
	tb.Helper()
	id, err := provision(tb).MachineID()
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// newKey returns a TPM-resident authenticator key on the simulator,
// flushed when the test ends.
func newKey(tb testing.TB, opts ...tpm.KeyOption) *tpm.Key {
	tb.Helper()
	k, err := tpm.NewKey(context.Background(), simTPM(tb), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := k.Close(); err != nil {
			tb.Error(err)
		}
	})
	return k
}

// enrolledAttester returns an Attester on the simulator that certifies key
// (if not nil) and carries an AK certificate from the test enrollment CA.
func enrolledAttester(tb testing.TB, key *tpm.Key, opts ...tpm.AttesterOption) *tpm.Attester {
	tb.Helper()
	provision(tb)
	_, ca := trustSetup(tb)
	if key != nil {
		opts = append([]tpm.AttesterOption{tpm.WithCertifiedKey(key)}, opts...)
	}
	att := newAttester(tb, opts...)
	if err := att.Enroll(context.Background(), ca); err != nil {
		tb.Fatal(err)
	}
	if len(att.AKCertificate()) == 0 || !bytes.Equal(att.MachineID(), machineID(tb)) {
		tb.Fatal("enrollment did not set the AK certificate")
	}
	return att
}

// chainVerifier returns a Verifier that trusts the test enrollment CA.
func chainVerifier(tb testing.TB, opts ...tpm.VerifierOption) *tpm.Verifier {
	tb.Helper()
	v, err := tpm.NewVerifier(append([]tpm.VerifierOption{tpm.WithAKRoots(caRoot(tb))}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// changeMachine turns the simulator into another machine: a new
// endorsement seed (so a new EK, AK and machine identifier), with an EK
// certificate from the test manufacturer. Keys of the owner hierarchy
// (authenticator keys) stay loaded. Attesters must be closed before: their
// AKs are gone.
func changeMachine(tb testing.TB) []byte {
	tb.Helper()
	before := machineID(tb)
	if err := tpmtest.ChangeEPS(simTPM(tb)); err != nil {
		tb.Fatal(err)
	}
	after := machineID(tb)
	if bytes.Equal(before, after) {
		tb.Fatal("the machine identifier did not change")
	}
	return after
}

// attestOnce enrolls an Attester that certifies key, attests for ch and
// closes the Attester (so that the machine can change afterwards).
func attestOnce(tb testing.TB, key *tpm.Key, ch postauth.Challenge, opts ...tpm.AttesterOption) (postauth.Evidence, *tpm.Evidence) {
	tb.Helper()
	provision(tb)
	_, ca := trustSetup(tb)
	if key != nil {
		opts = append([]tpm.AttesterOption{tpm.WithCertifiedKey(key)}, opts...)
	}
	att, err := tpm.NewAttester(context.Background(), simTPM(tb), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	defer att.Close()
	if err := att.Enroll(context.Background(), ca); err != nil {
		tb.Fatal(err)
	}
	ev, err := att.Attest(context.Background(), ch)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := tpm.DecodeEvidence(ev.Value)
	if err != nil {
		tb.Fatal(err)
	}
	return ev, d
}
