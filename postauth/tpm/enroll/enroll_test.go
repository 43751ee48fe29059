package enroll_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/postauth/tpm/enroll"
	"github.com/reattest/reattest/postauth/tpm/tpmtest"
)

// fixture is a manufacturer and a CA that trusts it.
type fixture struct {
	mfr   *tpmtest.Manufacturer
	ca    *enroll.CA
	clock *postauthtest.Clock
}

var fixtures struct {
	once sync.Once
	mfr  *tpmtest.Manufacturer
	err  error
}

func newFixture(t testing.TB, opts ...enroll.Option) *fixture {
	t.Helper()
	fixtures.once.Do(func() { fixtures.mfr, fixtures.err = tpmtest.NewManufacturer("enroll test TPM") })
	if fixtures.err != nil {
		t.Fatal(fixtures.err)
	}
	cert, key, err := enroll.NewRoot("enroll test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clock := postauthtest.NewClock(time.Now())
	ca, err := enroll.New(cert, key, append([]enroll.Option{enroll.WithEKRoots(fixtures.mfr.Root()), enroll.WithClock(clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{mfr: fixtures.mfr, ca: ca, clock: clock}
}

// softwareEK is an RSA key standing for a TPM's EK, its TCG-template public
// area and a certificate from mfr.
func softwareEK(t testing.TB, mfr *tpmtest.Manufacturer) (*rsa.PrivateKey, []byte, []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := tpm2.RSAEKTemplate
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.FillBytes(make([]byte, 256))})
	cert, err := mfr.Certify(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return k, tpm2.Marshal(tmpl), cert
}

// softwareAK is a TPMT_PUBLIC of the AK template for a software key.
func softwareAK(t testing.TB, edit func(*tpm2.TPMTPublic)) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := k.PublicKey.Bytes()
	pub := tpm.AKTemplate()
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: enc[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: enc[33:]},
	})
	if edit != nil {
		edit(&pub)
	}
	return tpm2.Marshal(pub)
}

func TestNewRejects(t *testing.T) {
	f := newFixture(t)
	cert, key, err := enroll.NewRoot("x", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := postauthtest.NewKey(t)
	leaf := postauthtest.New(t).Issue(t, "leaf")
	for name, c := range map[string]func() (*enroll.CA, error){
		"no-ek-roots": func() (*enroll.CA, error) { return enroll.New(cert, key) },
		"nil-cert":    func() (*enroll.CA, error) { return enroll.New(nil, key, enroll.WithEKRoots(f.mfr.Root())) },
		"other-key":   func() (*enroll.CA, error) { return enroll.New(cert, other, enroll.WithEKRoots(f.mfr.Root())) },
		"not-a-ca": func() (*enroll.CA, error) {
			return enroll.New(leaf.Leaf, leaf.PrivateKey.(*ecdsa.PrivateKey), enroll.WithEKRoots(f.mfr.Root()))
		},
		"short-machine": func() (*enroll.CA, error) {
			return enroll.New(cert, key, enroll.WithEKRoots(f.mfr.Root()), enroll.WithMachines([]byte{1}))
		},
	} {
		if _, err := c(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestChallengeRejects: requests the CA must not challenge, checked in
// software (no TPM needed to refuse them).
func TestChallengeRejects(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ekKey, ekArea, ekCert := softwareEK(t, f.mfr)
	ak := softwareAK(t, nil)
	good := tpm.EnrollmentRequest{EKCertificate: ekCert, EKPublic: ekArea, AKPublic: ak}
	if _, err := f.ca.Challenge(ctx, &good); err != nil {
		t.Fatal(err)
	}
	id, err := tpm.MachineID(ekKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	cheap, err := tpmtest.NewManufacturer("untrusted vendor")
	if err != nil {
		t.Fatal(err)
	}
	untrusted, err := cheap.Certify(ekKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	_, otherArea, _ := softwareEK(t, f.mfr)
	notRestricted := func() []byte {
		p, _ := tpm2.Unmarshal[tpm2.TPMTPublic](ekArea)
		p.ObjectAttributes.Restricted = false
		return tpm2.Marshal(*p)
	}()
	cases := []struct {
		name string
		edit func(r *tpm.EnrollmentRequest)
		want error
	}{
		{"untrusted-manufacturer", func(r *tpm.EnrollmentRequest) { r.EKCertificate = untrusted }, enroll.ErrUntrustedEK},
		{"ek-public-of-another-key", func(r *tpm.EnrollmentRequest) { r.EKPublic = otherArea }, enroll.ErrUntrustedEK},
		{"ek-not-restricted", func(r *tpm.EnrollmentRequest) { r.EKPublic = notRestricted }, enroll.ErrUntrustedEK},
		{"ak-not-restricted", func(r *tpm.EnrollmentRequest) {
			r.AKPublic = softwareAK(t, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false })
		}, enroll.ErrBadAK},
		{"ak-imported", func(r *tpm.EnrollmentRequest) {
			r.AKPublic = softwareAK(t, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SensitiveDataOrigin = false })
		}, enroll.ErrBadAK},
		{"ak-not-fixed-parent", func(r *tpm.EnrollmentRequest) {
			r.AKPublic = softwareAK(t, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedParent = false })
		}, enroll.ErrBadAK},
		{"ek-certificate-garbage", func(r *tpm.EnrollmentRequest) { r.EKCertificate = []byte{0x30, 0} }, enroll.ErrBadRequest},
		{"no-ak", func(r *tpm.EnrollmentRequest) { r.AKPublic = nil }, enroll.ErrBadRequest},
		{"huge-ek-certificate", func(r *tpm.EnrollmentRequest) { r.EKCertificate = make([]byte, tpm.MaxCertLen+1) }, enroll.ErrBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.edit(&r)
			if _, err := f.ca.Challenge(ctx, &r); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("machine-not-allowed", func(t *testing.T) {
		inv := newFixture(t, enroll.WithMachines(bytes.Repeat([]byte{1}, 32)))
		if _, err := inv.ca.Challenge(ctx, &good); !errors.Is(err, enroll.ErrMachineNotAllowed) {
			t.Fatalf("got %v", err)
		}
		inv = newFixture(t, enroll.WithMachines(id))
		if _, err := inv.ca.Challenge(ctx, &good); err != nil {
			t.Fatal(err)
		}
	})
}

// TestIssueRejectsGuesses: without the TPM, a proof can only guess the
// secret; the CA refuses it, and a malformed proof.
func TestIssueRejectsGuesses(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	_, ekArea, ekCert := softwareEK(t, f.mfr)
	req := tpm.EnrollmentRequest{EKCertificate: ekCert, EKPublic: ekArea, AKPublic: softwareAK(t, nil)}
	ch, err := f.ca.Challenge(ctx, &req)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*tpm.EnrollmentProof{
		"guess":       {Request: req, State: ch.State, Activated: make([]byte, 32)},
		"short-state": {Request: req, State: ch.State[:5], Activated: make([]byte, 32)},
		"no-secret":   {Request: req, State: ch.State},
		"nil":         nil,
	} {
		if _, err := f.ca.Issue(ctx, p); !errors.Is(err, enroll.ErrActivation) && !errors.Is(err, enroll.ErrBadRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestHandler: the HTTP binding refuses malformed bodies (400) and maps
// refusals to 403 with a short reason.
func TestHandler(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.ca.Handler())
	defer srv.Close()
	post := func(path, body string) (int, string) {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	_, ekArea, ekCert := softwareEK(t, f.mfr)
	good, _ := json.Marshal(tpm.EnrollmentRequest{EKCertificate: ekCert, EKPublic: ekArea, AKPublic: softwareAK(t, nil)})
	bad, _ := json.Marshal(tpm.EnrollmentRequest{EKCertificate: ekCert, EKPublic: ekArea, AKPublic: softwareAK(t, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false })})
	for _, c := range []struct {
		path, body string
		status     int
		reason     string
	}{
		{enroll.PathChallenge, string(good), 200, ""},
		{enroll.PathChallenge, string(bad), 403, "bad_ak"},
		{enroll.PathChallenge, `{"ek_certificate":"AA==","unknown":1}`, 400, "bad_request"},
		{enroll.PathChallenge, `{} {}`, 400, "bad_request"},
		{enroll.PathChallenge, `"` + strings.Repeat("A", 70<<10) + `"`, 400, "bad_request"},
		{enroll.PathIssue, `{"request":{},"state":"AA==","activated":"AA=="}`, 400, "bad_request"},
	} {
		if status, reason := post(c.path, c.body); status != c.status || reason != c.reason {
			t.Errorf("%s %.40s: %d %q, want %d %q", c.path, c.body, status, reason, c.status, c.reason)
		}
	}
	client, err := enroll.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	var req tpm.EnrollmentRequest
	json.Unmarshal(bad, &req)
	if _, err := client.Challenge(context.Background(), &req); err == nil || !strings.Contains(err.Error(), "403 bad_ak") {
		t.Fatalf("client: %v", err)
	}
	for _, u := range []string{"", "ftp://x", "http://"} {
		if _, err := enroll.NewClient(u, nil); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}

// FuzzChallenge: arbitrary requests never make the CA panic, and every
// refusal is one of its errors.
func FuzzChallenge(f *testing.F) {
	fx := newFixture(f)
	_, ekArea, ekCert := softwareEK(f, fx.mfr)
	ak := softwareAK(f, nil)
	f.Add(ekCert, ekArea, ak)
	f.Add([]byte{0x30, 0}, []byte{0, 1}, []byte{})
	f.Fuzz(func(t *testing.T, cert, ek, ak []byte) {
		_, err := fx.ca.Challenge(context.Background(), &tpm.EnrollmentRequest{EKCertificate: cert, EKPublic: ek, AKPublic: ak})
		if err == nil {
			if !bytes.Equal(cert, ekCert) {
				t.Fatal("challenged an EK certificate the manufacturer did not sign")
			}
			return
		}
		for _, known := range []error{enroll.ErrBadRequest, enroll.ErrUntrustedEK, enroll.ErrBadAK} {
			if errors.Is(err, known) {
				return
			}
		}
		t.Fatalf("unclassified error %v", err)
	})
}
