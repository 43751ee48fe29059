package postauth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// certFor returns a certificate for pub signed by a throwaway ECDSA key:
// the public key needs no private key, so tests can present keys nobody
// could sign with (an 8192-bit RSA modulus, a small exponent).
func certFor(t *testing.T, pub any, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	if parentKey == nil {
		parentKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "forged"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, IsCA: isCA, BasicConstraintsValid: true,
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, parentKey
}

// rsaPub is an RSA public key of bits bits and exponent e with no private
// key (a random odd modulus).
func rsaPub(bits, e int) *rsa.PublicKey {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	return &rsa.PublicKey{N: n, E: e}
}

// forgeAnswer has the client answer req with entries, scheme and a junk
// signature (and a valid Finished): what a peer holding the connection but
// no trusted key can send.
func forgeAnswer(t *testing.T, e *env, req *postauth.Request, scheme tls.SignatureScheme, certs ...*x509.Certificate) []byte {
	t.Helper()
	reqBytes, _ := req.Marshal()
	entries := make([]postauth.CertificateEntry, len(certs))
	for i, c := range certs {
		entries[i].Data = c.Raw
	}
	cs := e.ep.Client.ConnectionState()
	junk := make([]byte, 512)
	rand.Read(junk)
	raw, err := postauthtest.Forge(&cs, postauthtest.Forgery{Role: postauth.RoleClient, Request: reqBytes,
		Context: req.Context, Entries: entries, Scheme: scheme, Signature: junk})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// CPU amplification: the server decides whether the authenticator key is
// trusted, and whether it is a key it verifies at all, before any
// signature work. A forged authenticator with a junk signature is refused
// for its key, never for its signature.
func TestKeyDecidedBeforeSignature(t *testing.T) {
	e := newEnv(t)
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	strangerCert, _ := certFor(t, &stranger.PublicKey, false, nil, nil)
	attestedOnly := e.relyingParty(postauth.WithKeyTrust(postauth.KeyTrustAttestedKeyOnly))
	for _, tc := range []struct {
		name   string
		rp     *postauth.RelyingParty
		scheme tls.SignatureScheme
		pub    any
		reason postauth.Reason
	}{
		// same-peer (the default): another key is untrusted, whatever it is
		{"same-peer/ecdsa", e.rp, tls.ECDSAWithP256AndSHA256, &stranger.PublicKey, postauth.ReasonKeyNotTrusted},
		{"same-peer/rsa-4096", e.rp, tls.PSSWithSHA256, rsaPub(4096, 65537), postauth.ReasonKeyNotTrusted},
		// attested-key-only: any key is trusted, but only keys of bounded cost
		{"attested-only/rsa-8192", attestedOnly, tls.PSSWithSHA256, rsaPub(8192, 65537), postauth.ReasonUnsupportedScheme},
		{"attested-only/rsa-16384", attestedOnly, tls.PSSWithSHA512, rsaPub(16384, 65537), postauth.ReasonUnsupportedScheme},
		{"attested-only/rsa-e-2^31-1", attestedOnly, tls.PSSWithSHA256, rsaPub(2048, 1<<31-1), postauth.ReasonUnsupportedScheme},
		{"attested-only/rsa-e-3", attestedOnly, tls.PSSWithSHA256, rsaPub(2048, 3), postauth.ReasonUnsupportedScheme},
		{"attested-only/ecdsa-p521", attestedOnly, tls.ECDSAWithP256AndSHA256, mustP521(t), postauth.ReasonUnsupportedScheme},
		// an acceptable key under attested-key-only: the signature is checked (and fails)
		{"attested-only/ecdsa-junk", attestedOnly, tls.ECDSAWithP256AndSHA256, &stranger.PublicKey, postauth.ReasonBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := strangerCert
			if tc.pub != &stranger.PublicKey {
				cert, _ = certFor(t, tc.pub, false, nil, nil)
			}
			reqr, _ := tc.rp.NewRequester(e.serverCh, postauth.RoleClient)
			req, _ := reqr.NewRequest(nil)
			_, err := reqr.Verify(t.Context(), forgeAnswer(t, e, req, tc.scheme, cert), nil)
			postauthtest.WantError(t, err, postauth.CodeInvalid, tc.reason)
		})
	}
}

func mustP521(t *testing.T) *ecdsa.PublicKey {
	k, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

// KeyTrustChain verifies at most three intermediates, each with a bounded
// key, so that a forged chain cannot make path building expensive.
func TestChainBounded(t *testing.T) {
	e := newEnv(t)
	pki := postauthtest.New(t)
	rp := e.relyingParty(postauth.WithKeyTrust(postauth.KeyTrustChain), postauth.WithRoots(pki.Pool))
	// chain returns leaf, i_n, ..., i_1: a valid chain to the PKI's root
	// through n intermediates.
	chain := func(n int) []*x509.Certificate {
		parent, parentKey := pki.Root, pki.Key.(*ecdsa.PrivateKey)
		var inters []*x509.Certificate
		for range n {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			c, _ := certFor(t, &k.PublicKey, true, parent, parentKey)
			inters = append([]*x509.Certificate{c}, inters...)
			parent, parentKey = c, k
		}
		leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		leaf, _ := certFor(t, &leafKey.PublicKey, false, parent, parentKey)
		return append([]*x509.Certificate{leaf}, inters...)
	}
	for _, tc := range []struct {
		name   string
		chain  []*x509.Certificate
		reason postauth.Reason
	}{
		// three intermediates: the chain is trusted, so the (junk) signature is checked
		{"three-intermediates", chain(3), postauth.ReasonBadSignature},
		{"four-intermediates", chain(4), postauth.ReasonKeyNotTrusted},
		{"rsa-8192-intermediate", []*x509.Certificate{chain(0)[0], mustCert(t, rsaPub(8192, 65537))}, postauth.ReasonBadCertificate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqr, _ := rp.NewRequester(e.serverCh, postauth.RoleClient)
			req, _ := reqr.NewRequest(nil)
			_, err := reqr.Verify(t.Context(), forgeAnswer(t, e, req, tls.ECDSAWithP256AndSHA256, tc.chain...), nil)
			postauthtest.WantError(t, err, postauth.CodeInvalid, tc.reason)
		})
	}
}

func mustCert(t *testing.T, pub any) *x509.Certificate {
	c, _ := certFor(t, pub, true, nil, nil)
	return c
}

// The scheme must be one the request offered, even when the verifying
// relying party would accept it: an answer signed with Ed25519 to a request
// that offered only ECDSA P-256 is refused.
func TestSchemeMustBeOffered(t *testing.T) {
	e := newEnv(t)
	offersP256 := e.relyingParty(postauth.WithSignatureSchemes(tls.ECDSAWithP256AndSHA256), postauth.WithKeyTrust(postauth.KeyTrustAttestedKeyOnly))
	acceptsAll := e.relyingParty(postauth.WithKeyTrust(postauth.KeyTrustAttestedKeyOnly))
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	id, err := postauth.SelfSignedIdentity(priv, "ed25519 agent", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_ = pub
	reqr, _ := offersP256.NewRequester(e.serverCh, postauth.RoleClient)
	req, _ := reqr.NewRequest(nil)
	reqBytes, _ := req.Marshal()
	cs := e.ep.Client.ConnectionState()
	raw, err := postauthtest.Forge(&cs, postauthtest.Forgery{Role: postauth.RoleClient, Request: reqBytes, Context: req.Context,
		Entries: []postauth.CertificateEntry{{Data: id.Leaf().Raw}}, Scheme: tls.Ed25519, Signer: priv})
	if err != nil {
		t.Fatal(err)
	}
	_, err = reqr.VerifyWith(t.Context(), acceptsAll, raw, nil)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUnsupportedScheme)
}
