// Package postauthtest helps test code that uses reattest, with real parts:
// a throwaway CA and leaf certificates, real TLS 1.3 connections on
// loopback, and a software attester with the verifier that trusts it.
// Nothing here is a mock. It is for tests and examples only: the keys are
// generated on the spot and the CA trusts anything it issued.
package postauthtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"
)

// TB is the part of testing.TB the helpers use; [Must] implements it for
// examples, where there is no *testing.T.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Must is a TB for Example functions: failures panic and cleanups are
// skipped (the example process ends anyway).
var Must TB = must{}

type must struct{}

func (must) Helper()                           {}
func (must) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (must) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (must) Cleanup(func())                    {}

// PKI is a throwaway certificate authority.
type PKI struct {
	Root *x509.Certificate
	Key  crypto.Signer
	Pool *x509.CertPool
}

// New returns a PKI with a fresh ECDSA P-256 root.
func New(tb TB) *PKI {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "reattest test root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &PKI{Root: root, Key: key, Pool: pool}
}

// IssueOption tunes a certificate made by [PKI.Issue].
type IssueOption interface{ applyIssue(*issueConfig) }

type issueConfig struct {
	server bool
	key    crypto.Signer
}

type issueOption func(*issueConfig)

func (f issueOption) applyIssue(c *issueConfig) { f(c) }

// ServerAuth makes a server leaf: name and 127.0.0.1 as SANs and the
// serverAuth usage. Without it the leaf is a client leaf (clientAuth).
func ServerAuth() IssueOption {
	return issueOption(func(c *issueConfig) { c.server = true })
}

// WithKey certifies key instead of a new ECDSA P-256 key.
func WithKey(key crypto.Signer) IssueOption {
	return issueOption(func(c *issueConfig) { c.key = key })
}

// Issue returns a leaf certificate for name signed by the root: a client
// leaf with a new ECDSA P-256 key unless the options say otherwise.
func (p *PKI) Issue(tb TB, name string, opts ...IssueOption) tls.Certificate {
	tb.Helper()
	var cfg issueConfig
	for _, o := range opts {
		o.applyIssue(&cfg)
	}
	key := cfg.key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		key = k
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if cfg.server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{name}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Root, key.Public(), p.Key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// ServerConfig returns a TLS 1.3 server config for cert that asks for (but
// does not require) a client certificate from this PKI. Session tickets are
// off: attested connections do not resume (expat).
func (p *PKI) ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cert},
		ClientCAs:              p.Pool,
		ClientAuth:             tls.VerifyClientCertIfGiven,
		SessionTicketsDisabled: true,
	}
}

// ClientConfig returns a TLS 1.3 client config trusting this PKI, with an
// optional client certificate.
func (p *PKI) ClientConfig(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: p.Pool, ServerName: "localhost"}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// Pair connects a client and a server over loopback TCP with the given
// configs and completes the handshake on both sides. Both connections are
// closed when the test ends.
func Pair(tb TB, client, server *tls.Config) (c, s *tls.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		conn *tls.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		sc := tls.Server(raw, server)
		err = sc.Handshake()
		done <- result{sc, err}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	cc := tls.Client(raw, client)
	if err := cc.Handshake(); err != nil {
		tb.Fatalf("client handshake: %v", err)
	}
	r := <-done
	if r.err != nil {
		tb.Fatalf("server handshake: %v", r.err)
	}
	tb.Cleanup(func() { cc.Close(); r.conn.Close() })
	return cc, r.conn
}

// Endpoints is a connected pair with the identities used.
type Endpoints struct {
	Client, Server         *tls.Conn
	ClientCert, ServerCert tls.Certificate
	PKI                    *PKI
}

// MutualTLS connects a client with a client certificate to a server, both
// from a fresh PKI, over TLS 1.3 on loopback.
func MutualTLS(tb TB) *Endpoints {
	tb.Helper()
	p := New(tb)
	sc := p.Issue(tb, "localhost", ServerAuth())
	cc := p.Issue(tb, "agent")
	c, s := Pair(tb, p.ClientConfig(&cc), p.ServerConfig(sc))
	return &Endpoints{Client: c, Server: s, ClientCert: cc, ServerCert: sc, PKI: p}
}

// NewKey returns a fresh ECDSA P-256 key.
func NewKey(tb TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
