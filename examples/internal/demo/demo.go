// Package demo holds what the use-case examples share: demo credentials
// generated at run time (a throwaway CA, TLS certificates, software
// attestation keys) and a transcript that records whether each step went
// as expected. Nothing here is for production: the keys live in memory and
// the Evidence is software EAT, not hardware-backed.
package demo

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

// PKI is a throwaway certificate authority.
type PKI struct {
	root *x509.Certificate
	key  crypto.Signer
	Pool *x509.CertPool
}

// NewPKI makes a CA with a fresh ECDSA P-256 key.
func NewPKI(name string) (*PKI, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &PKI{root: root, key: key, Pool: pool}, nil
}

// Server issues a server certificate for name (and 127.0.0.1).
func (p *PKI) Server(name string) (tls.Certificate, error) { return p.issue(name, true) }

// Client issues a client certificate for name.
func (p *PKI) Client(name string) (tls.Certificate, error) { return p.issue(name, false) }

func (p *PKI) issue(name string, server bool) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{name}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.root, key.Public(), p.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerTLS is a TLS 1.3 server configuration for cert that requires and
// verifies a client certificate from this CA (so that "same peer" key
// trust knows the client), without session tickets.
func (p *PKI) ServerTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cert},
		ClientCAs:              p.Pool,
		ClientAuth:             tls.RequireAndVerifyClientCert,
		SessionTicketsDisabled: true,
	}
}

// ClientTLS is a TLS 1.3 client configuration trusting this CA, with
// cert as its client certificate (if not nil).
func (p *PKI) ClientTLS(cert *tls.Certificate, serverName string) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: p.Pool, ServerName: serverName}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// Platform is one attesting endpoint: its TLS certificate, its software
// attestation key, and its measured posture.
type Platform struct {
	Name    string
	Cert    tls.Certificate
	AttKey  *ecdsa.PrivateKey
	Tracker *posture.Tracker
}

// NewPlatform makes a platform with a certificate from p (a server
// certificate if server), a fresh attestation key and an empty posture.
func NewPlatform(p *PKI, name string, server bool) (*Platform, error) {
	cert, err := p.issue(name, server)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tr, err := posture.NewTracker()
	if err != nil {
		return nil, err
	}
	return &Platform{Name: name, Cert: cert, AttKey: key, Tracker: tr}, nil
}

// Identity is the platform's authenticator identity: its TLS key, so that
// relying parties use "same peer" key trust.
func (pl *Platform) Identity() (*postauth.Identity, error) {
	return postauth.IdentityFromTLS(&pl.Cert)
}

// Attester is a software EAT attester covering the platform's posture.
func (pl *Platform) Attester() (*softeat.Attester, error) {
	return softeat.NewAttester(pl.AttKey, softeat.WithPosture(pl.Tracker))
}

// RelyingParty is a relying party that trusts exactly the attestation keys
// of the given platforms (software EAT).
func RelyingParty(trusted ...*Platform) (*postauth.RelyingParty, error) {
	keys := make([]crypto.PublicKey, len(trusted))
	for i, pl := range trusted {
		keys[i] = pl.AttKey.Public()
	}
	v, err := softeat.NewVerifier(keys)
	if err != nil {
		return nil, err
	}
	return postauth.NewRelyingParty(v)
}

// Transcript prints the steps of a demo and remembers whether each went as
// expected. Safe for concurrent use.
type Transcript struct {
	mu  sync.Mutex // guards out, bad
	out io.Writer
	bad []string
}

// NewTranscript writes to out.
func NewTranscript(out io.Writer) *Transcript { return &Transcript{out: out} }

// Printf prints a line.
func (t *Transcript) Printf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.out, format+"\n", args...)
}

// Check prints the line and records an unexpected step if !ok.
func (t *Transcript) Check(ok bool, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok {
		line = "UNEXPECTED: " + line
		t.bad = append(t.bad, line)
	}
	fmt.Fprintln(t.out, line)
}

// Err returns nil and prints "all steps went as expected" if every check
// passed, and an error naming the failed steps otherwise.
func (t *Transcript) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.bad) > 0 {
		return errors.New("unexpected steps:\n  " + strings.Join(t.bad, "\n  "))
	}
	fmt.Fprintln(t.out, "all steps went as expected")
	return nil
}
