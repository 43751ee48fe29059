package postauth

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"
	"slices"
	"time"
)

// Identity is what an endpoint signs authenticators with: a certificate
// chain and the private key of its end-entity certificate. The key is a
// [crypto.Signer], so it may live in a TPM or an HSM. An Identity is
// immutable and safe for concurrent use.
type Identity struct {
	chain  [][]byte
	leaf   *x509.Certificate
	signer crypto.Signer
}

// NewIdentity returns an Identity for signer and chain (DER, end-entity
// first). It checks that the end-entity certificate holds signer's public key.
func NewIdentity(signer crypto.Signer, chain ...[]byte) (*Identity, error) {
	if signer == nil || len(chain) == 0 {
		return nil, errors.New("postauth: identity needs a signer and a certificate")
	}
	if len(chain) > maxChainLen {
		return nil, fmt.Errorf("postauth: identity chain longer than %d", maxChainLen)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("postauth: identity certificate: %w", err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, errors.New("postauth: identity certificate does not hold the signer's public key")
	}
	if !slices.ContainsFunc(DefaultSignatureSchemes, func(s tls.SignatureScheme) bool { return keyFitsScheme(leaf.PublicKey, s) }) {
		return nil, fmt.Errorf("postauth: identity key type %T is not supported", leaf.PublicKey)
	}
	c := make([][]byte, len(chain))
	for i, der := range chain {
		c[i] = slices.Clone(der)
	}
	return &Identity{chain: c, leaf: leaf, signer: signer}, nil
}

// IdentityFromTLS returns an Identity that reuses a TLS certificate and its
// key, so that the authenticator key is the key that authenticated the TLS
// connection (compound authentication, [KeyTrustSamePeer]).
func IdentityFromTLS(cert *tls.Certificate) (*Identity, error) {
	if cert == nil {
		return nil, errors.New("postauth: nil certificate")
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("postauth: TLS certificate key is not a crypto.Signer")
	}
	return NewIdentity(signer, cert.Certificate...)
}

// SelfSignedIdentity returns an Identity with a self-signed certificate for
// signer, valid for validity from now. It is for [KeyTrustAttestedKeyOnly],
// where only the Evidence vouches for the key.
func SelfSignedIdentity(signer crypto.Signer, commonName string, validity time.Duration) (*Identity, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("postauth: self-signed certificate: %w", err)
	}
	return NewIdentity(signer, der)
}

// Leaf is the end-entity certificate.
func (id *Identity) Leaf() *x509.Certificate { return id.leaf }

// SPKI is the DER SubjectPublicKeyInfo of the end-entity key.
func (id *Identity) SPKI() []byte { return id.leaf.RawSubjectPublicKeyInfo }

// Signer is the end-entity key.
func (id *Identity) Signer() crypto.Signer { return id.signer }

// transcript is a running Hash(Handshake Context || request || ...).
type transcript struct{ h hash.Hash }

func (c *Channel) newTranscript(keys *authenticatorKeys, request []byte) transcript {
	h := c.newHash()
	h.Write(keys.handshakeContext)
	h.Write(request)
	return transcript{h}
}

func (t transcript) add(msg []byte) []byte {
	t.h.Write(msg)
	return t.h.Sum(nil)
}

func finishedMAC(keys *authenticatorKeys, h crypto.Hash, transcriptHash []byte) []byte {
	newHash := func() hash.Hash { return h.New() }
	m := hmac.New(newHash, keys.finishedKey)
	m.Write(transcriptHash)
	return m.Sum(nil)
}

// AuthenticateOptions tune [Channel.Authenticate]. The zero value is valid.
type AuthenticateOptions struct {
	// Extensions go into the end-entity CertificateEntry. Each must have
	// been offered in the request.
	Extensions []Extension
	// SignatureSchemes are the schemes we are willing to sign with, in order
	// of preference. Nil means DefaultSignatureSchemes.
	SignatureSchemes []tls.SignatureScheme
	// Rand is passed to the signer. Nil means crypto/rand. A nil-rand
	// signer wrapper gives deterministic ECDSA (RFC 6979) for test vectors.
	Rand io.Reader
}

// Authenticate returns an Exported Authenticator (RFC 9261) that answers req
// on this connection, sent by role with identity id:
// Certificate || CertificateVerify || Finished.
//
// role must be the local endpoint's role and must match the request type (a
// client answers a CertificateRequest, a server a ClientCertificateRequest);
// otherwise the error wraps [ErrWrongRequestType], which stops a peer from
// reflecting our own request type back at us.
func (c *Channel) Authenticate(role Role, req *Request, id *Identity, opts *AuthenticateOptions) ([]byte, error) {
	if opts == nil {
		opts = &AuthenticateOptions{}
	}
	if id == nil {
		return nil, errors.New("postauth: nil identity")
	}
	reqBytes, err := checkRequestRole(role, req)
	if err != nil {
		return nil, err
	}
	offered, err := req.SignatureSchemes()
	if err != nil {
		return nil, err
	}
	ours := opts.SignatureSchemes
	if ours == nil {
		ours = DefaultSignatureSchemes
	}
	scheme, err := chooseScheme(id.leaf.PublicKey, offered, ours)
	if err != nil {
		return nil, err
	}
	for _, e := range opts.Extensions {
		if _, ok := req.Extension(e.Type); !ok {
			return nil, fmt.Errorf("%w: %d", ErrUnexpectedExtension, e.Type)
		}
	}
	entries := make([]CertificateEntry, len(id.chain))
	for i, der := range id.chain {
		entries[i].Data = der
	}
	entries[0].Extensions = opts.Extensions
	certMsg, err := marshalCertificate(req.Context, entries)
	if err != nil {
		return nil, err
	}
	keys, err := c.keysFor(role)
	if err != nil {
		return nil, err
	}
	t := c.newTranscript(keys, reqBytes)
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	sig, err := sign(id.signer, rnd, scheme, signatureInput(t.add(certMsg)))
	if err != nil {
		return nil, fmt.Errorf("postauth: signing CertificateVerify: %w", err)
	}
	cvMsg := marshalCertificateVerify(scheme, sig)
	fin := marshalFinished(finishedMAC(keys, c.hash, t.add(cvMsg)))
	out := make([]byte, 0, len(certMsg)+len(cvMsg)+len(fin))
	out = append(append(append(out, certMsg...), cvMsg...), fin...)
	if len(out) > MaxAuthenticatorLen {
		return nil, ErrTooLarge
	}
	return out, nil
}

// Refuse returns the empty authenticator (RFC 9261 section 5.2.4) with which
// role declines req: a Finished message over a Certificate with the request's
// context and no entries.
func (c *Channel) Refuse(role Role, req *Request) ([]byte, error) {
	reqBytes, err := checkRequestRole(role, req)
	if err != nil {
		return nil, err
	}
	mac, err := c.refusalMAC(role, reqBytes, req.Context)
	if err != nil {
		return nil, err
	}
	return marshalFinished(mac), nil
}

// refusalMAC is the Finished MAC of an empty authenticator sent by role for
// the encoded request reqBytes with the given context: HMAC over
// Hash(Handshake Context || request || Certificate(context, no entries)).
func (c *Channel) refusalMAC(role Role, reqBytes, context []byte) ([]byte, error) {
	keys, err := c.keysFor(role)
	if err != nil {
		return nil, err
	}
	emptyCert, err := marshalCertificate(context, nil)
	if err != nil {
		return nil, err
	}
	t := c.newTranscript(keys, reqBytes)
	return finishedMAC(keys, c.hash, t.add(emptyCert)), nil
}

func errRefused() *Error {
	return &Error{Code: CodeRequired, Reason: "attestation_refused", Err: ErrRefused}
}

func checkRequestRole(role Role, req *Request) ([]byte, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: nil request", ErrMalformed)
	}
	responder, err := req.Responder()
	if err != nil {
		return nil, err
	}
	if responder != role {
		return nil, invalid("wrong_request_type", fmt.Errorf("%w: a %s cannot answer handshake type %d", ErrWrongRequestType, role, req.Type))
	}
	return req.Marshal()
}

// KeyTrust says how a relying party decides that an authenticator's key
// belongs to the peer it means to talk to (design section 3, "two pillars of
// trust"). Attestation vouches for the state of whoever holds the key; key
// trust says who that is.
type KeyTrust uint8

const (
	// KeyTrustDefault picks the safest mode the configuration allows:
	// KeyTrustSamePeer when the peer authenticated the TLS connection with a
	// certificate, else KeyTrustChain when Roots is set, else it fails with
	// [ErrNoKeyTrust].
	KeyTrustDefault KeyTrust = iota
	// KeyTrustSamePeer requires the authenticator's end-entity key to equal
	// the key of the certificate that authenticated the TLS connection
	// (the mTLS client certificate, or the server certificate), which TLS
	// must have verified (non-empty VerifiedChains). Identity comes from
	// PKI, trustworthiness from attestation.
	KeyTrustSamePeer
	// KeyTrustChain requires the authenticator's chain to verify against
	// Roots (and DNSName, when set).
	KeyTrustChain
	// KeyTrustAttestedKeyOnly accepts any certificate, self-signed included:
	// only the Evidence, which carries the key hash, vouches for the key.
	// It gives up identity: you learn that some attester you trust holds
	// the key, not which peer it is unless the Evidence's machine id says
	// so. Use it for onboarding and demos, and check Result.MachineID.
	KeyTrustAttestedKeyOnly
)

func (k KeyTrust) String() string {
	switch k {
	case KeyTrustDefault:
		return "default"
	case KeyTrustSamePeer:
		return "same-peer"
	case KeyTrustChain:
		return "chain"
	case KeyTrustAttestedKeyOnly:
		return "attested-key-only"
	}
	return fmt.Sprintf("keytrust(%d)", uint8(k))
}

// ValidateOptions configure [Channel.Validate]. The zero value accepts only
// an authenticator whose key is the TLS peer's key.
type ValidateOptions struct {
	// SignatureSchemes we accept, intersected with those the request
	// offered. Nil means DefaultSignatureSchemes.
	SignatureSchemes []tls.SignatureScheme
	// KeyTrust selects how the authenticator key is trusted.
	KeyTrust KeyTrust
	// Roots verify the authenticator chain for KeyTrustChain.
	Roots *x509.CertPool
	// DNSName, if set, must match the chain's leaf for KeyTrustChain.
	DNSName string
	// Time is the current time for chain validation; nil means time.Now.
	Time func() time.Time
}

// Validated is an authenticator that passed [Channel.Validate].
type Validated struct {
	Authenticator *Authenticator
	// Leaf is the parsed end-entity certificate; Chain the rest.
	Leaf  *x509.Certificate
	Chain []*x509.Certificate
	// KeyTrust is the mode the key was trusted by.
	KeyTrust KeyTrust
}

// Validate checks raw, an authenticator sent by role that answers req on
// this connection (RFC 9261 section 5.2): the framing, that the context
// echoes the request's, that every certificate extension was offered, the
// Finished MAC (in constant time, before the more costly signature check),
// the CertificateVerify signature with a scheme the request offered, and the
// key trust mode. A refusal gives an error wrapping [ErrRefused].
//
// Validate does not enforce single use of the context: a [Requester] does.
func (c *Channel) Validate(role Role, req *Request, raw []byte, opts *ValidateOptions) (*Validated, error) {
	if opts == nil {
		opts = &ValidateOptions{}
	}
	a, err := ParseAuthenticator(raw)
	if err != nil {
		return nil, invalid("malformed", err)
	}
	return c.validateParsed(role, req, a, opts)
}

func (c *Channel) validateParsed(role Role, req *Request, a *Authenticator, opts *ValidateOptions) (*Validated, error) {
	reqBytes, err := checkRequestRole(role, req)
	if err != nil {
		return nil, err
	}
	if a.Empty() {
		mac, err := c.refusalMAC(role, reqBytes, req.Context)
		if err != nil {
			return nil, err
		}
		if !hmac.Equal(mac, a.Finished) {
			return nil, invalid("bad_finished", ErrBadFinished)
		}
		return nil, errRefused()
	}
	keys, err := c.keysFor(role)
	if err != nil {
		return nil, err
	}
	t := c.newTranscript(keys, reqBytes)
	if !bytes.Equal(a.Context, req.Context) {
		return nil, invalid("context_mismatch", ErrContextMismatch)
	}
	for _, e := range a.Certificates {
		for _, x := range e.Extensions {
			if _, ok := req.Extension(x.Type); !ok {
				return nil, invalid("unsupported_extension", fmt.Errorf("%w: %d", ErrUnexpectedExtension, x.Type))
			}
		}
	}
	certHash := t.add(a.rawCertificate)
	if !hmac.Equal(finishedMAC(keys, c.hash, t.add(a.rawCertificateVerify)), a.Finished) {
		return nil, invalid("bad_finished", ErrBadFinished)
	}
	offered, err := req.SignatureSchemes()
	if err != nil {
		return nil, invalid("malformed", err)
	}
	ours := opts.SignatureSchemes
	if ours == nil {
		ours = DefaultSignatureSchemes
	}
	if !slices.Contains(offered, a.Scheme) || !slices.Contains(ours, a.Scheme) {
		return nil, invalid("unsupported_scheme", fmt.Errorf("%w: 0x%04x", ErrUnsupportedScheme, uint16(a.Scheme)))
	}
	leaf, err := x509.ParseCertificate(a.Certificates[0].Data)
	if err != nil {
		return nil, invalid("bad_certificate", fmt.Errorf("%w: %v", ErrBadCertificate, err))
	}
	if err := verifySignature(leaf.PublicKey, a.Scheme, signatureInput(certHash), a.Signature); err != nil {
		return nil, invalid("bad_signature", err)
	}
	v := &Validated{Authenticator: a, Leaf: leaf}
	for _, e := range a.Certificates[1:] {
		cert, err := x509.ParseCertificate(e.Data)
		if err != nil {
			return nil, invalid("bad_certificate", fmt.Errorf("%w: %v", ErrBadCertificate, err))
		}
		v.Chain = append(v.Chain, cert)
	}
	if v.KeyTrust, err = c.trustKey(role, v, opts); err != nil {
		return nil, err
	}
	return v, nil
}

func (c *Channel) trustKey(role Role, v *Validated, opts *ValidateOptions) (KeyTrust, error) {
	mode := opts.KeyTrust
	if mode == KeyTrustDefault {
		switch {
		case c.peer != nil:
			mode = KeyTrustSamePeer
		case opts.Roots != nil:
			mode = KeyTrustChain
		default:
			return 0, invalid("key_not_trusted", ErrNoKeyTrust)
		}
	}
	switch mode {
	case KeyTrustSamePeer:
		if c.peer == nil {
			return 0, invalid("key_not_trusted", fmt.Errorf("%w: the peer presented no TLS certificate", ErrKeyNotTrusted))
		}
		if !bytes.Equal(c.peer.RawSubjectPublicKeyInfo, v.Leaf.RawSubjectPublicKeyInfo) {
			return 0, invalid("key_not_trusted", fmt.Errorf("%w: key differs from the TLS peer's", ErrKeyNotTrusted))
		}
	case KeyTrustChain:
		if opts.Roots == nil {
			return 0, invalid("key_not_trusted", fmt.Errorf("%w: KeyTrustChain without Roots", ErrKeyNotTrusted))
		}
		now := time.Now
		if opts.Time != nil {
			now = opts.Time
		}
		inter := x509.NewCertPool()
		for _, cert := range v.Chain {
			inter.AddCert(cert)
		}
		usage := x509.ExtKeyUsageClientAuth
		if role == RoleServer {
			usage = x509.ExtKeyUsageServerAuth
		}
		if _, err := v.Leaf.Verify(x509.VerifyOptions{
			Roots: opts.Roots, Intermediates: inter, DNSName: opts.DNSName,
			CurrentTime: now(), KeyUsages: []x509.ExtKeyUsage{usage},
		}); err != nil {
			return 0, invalid("key_not_trusted", fmt.Errorf("%w: %v", ErrKeyNotTrusted, err))
		}
	case KeyTrustAttestedKeyOnly:
	default:
		return 0, invalid("key_not_trusted", fmt.Errorf("%w: unknown mode %d", ErrKeyNotTrusted, mode))
	}
	return mode, nil
}
