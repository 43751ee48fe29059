//go:build cgo

package enroll_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/postauth/tpm/enroll"
)

// The simulator is a process-wide singleton: every test shares one.
var sim struct {
	once sync.Once
	raw  transport.TPMCloser
	dev  *tpm.SharedTPM
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sim.raw != nil {
		sim.raw.Close()
	}
	os.Exit(code)
}

func simTPM(t testing.TB) *tpm.SharedTPM {
	t.Helper()
	sim.once.Do(func() {
		if sim.raw, sim.err = simulator.OpenSimulator(); sim.err == nil {
			sim.dev = tpm.Share(sim.raw)
		}
	})
	if sim.err != nil {
		t.Fatal(sim.err)
	}
	return sim.dev
}

// attester provisions the simulator's EK certificate from f's manufacturer
// and returns an Attester on it.
func (f *fixture) attester(t testing.TB) *tpm.Attester {
	t.Helper()
	ctx := context.Background()
	if _, err := f.mfr.Provision(ctx, simTPM(t)); err != nil {
		t.Fatal(err)
	}
	att, err := tpm.NewAttester(ctx, simTPM(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { att.Close() })
	return att
}

// TestEnrollHTTP: an Attester enrolls over HTTP; the AK certificate
// chains to the CA, names the EK's machine identifier and the AK's TPM
// name, and has the AK extended key usage.
func TestEnrollHTTP(t *testing.T) {
	var issued []byte
	f := newFixture(t, enroll.WithIssueHook(func(id []byte, _ *x509.Certificate) { issued = id }))
	att := f.attester(t)
	srv := httptest.NewServer(f.ca.Handler())
	defer srv.Close()
	client, err := enroll.NewClient(srv.URL+"/", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if err := att.Enroll(context.Background(), client); err != nil {
		t.Fatal(err)
	}
	chain := att.AKCertificate()
	cert, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Certificate())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	ek, err := tpm.ReadEK(context.Background(), simTPM(t))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := ek.MachineID()
	if cert.Subject.SerialNumber != hex.EncodeToString(id) || !bytes.Equal(issued, id) || !bytes.Equal(att.MachineID(), id) {
		t.Fatal("the certificate names another machine")
	}
	if !bytes.Equal(cert.SubjectKeyId, att.AKName()) || !slices.ContainsFunc(cert.UnknownExtKeyUsage, tpm.OIDAKCertificate.Equal) || cert.IsCA {
		t.Fatalf("AK certificate profile: %+v", cert)
	}
}

// capture is an Enroller that runs ca, records the proof and lets a test
// act between challenge and issue.
type capture struct {
	ca     *enroll.CA
	before func()
	proof  *tpm.EnrollmentProof
}

func (c *capture) Challenge(ctx context.Context, r *tpm.EnrollmentRequest) (*tpm.EnrollmentChallenge, error) {
	return c.ca.Challenge(ctx, r)
}

func (c *capture) Issue(ctx context.Context, p *tpm.EnrollmentProof) ([][]byte, error) {
	c.proof = p
	if c.before != nil {
		c.before()
	}
	return c.ca.Issue(ctx, p)
}

// TestIssueChecks: a genuine proof is refused once the challenge expired;
// a proof whose request or state was edited does not hold the secret.
func TestIssueChecks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, enroll.WithStateTTL(time.Minute))
	att := f.attester(t)
	c := &capture{ca: f.ca, before: func() { f.clock.Advance(2 * time.Minute) }}
	if err := att.Enroll(ctx, c); !errors.Is(err, enroll.ErrActivation) {
		t.Fatalf("expired challenge: %v", err)
	}
	c.before = nil
	if err := att.Enroll(ctx, c); err != nil {
		t.Fatal(err)
	}
	good := *c.proof
	if _, err := f.ca.Issue(ctx, &good); err != nil {
		t.Fatal(err)
	}
	edited := func(f func(p *tpm.EnrollmentProof)) *tpm.EnrollmentProof {
		p := good
		p.State = slices.Clone(good.State)
		f(&p)
		return &p
	}
	for name, p := range map[string]*tpm.EnrollmentProof{
		"later-expiry": edited(func(p *tpm.EnrollmentProof) { p.State[8]++ }),
		"other-ak":     edited(func(p *tpm.EnrollmentProof) { p.Request.AKPublic = softwareAK(t, nil) }),
	} {
		if _, err := f.ca.Issue(ctx, p); !errors.Is(err, enroll.ErrActivation) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
