// Package enroll is a small enrollment CA for TPM attestation keys: it
// issues AK certificates (docs/tpm.md, section 3) to TPMs that prove, by
// credential activation, that they hold both an endorsement key (EK)
// certified by a trusted TPM manufacturer and the attestation key (AK) to
// certify. A [tpm.Verifier] configured with the CA's root
// ([tpm.WithAKRoots]) then trusts quotes and key certifications signed by
// those AKs, and reports the machine the EK identifies.
//
// The protocol has two round trips and no server state:
//
//  1. Challenge: the Attester sends its EK certificate and the EK and AK
//     public areas ([tpm.EnrollmentRequest]). The CA verifies the EK
//     certificate against the manufacturer roots, that the EK public area
//     has the certificate's key and is a restricted decryption key, and
//     that the AK is a restricted fixedTPM signing key that the TPM
//     generated. It derives a secret from the request and a fresh state
//     (HMAC under a key only the CA knows), and encrypts it to the EK,
//     bound to the AK's TPM name (TPM2_MakeCredential done in software).
//  2. Issue: the TPM recovered the secret (TPM2_ActivateCredential), which
//     it can only do if it holds the EK's private key and has a loaded
//     object with the AK's name. The CA checks the secret (in constant
//     time), that the state has not expired, re-checks the request, and
//     issues the AK certificate.
//
// A [CA] implements [tpm.Enroller] in process; [CA.Handler] serves it over
// HTTP (JSON) and [NewClient] is the matching [tpm.Enroller].
package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/reattest/reattest/postauth/tpm"
)

// Errors of the CA. Every refusal wraps one of them.
var (
	// ErrBadRequest: the request or proof is malformed.
	ErrBadRequest = errors.New("enroll: malformed request")
	// ErrUntrustedEK: the EK certificate does not chain to a trusted
	// manufacturer root, or the EK public area is not the certificate's
	// key.
	ErrUntrustedEK = errors.New("enroll: untrusted endorsement key")
	// ErrBadAK: the AK public area is not an attestation key this profile
	// certifies.
	ErrBadAK = errors.New("enroll: unacceptable attestation key")
	// ErrActivation: the proof does not hold the challenge's secret, or
	// its state expired.
	ErrActivation = errors.New("enroll: credential activation failed")
	// ErrMachineNotAllowed: the EK is not one of the allowed machines.
	ErrMachineNotAllowed = errors.New("enroll: machine not allowed")
)

// CA is an enrollment CA. It is safe for concurrent use.
type CA struct {
	cert      *x509.Certificate
	signer    crypto.Signer
	ekRoots   *x509.CertPool
	ekInter   *x509.CertPool
	machines  [][]byte
	validity  time.Duration
	stateTTL  time.Duration
	now       func() time.Time
	rand      io.Reader
	macKey    []byte
	issueHook func(machineID []byte, cert *x509.Certificate)
}

var _ tpm.Enroller = (*CA)(nil)

// Option configures a [CA].
type Option interface{ apply(*config) }

type config struct {
	ekRoots, ekInter []*x509.Certificate
	machines         [][]byte
	validity         time.Duration
	stateTTL         time.Duration
	now              func() time.Time
	rand             io.Reader
	onIssue          func([]byte, *x509.Certificate)
}

type option func(*config)

func (f option) apply(c *config) { f(c) }

// WithEKRoots sets the TPM manufacturer roots EK certificates must chain
// to. Required: a CA without them refuses to start.
func WithEKRoots(roots ...*x509.Certificate) Option {
	r := slices.Clone(roots)
	return option(func(c *config) { c.ekRoots = append(c.ekRoots, r...) })
}

// WithEKIntermediates adds intermediate CA certificates for EK
// certificate chains (manufacturers often sign EK certificates with an
// intermediate that the TPM's NV does not hold).
func WithEKIntermediates(certs ...*x509.Certificate) Option {
	r := slices.Clone(certs)
	return option(func(c *config) { c.ekInter = append(c.ekInter, r...) })
}

// WithMachines restricts enrollment to these machines (SHA-256 of the EK
// SubjectPublicKeyInfo, [tpm.MachineID]): an inventory. By default every
// TPM with a valid EK certificate may enroll.
func WithMachines(ids ...[]byte) Option {
	p := make([][]byte, len(ids))
	for i, id := range ids {
		p[i] = slices.Clone(id)
	}
	return option(func(c *config) { c.machines = append(c.machines, p...) })
}

// WithValidity sets the AK certificates' validity. The default is 30 days.
func WithValidity(d time.Duration) Option {
	return option(func(c *config) {
		if d > 0 {
			c.validity = d
		}
	})
}

// WithStateTTL sets how long a challenge may be answered. The default is
// 5 minutes.
func WithStateTTL(d time.Duration) Option {
	return option(func(c *config) {
		if d > 0 {
			c.stateTTL = d
		}
	})
}

// WithClock sets the CA's clock. The default is time.Now.
func WithClock(now func() time.Time) Option {
	return option(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// WithRand sets the CA's randomness. The default is crypto/rand.
func WithRand(r io.Reader) Option {
	return option(func(c *config) {
		if r != nil {
			c.rand = r
		}
	})
}

// WithIssueHook calls f with the machine identifier and the certificate
// each time the CA issues one (for an audit log). By default nothing is
// called.
func WithIssueHook(f func(machineID []byte, cert *x509.Certificate)) Option {
	return option(func(c *config) { c.onIssue = f })
}

// New returns a CA that signs AK certificates with signer under cert (a CA
// certificate). Options: [WithEKRoots] (required), [WithEKIntermediates],
// [WithMachines], [WithValidity], [WithStateTTL], [WithClock], [WithRand],
// [WithIssueHook].
func New(cert *x509.Certificate, signer crypto.Signer, opts ...Option) (*CA, error) {
	cfg := config{validity: 30 * 24 * time.Hour, stateTTL: 5 * time.Minute, now: time.Now, rand: rand.Reader}
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cert == nil || signer == nil {
		return nil, errors.New("enroll: the CA needs a certificate and its key")
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("enroll: the CA certificate is not a CA certificate")
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("enroll: the CA certificate does not hold the signer's key")
	}
	if len(cfg.ekRoots) == 0 {
		return nil, errors.New("enroll: no EK manufacturer roots (enroll.WithEKRoots)")
	}
	ca := &CA{
		cert: cert, signer: signer, validity: cfg.validity, stateTTL: cfg.stateTTL,
		now: cfg.now, rand: cfg.rand, issueHook: cfg.onIssue,
		ekRoots: x509.NewCertPool(), ekInter: x509.NewCertPool(),
	}
	for _, c := range cfg.ekRoots {
		if c == nil {
			return nil, errors.New("enroll: nil EK root")
		}
		ca.ekRoots.AddCert(c)
	}
	for _, c := range cfg.ekInter {
		if c == nil {
			return nil, errors.New("enroll: nil EK intermediate")
		}
		ca.ekInter.AddCert(c)
	}
	for _, id := range cfg.machines {
		if len(id) != sha256.Size {
			return nil, fmt.Errorf("enroll: machine identifier of %d bytes", len(id))
		}
		ca.machines = append(ca.machines, id)
	}
	ca.macKey = make([]byte, 32)
	if _, err := io.ReadFull(ca.rand, ca.macKey); err != nil {
		return nil, err
	}
	return ca, nil
}

// Certificate is the CA's certificate: what verifiers trust
// ([tpm.WithAKRoots]).
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// NewRoot returns a self-signed ECDSA P-256 CA certificate and its key,
// valid for validity from now: an enrollment CA root for tests, demos and
// small deployments.
func NewRoot(commonName string, validity time.Duration) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// checked is a request that passed every check.
type checked struct {
	ekPub     *tpm2.TPMTPublic
	akName    []byte
	machineID []byte
}

// check verifies a request: the EK certificate chains to a manufacturer
// root, the EK public area holds the certificate's key, the AK is an AK
// the profile certifies, and the machine is allowed.
func (ca *CA) check(req *tpm.EnrollmentRequest) (*checked, error) {
	if err := req.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	ekCert, err := x509.ParseCertificate(req.EKCertificate)
	if err != nil {
		return nil, fmt.Errorf("%w: EK certificate: %w", ErrBadRequest, err)
	}
	if err := tpm.VerifyEKCertificate(ekCert, ca.ekRoots, ca.ekInter, ca.now()); err != nil { // mutation: enroll ek chain
		return nil, fmt.Errorf("%w: %w", ErrUntrustedEK, err)
	}
	ekKey, err := tpm.EKPublicKey(req.EKPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrustedEK, err)
	}
	if eq, ok := ekKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(ekCert.PublicKey) { // mutation: enroll ek public is the certificate's
		return nil, fmt.Errorf("%w: the EK public area is not the certificate's key", ErrUntrustedEK)
	}
	ekPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](req.EKPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrustedEK, err)
	}
	_, akName, err := tpm.ValidateAKPublic(req.AKPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAK, err)
	}
	id, err := tpm.MachineID(ekCert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrustedEK, err)
	}
	if ca.machines != nil && !slices.ContainsFunc(ca.machines, func(m []byte) bool { return bytes.Equal(m, id) }) {
		return nil, ErrMachineNotAllowed
	}
	return &checked{ekPub: ekPub, akName: akName, machineID: id}, nil
}

// State layout: version (1) || expiry, Unix seconds (8) || nonce (16).
const stateLen = 1 + 8 + 16

// secret is the credential the challenge encrypts: HMAC-SHA256 under the
// CA's key of the request and the state, so the CA keeps no state.
func (ca *CA) secret(req *tpm.EnrollmentRequest, state []byte) []byte {
	m := hmac.New(sha256.New, ca.macKey)
	m.Write([]byte("reattest enroll v1\x00"))
	for _, f := range [][]byte{req.EKCertificate, req.EKPublic, req.AKPublic, state} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		m.Write(n[:])
		m.Write(f)
	}
	return m.Sum(nil)
}

// Challenge implements [tpm.Enroller]: it checks the request and encrypts
// a fresh secret to the EK, bound to the AK's name.
func (ca *CA) Challenge(_ context.Context, req *tpm.EnrollmentRequest) (*tpm.EnrollmentChallenge, error) {
	c, err := ca.check(req)
	if err != nil {
		return nil, err
	}
	state := make([]byte, stateLen)
	state[0] = 1
	binary.BigEndian.PutUint64(state[1:9], uint64(ca.now().Add(ca.stateTTL).Unix()))
	if _, err := io.ReadFull(ca.rand, state[9:]); err != nil {
		return nil, err
	}
	enc, err := tpm2.ImportEncapsulationKey(c.ekPub)
	if err != nil {
		return nil, fmt.Errorf("%w: EK: %w", ErrUntrustedEK, err)
	}
	idObject, encSecret, err := tpm2.CreateCredential(ca.rand, enc, c.akName, ca.secret(req, state))
	if err != nil {
		return nil, fmt.Errorf("enroll: making the credential: %w", err)
	}
	return &tpm.EnrollmentChallenge{Credential: idObject, Secret: encSecret, State: state}, nil
}

// Issue implements [tpm.Enroller]: it checks that the proof holds the
// challenge's secret and that the challenge has not expired, checks the
// request again and returns the AK certificate chain (the AK certificate,
// then the CA certificate if it is not self-signed).
func (ca *CA) Issue(_ context.Context, proof *tpm.EnrollmentProof) ([][]byte, error) {
	if proof == nil || len(proof.State) != stateLen || proof.State[0] != 1 || len(proof.Activated) == 0 || len(proof.Activated) > 64 {
		return nil, fmt.Errorf("%w: malformed proof", ErrBadRequest)
	}
	c, err := ca.check(&proof.Request)
	if err != nil {
		return nil, err
	}
	want := ca.secret(&proof.Request, proof.State)
	if !hmac.Equal(want, proof.Activated) { // mutation: enroll activation
		return nil, fmt.Errorf("%w: wrong secret", ErrActivation)
	}
	now := ca.now()
	if !now.Before(time.Unix(int64(binary.BigEndian.Uint64(proof.State[1:9])), 0)) { // mutation: enroll state expiry
		return nil, fmt.Errorf("%w: the challenge expired", ErrActivation)
	}
	serial, err := rand.Int(ca.rand, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	tmpl, err := tpm.NewAKCertificateTemplate(proof.Request.AKPublic, c.machineID, serial.Add(serial, big.NewInt(1)), now.Add(-time.Minute), now.Add(ca.validity))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAK, err)
	}
	der, err := x509.CreateCertificate(ca.rand, tmpl, ca.cert, tmpl.PublicKey, ca.signer)
	if err != nil {
		return nil, fmt.Errorf("enroll: signing the AK certificate: %w", err)
	}
	if ca.issueHook != nil {
		if cert, err := x509.ParseCertificate(der); err == nil {
			ca.issueHook(slices.Clone(c.machineID), cert)
		}
	}
	chain := [][]byte{der}
	if !bytes.Equal(ca.cert.RawIssuer, ca.cert.RawSubject) {
		chain = append(chain, slices.Clone(ca.cert.Raw))
	}
	return chain, nil
}
