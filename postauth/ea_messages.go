package postauth

import (
	"crypto/tls"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// HandshakeType is a TLS handshake message type.
type HandshakeType uint8

// Handshake message types used by Exported Authenticators (RFC 8446, RFC 9261).
const (
	TypeCertificate              HandshakeType = 11
	TypeCertificateRequest       HandshakeType = 13
	TypeCertificateVerify        HandshakeType = 15
	TypeClientCertificateRequest HandshakeType = 17
	TypeFinished                 HandshakeType = 20
)

// TLS extension code points.
const (
	// ExtensionSignatureAlgorithms is signature_algorithms (RFC 8446).
	ExtensionSignatureAlgorithms uint16 = 13
	// DefaultAttestationExtension is the code point used for cmw_attestation
	// (draft-fossati-seat-expat) until IANA assigns one: 0xFF00, private use.
	DefaultAttestationExtension uint16 = 0xFF00
)

// Size limits. The wire format allows larger values; these bounds keep a
// hostile peer from making us parse or allocate much.
const (
	// MaxContextLen is the largest certificate_request_context (RFC 9261: 255).
	MaxContextLen = 255
	// MaxRequestLen bounds an encoded authenticator request.
	MaxRequestLen = 4 << 10
	// MaxAuthenticatorLen bounds an encoded authenticator (certificate
	// chain, Evidence, signature and MAC).
	MaxAuthenticatorLen = 64 << 10
	// maxChainLen bounds the number of certificates in an authenticator.
	maxChainLen = 8
	// maxExtensions bounds the number of extensions in a message.
	maxExtensions = 32
)

// Extension is a TLS extension: a code point and its opaque data.
type Extension struct {
	Type uint16
	Data []byte
}

// Request is an authenticator request: a CertificateRequest (sent by the
// server, answered by the client) or a ClientCertificateRequest (sent by the
// client, answered by the server). RFC 9261 section 4.
type Request struct {
	Type       HandshakeType
	Context    []byte
	Extensions []Extension
}

// Responder is the role of the endpoint that answers r with an authenticator:
// RoleClient for a CertificateRequest, RoleServer for a
// ClientCertificateRequest.
func (r *Request) Responder() (Role, error) {
	switch r.Type {
	case TypeCertificateRequest:
		return RoleClient, nil
	case TypeClientCertificateRequest:
		return RoleServer, nil
	}
	return 0, fmt.Errorf("%w: handshake type %d is not a request", ErrMalformed, r.Type)
}

// Extension returns the data of the extension with code point t.
func (r *Request) Extension(t uint16) ([]byte, bool) {
	for _, e := range r.Extensions {
		if e.Type == t {
			return e.Data, true
		}
	}
	return nil, false
}

// SignatureSchemes returns the schemes listed in the request's
// signature_algorithms extension.
func (r *Request) SignatureSchemes() ([]tls.SignatureScheme, error) {
	data, ok := r.Extension(ExtensionSignatureAlgorithms)
	if !ok {
		return nil, fmt.Errorf("%w: request has no signature_algorithms", ErrMalformed)
	}
	return parseSignatureAlgorithms(data)
}

// Marshal returns the handshake-message encoding of r:
// msg_type(1) || uint24 length || context<0..255> || extensions<2..2^16-1>.
func (r *Request) Marshal() ([]byte, error) {
	if _, err := r.Responder(); err != nil {
		return nil, err
	}
	if len(r.Context) > MaxContextLen {
		return nil, fmt.Errorf("%w: context longer than %d bytes", ErrMalformed, MaxContextLen)
	}
	if len(r.Extensions) == 0 {
		return nil, fmt.Errorf("%w: a request needs at least signature_algorithms", ErrMalformed)
	}
	extLen := extensionsLen(r.Extensions)
	bodyLen := 1 + len(r.Context) + 2 + extLen
	if extLen > 0xffff || bodyLen+4 > MaxRequestLen {
		return nil, ErrTooLarge
	}
	out := make([]byte, 0, 4+bodyLen)
	out = appendUint24(append(out, byte(r.Type)), bodyLen)
	out = append(append(out, byte(len(r.Context))), r.Context...)
	return appendExtensions(out, r.Extensions, extLen), nil
}

// ParseRequest decodes a CertificateRequest or ClientCertificateRequest. It
// rejects trailing data, duplicate extensions, a missing signature_algorithms
// and anything larger than [MaxRequestLen]. The returned Request does not
// alias b.
func ParseRequest(b []byte) (*Request, error) {
	if len(b) > MaxRequestLen {
		return nil, ErrTooLarge
	}
	b = slices.Clone(b)
	s := cryptobyte.String(b)
	var typ uint8
	var body cryptobyte.String
	if !s.ReadUint8(&typ) || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return nil, fmt.Errorf("%w: bad request framing", ErrMalformed)
	}
	r := &Request{Type: HandshakeType(typ)}
	if _, err := r.Responder(); err != nil {
		return nil, err
	}
	var ctx cryptobyte.String
	if !body.ReadUint8LengthPrefixed(&ctx) {
		return nil, fmt.Errorf("%w: bad request context", ErrMalformed)
	}
	r.Context = slices.Clip([]byte(ctx))
	exts, err := readExtensions(&body)
	if err != nil {
		return nil, err
	}
	if !body.Empty() {
		return nil, fmt.Errorf("%w: trailing data in request", ErrMalformed)
	}
	if len(exts) == 0 {
		return nil, fmt.Errorf("%w: request has no extensions", ErrMalformed)
	}
	r.Extensions = exts
	if _, err := r.SignatureSchemes(); err != nil {
		return nil, err
	}
	return r, nil
}

// CertificateEntry is one certificate of an authenticator's Certificate
// message with its extensions.
type CertificateEntry struct {
	Data       []byte // DER X.509 certificate
	Extensions []Extension
}

// Authenticator is a decoded Exported Authenticator:
// Certificate || CertificateVerify || Finished (RFC 9261 section 5). A
// refusal, the "empty authenticator", is a Finished message alone; its MAC
// covers a Certificate message with the request's context and no entries,
// which is not sent.
type Authenticator struct {
	// Context is the certificate_request_context of the Certificate message
	// (nil for a refusal, which carries no Certificate).
	Context      []byte
	Certificates []CertificateEntry
	// Scheme and Signature are the CertificateVerify; zero for a refusal.
	Scheme    tls.SignatureScheme
	Signature []byte
	Finished  []byte

	// The encoded messages, as they enter the transcript hash.
	rawCertificate       []byte
	rawCertificateVerify []byte
}

// Empty reports whether a is a refusal (a Finished message alone).
func (a *Authenticator) Empty() bool { return a.rawCertificate == nil && len(a.Certificates) == 0 }

// ParseAuthenticator decodes an encoded authenticator. It checks framing
// only: call [Channel.Validate] (or a [Requester]) to check it. The returned
// value does not alias b.
func ParseAuthenticator(b []byte) (*Authenticator, error) {
	if len(b) > MaxAuthenticatorLen {
		return nil, ErrTooLarge
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrMalformed)
	}
	b = slices.Clone(b)
	s := cryptobyte.String(b)
	a := new(Authenticator)

	if HandshakeType(b[0]) == TypeCertificate {
		certMsg, certBody, ok := readMessage(&s, TypeCertificate)
		if !ok {
			return nil, fmt.Errorf("%w: bad Certificate framing", ErrMalformed)
		}
		a.rawCertificate = certMsg
		if err := parseCertificateBody(certBody, a); err != nil {
			return nil, err
		}
		if len(a.Certificates) == 0 {
			// RFC 9261 section 5.2.4: a refusal is sent as Finished alone.
			return nil, fmt.Errorf("%w: Certificate without entries", ErrMalformed)
		}
		cvMsg, cvBody, ok := readMessage(&s, TypeCertificateVerify)
		if !ok {
			return nil, fmt.Errorf("%w: expected CertificateVerify", ErrMalformed)
		}
		var scheme uint16
		var sig cryptobyte.String
		if !cvBody.ReadUint16(&scheme) || !cvBody.ReadUint16LengthPrefixed(&sig) || !cvBody.Empty() || len(sig) == 0 {
			return nil, fmt.Errorf("%w: bad CertificateVerify", ErrMalformed)
		}
		a.Scheme = tls.SignatureScheme(scheme)
		a.Signature = slices.Clip([]byte(sig))
		a.rawCertificateVerify = cvMsg
	}
	_, finBody, ok := readMessage(&s, TypeFinished)
	if !ok {
		return nil, fmt.Errorf("%w: expected Finished", ErrMalformed)
	}
	if len(finBody) == 0 || len(finBody) > 64 {
		return nil, fmt.Errorf("%w: bad Finished length", ErrMalformed)
	}
	a.Finished = slices.Clip([]byte(finBody))
	if !s.Empty() {
		return nil, fmt.Errorf("%w: trailing data after Finished", ErrMalformed)
	}
	return a, nil
}

// Marshal returns the encoding of a: Certificate || CertificateVerify ||
// Finished, or Finished alone for a refusal.
func (a *Authenticator) Marshal() ([]byte, error) {
	var out []byte
	if len(a.Certificates) > 0 {
		cert, err := marshalCertificate(a.Context, a.Certificates)
		if err != nil {
			return nil, err
		}
		out = append(cert, marshalCertificateVerify(a.Scheme, a.Signature)...)
	}
	out = append(out, marshalFinished(a.Finished)...)
	if len(out) > MaxAuthenticatorLen {
		return nil, ErrTooLarge
	}
	return out, nil
}

func parseCertificateBody(body cryptobyte.String, a *Authenticator) error {
	var ctx, list cryptobyte.String
	if !body.ReadUint8LengthPrefixed(&ctx) || !body.ReadUint24LengthPrefixed(&list) || !body.Empty() {
		return fmt.Errorf("%w: bad Certificate", ErrMalformed)
	}
	a.Context = slices.Clip([]byte(ctx))
	for !list.Empty() {
		if len(a.Certificates) == maxChainLen {
			return fmt.Errorf("%w: more than %d certificates", ErrTooLarge, maxChainLen)
		}
		var data cryptobyte.String
		if !list.ReadUint24LengthPrefixed(&data) || len(data) == 0 {
			return fmt.Errorf("%w: bad CertificateEntry", ErrMalformed)
		}
		exts, err := readExtensions(&list)
		if err != nil {
			return err
		}
		a.Certificates = append(a.Certificates, CertificateEntry{Data: slices.Clip([]byte(data)), Extensions: exts})
	}
	return nil
}

func marshalCertificate(context []byte, entries []CertificateEntry) ([]byte, error) {
	if len(context) > MaxContextLen {
		return nil, fmt.Errorf("%w: context longer than %d bytes", ErrMalformed, MaxContextLen)
	}
	if len(entries) > maxChainLen {
		return nil, fmt.Errorf("%w: more than %d certificates", ErrTooLarge, maxChainLen)
	}
	listLen := 0
	for _, e := range entries {
		extLen := extensionsLen(e.Extensions)
		if len(e.Data) > 0xffffff || extLen > 0xffff {
			return nil, fmt.Errorf("%w: certificate entry too large", ErrTooLarge)
		}
		listLen += 3 + len(e.Data) + 2 + extLen
	}
	bodyLen := 1 + len(context) + 3 + listLen
	if bodyLen > 0xffffff {
		return nil, fmt.Errorf("%w: Certificate too large", ErrTooLarge)
	}
	out := make([]byte, 0, 4+bodyLen)
	out = appendUint24(append(out, byte(TypeCertificate)), bodyLen)
	out = append(append(out, byte(len(context))), context...)
	out = appendUint24(out, listLen)
	for _, e := range entries {
		out = append(appendUint24(out, len(e.Data)), e.Data...)
		out = appendExtensions(out, e.Extensions, extensionsLen(e.Extensions))
	}
	return out, nil
}

// appendUint24 appends n as a 24-bit big-endian length.
func appendUint24(b []byte, n int) []byte {
	return append(b, byte(n>>16), byte(n>>8), byte(n))
}

// appendExtensions appends an extensions<0..2^16-1> vector whose content
// is extLen bytes long (extensionsLen).
func appendExtensions(b []byte, exts []Extension, extLen int) []byte {
	b = append(b, byte(extLen>>8), byte(extLen))
	for _, e := range exts {
		b = append(b, byte(e.Type>>8), byte(e.Type), byte(len(e.Data)>>8), byte(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}

func marshalCertificateVerify(scheme tls.SignatureScheme, sig []byte) []byte {
	out := make([]byte, 0, 4+2+2+len(sig))
	n := 4 + len(sig)
	out = append(out, byte(TypeCertificateVerify), byte(n>>16), byte(n>>8), byte(n))
	out = append(out, byte(scheme>>8), byte(scheme), byte(len(sig)>>8), byte(len(sig)))
	return append(out, sig...)
}

func marshalFinished(mac []byte) []byte {
	out := make([]byte, 0, 4+len(mac))
	n := len(mac)
	out = append(out, byte(TypeFinished), byte(n>>16), byte(n>>8), byte(n))
	return append(out, mac...)
}

// readMessage reads one handshake message of type want and returns the whole
// encoded message and its body.
func readMessage(s *cryptobyte.String, want HandshakeType) (msg []byte, body cryptobyte.String, ok bool) {
	start := *s
	var typ uint8
	if !s.ReadUint8(&typ) || HandshakeType(typ) != want || !s.ReadUint24LengthPrefixed(&body) {
		return nil, nil, false
	}
	return start[:len(start)-len(*s)], body, true
}

func extensionsLen(exts []Extension) int {
	n := 0
	for _, e := range exts {
		n += 4 + len(e.Data)
	}
	return n
}

// readExtensions reads an extensions<0..2^16-1> vector, rejecting duplicates
// and more than maxExtensions entries. The data slices alias s.
func readExtensions(s *cryptobyte.String) ([]Extension, error) {
	var list cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&list) {
		return nil, fmt.Errorf("%w: bad extensions", ErrMalformed)
	}
	var exts []Extension
	for !list.Empty() {
		if len(exts) == maxExtensions {
			return nil, fmt.Errorf("%w: more than %d extensions", ErrTooLarge, maxExtensions)
		}
		var typ uint16
		var data cryptobyte.String
		if !list.ReadUint16(&typ) || !list.ReadUint16LengthPrefixed(&data) {
			return nil, fmt.Errorf("%w: bad extension", ErrMalformed)
		}
		for _, e := range exts {
			if e.Type == typ {
				return nil, fmt.Errorf("%w: duplicate extension %d", ErrMalformed, typ)
			}
		}
		exts = append(exts, Extension{Type: typ, Data: slices.Clip([]byte(data))})
	}
	return exts, nil
}

func parseSignatureAlgorithms(data []byte) ([]tls.SignatureScheme, error) {
	s := cryptobyte.String(data)
	var list cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&list) || !s.Empty() || len(list) < 2 || len(list)%2 != 0 {
		return nil, fmt.Errorf("%w: bad signature_algorithms", ErrMalformed)
	}
	out := make([]tls.SignatureScheme, 0, len(list)/2)
	for !list.Empty() {
		var v uint16
		list.ReadUint16(&v)
		out = append(out, tls.SignatureScheme(v))
	}
	return out, nil
}

func marshalSignatureAlgorithms(schemes []tls.SignatureScheme) []byte {
	out := make([]byte, 2, 2+2*len(schemes))
	n := 2 * len(schemes)
	out[0], out[1] = byte(n>>8), byte(n)
	for _, s := range schemes {
		out = append(out, byte(s>>8), byte(s))
	}
	return out
}
