package postauth

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

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

// Authenticate returns an Exported Authenticator (RFC 9261) that answers req
// on this connection, sent by role with identity id:
// Certificate || CertificateVerify || Finished. exts go into the end-entity
// CertificateEntry; each must have been offered in the request. Options:
// [WithSignatureSchemes] (the schemes we sign with) and [WithRand].
//
// role must be the local endpoint's role and must match the request type (a
// client answers a CertificateRequest, a server a ClientCertificateRequest);
// otherwise the error wraps [ErrWrongRequestType], which stops a peer from
// reflecting our own request type back at us.
func (c *Channel) Authenticate(role Role, req *Request, id *Identity, exts []Extension, opts ...Option) ([]byte, error) {
	cfg := newConfig(opts)
	return c.authenticate(role, req, id, exts, &cfg)
}

func (c *Channel) authenticate(role Role, req *Request, id *Identity, exts []Extension, cfg *config) ([]byte, error) {
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
	scheme, err := chooseScheme(id.leaf.PublicKey, offered, cfg.schemes)
	if err != nil {
		return nil, err
	}
	for _, e := range exts {
		if _, ok := req.Extension(e.Type); !ok {
			return nil, fmt.Errorf("%w: %d", ErrUnexpectedExtension, e.Type)
		}
	}
	entries := make([]CertificateEntry, len(id.chain))
	for i, der := range id.chain {
		entries[i].Data = der
	}
	entries[0].Extensions = exts
	certMsg, err := marshalCertificate(req.Context, entries)
	if err != nil {
		return nil, err
	}
	keys, err := c.keysFor(role)
	if err != nil {
		return nil, err
	}
	t := c.newTranscript(keys, reqBytes)
	sig, err := sign(id.signer, cfg.rand, scheme, signatureInput(t.add(certMsg)))
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
	return &Error{Code: CodeRequired, Reason: ReasonAttestationRefused, Err: ErrRefused}
}

func checkRequestRole(role Role, req *Request) ([]byte, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: nil request", ErrMalformed)
	}
	responder, err := req.Responder()
	if err != nil {
		return nil, err
	}
	if responder != role { // mutation: role check
		return nil, invalid(ReasonWrongRequestType, fmt.Errorf("%w: a %s cannot answer handshake type %d", ErrWrongRequestType, role, req.Type))
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

// Validated is an authenticator that passed [Channel.Validate].
type Validated struct {
	Authenticator *Authenticator
	// SPKI is the end-entity certificate's DER SubjectPublicKeyInfo and
	// PublicKey its key, which signed the CertificateVerify.
	SPKI      []byte
	PublicKey crypto.PublicKey
	// Chain are the parsed certificates after the end-entity one
	// (KeyTrustChain only).
	Chain []*x509.Certificate
	// KeyTrust is the mode the key was trusted by.
	KeyTrust KeyTrust

	leaf *x509.Certificate // parsed on demand (Leaf)
}

// Leaf returns the parsed end-entity certificate. Under KeyTrustSamePeer
// only its key is checked (the peer's identity comes from TLS), so the
// certificate is parsed here, on demand.
func (v *Validated) Leaf() (*x509.Certificate, error) {
	if v.leaf != nil {
		return v.leaf, nil
	}
	leaf, err := x509.ParseCertificate(v.Authenticator.Certificates[0].Data)
	if err != nil {
		return nil, invalid(ReasonBadCertificate, fmt.Errorf("%w: %v", ErrBadCertificate, err))
	}
	v.leaf = leaf
	return leaf, nil
}

// Validate checks raw, an authenticator sent by role that answers req on
// this connection (RFC 9261 section 5.2): the framing, that the context
// echoes the request's, that every certificate extension was offered, the
// Finished MAC (in constant time, before the more costly signature check),
// the CertificateVerify signature with a scheme the request offered, and the
// key trust mode. A refusal gives an error wrapping [ErrRefused].
//
// Options: [WithSignatureSchemes] (the schemes we accept), [WithKeyTrust],
// [WithRoots], [WithDNSName] and [WithClock] (chain validation). With no
// options only an authenticator whose key is the TLS peer's key passes.
//
// Validate does not enforce single use of the context: a [Requester] does.
func (c *Channel) Validate(role Role, req *Request, raw []byte, opts ...Option) (*Validated, error) {
	cfg := newConfig(opts)
	a, err := ParseAuthenticator(raw)
	if err != nil {
		return nil, invalid(ReasonMalformed, err)
	}
	return c.validate(role, req, a, &cfg)
}

func (c *Channel) validate(role Role, req *Request, a *Authenticator, cfg *config) (*Validated, error) {
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
			return nil, invalid(ReasonBadFinished, ErrBadFinished)
		}
		return nil, errRefused()
	}
	keys, err := c.keysFor(role)
	if err != nil {
		return nil, err
	}
	t := c.newTranscript(keys, reqBytes)
	if !bytes.Equal(a.Context, req.Context) {
		return nil, invalid(ReasonContextMismatch, ErrContextMismatch)
	}
	for _, e := range a.Certificates {
		for _, x := range e.Extensions {
			if _, ok := req.Extension(x.Type); !ok { // mutation: offered extensions
				return nil, invalid(ReasonUnsupportedExtension, fmt.Errorf("%w: %d", ErrUnexpectedExtension, x.Type))
			}
		}
	}
	certHash := t.add(a.rawCertificate)
	if !hmac.Equal(finishedMAC(keys, c.hash, t.add(a.rawCertificateVerify)), a.Finished) { // mutation: finished check
		return nil, invalid(ReasonBadFinished, ErrBadFinished)
	}
	offered, err := req.SignatureSchemes()
	if err != nil {
		return nil, invalid(ReasonMalformed, err)
	}
	if !slices.Contains(offered, a.Scheme) || !slices.Contains(cfg.schemes, a.Scheme) { // mutation: offered scheme
		return nil, invalid(ReasonUnsupportedScheme, fmt.Errorf("%w: 0x%04x", ErrUnsupportedScheme, uint16(a.Scheme)))
	}
	// Cheap refusals first: the key's type and size, then whether the key
	// is trusted at all, and only then the signature, so that a peer
	// without a trusted key cannot make us do public-key work of its
	// choosing (docs/threat-model.md, "CPU amplification").
	spki, err := certificateSPKI(a.Certificates[0].Data)
	if err != nil {
		return nil, invalid(ReasonBadCertificate, fmt.Errorf("%w: %v", ErrBadCertificate, err))
	}
	v := &Validated{Authenticator: a, SPKI: spki}
	if v.KeyTrust, err = c.keyTrustMode(cfg); err != nil {
		return nil, err
	}
	if v.KeyTrust == KeyTrustSamePeer {
		// The cheapest refusal: the key is the TLS peer's, byte for byte,
		// or nothing else is looked at. The peer's key was parsed by TLS.
		if c.peer == nil {
			return nil, invalid(ReasonKeyNotTrusted, fmt.Errorf("%w: the peer presented no TLS certificate", ErrKeyNotTrusted))
		}
		if !bytes.Equal(c.peer.spki, spki) { // mutation: same peer key
			return nil, invalid(ReasonKeyNotTrusted, fmt.Errorf("%w: key differs from the TLS peer's", ErrKeyNotTrusted))
		}
		v.PublicKey = c.peer.pub
	} else if v.PublicKey, err = x509.ParsePKIXPublicKey(spki); err != nil {
		return nil, invalid(ReasonBadCertificate, fmt.Errorf("%w: %v", ErrBadCertificate, err))
	}
	if !keyFitsScheme(v.PublicKey, a.Scheme) { // mutation: key fits scheme
		return nil, invalid(ReasonUnsupportedScheme, fmt.Errorf("%w: a %s key cannot sign with 0x%04x", ErrUnsupportedScheme, keyDescription(v.PublicKey), uint16(a.Scheme)))
	}
	if v.KeyTrust == KeyTrustChain {
		if err := c.trustChain(role, v, a.Certificates[1:], cfg); err != nil {
			return nil, err
		}
	}
	if err := verifySignature(v.PublicKey, a.Scheme, signatureInput(certHash), a.Signature); err != nil { // mutation: signature check
		return nil, invalid(ReasonBadSignature, err)
	}
	return v, nil
}

// certificateSPKI returns the SubjectPublicKeyInfo of a DER certificate,
// checking the certificate's outer structure (RFC 5280 section 4.1) but
// not parsing its fields.
func certificateSPKI(der []byte) ([]byte, error) {
	in := cryptobyte.String(der)
	var cert, tbs, spki cryptobyte.String
	if !in.ReadASN1(&cert, asn1.SEQUENCE) || !in.Empty() ||
		!cert.ReadASN1(&tbs, asn1.SEQUENCE) ||
		!cert.SkipASN1(asn1.SEQUENCE) || // signatureAlgorithm
		!cert.SkipASN1(asn1.BIT_STRING) || !cert.Empty() { // signatureValue
		return nil, errors.New("malformed certificate")
	}
	if !tbs.SkipOptionalASN1(asn1.Tag(0).Constructed().ContextSpecific()) || // version
		!tbs.SkipASN1(asn1.INTEGER) || // serialNumber
		!tbs.SkipASN1(asn1.SEQUENCE) || // signature
		!tbs.SkipASN1(asn1.SEQUENCE) || // issuer
		!tbs.SkipASN1(asn1.SEQUENCE) || // validity
		!tbs.SkipASN1(asn1.SEQUENCE) || // subject
		!tbs.ReadASN1Element(&spki, asn1.SEQUENCE) {
		return nil, errors.New("malformed TBSCertificate")
	}
	return spki, nil
}

// maxChainIntermediates bounds the intermediates of an authenticator chain
// that KeyTrustChain verifies: each candidate issuer costs a signature
// check.
const maxChainIntermediates = 3

// keyTrustMode resolves the configured key trust mode for this channel
// (KeyTrustDefault: same peer if the peer authenticated with a
// certificate, else chain if roots are set, else a failure).
func (c *Channel) keyTrustMode(cfg *config) (KeyTrust, error) {
	switch mode := cfg.keyTrust; mode {
	case KeyTrustDefault:
		switch {
		case c.peer != nil:
			return KeyTrustSamePeer, nil
		case cfg.roots != nil:
			return KeyTrustChain, nil
		}
		return 0, invalid(ReasonKeyNotTrusted, ErrNoKeyTrust)
	case KeyTrustSamePeer, KeyTrustChain, KeyTrustAttestedKeyOnly:
		return mode, nil
	default:
		return 0, invalid(ReasonKeyNotTrusted, fmt.Errorf("%w: unknown mode %d", ErrKeyNotTrusted, mode))
	}
}

// trustChain decides, before the signature is checked, whether the
// authenticator's chain verifies against the roots (KeyTrustChain). rest
// are the entries after the end-entity one: at most maxChainIntermediates,
// each with a bounded key.
func (c *Channel) trustChain(role Role, v *Validated, rest []CertificateEntry, cfg *config) error {
	if cfg.roots == nil {
		return invalid(ReasonKeyNotTrusted, fmt.Errorf("%w: KeyTrustChain without Roots", ErrKeyNotTrusted))
	}
	if len(rest) > maxChainIntermediates { // mutation: chain length
		return invalid(ReasonKeyNotTrusted, fmt.Errorf("%w: more than %d intermediates", ErrKeyNotTrusted, maxChainIntermediates))
	}
	inter := x509.NewCertPool()
	for _, e := range rest {
		cert, err := x509.ParseCertificate(e.Data)
		if err != nil {
			return invalid(ReasonBadCertificate, fmt.Errorf("%w: %v", ErrBadCertificate, err))
		}
		if !acceptableKey(cert.PublicKey) { // mutation: chain key bounds
			return invalid(ReasonBadCertificate, fmt.Errorf("%w: an intermediate with a %s key", ErrBadCertificate, keyDescription(cert.PublicKey)))
		}
		v.Chain = append(v.Chain, cert)
		inter.AddCert(cert)
	}
	usage := x509.ExtKeyUsageClientAuth
	if role == RoleServer {
		usage = x509.ExtKeyUsageServerAuth
	}
	leaf, err := v.Leaf()
	if err != nil {
		return err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: cfg.roots, Intermediates: inter, DNSName: cfg.dnsName,
		CurrentTime: cfg.now(), KeyUsages: []x509.ExtKeyUsage{usage},
	}); err != nil {
		return invalid(ReasonKeyNotTrusted, fmt.Errorf("%w: %v", ErrKeyNotTrusted, err))
	}
	return nil
}
