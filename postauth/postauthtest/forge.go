package postauthtest

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"

	"golang.org/x/crypto/cryptobyte"

	"github.com/reattest/reattest/postauth"
)

// Forgery describes an Exported Authenticator built byte by byte, as a peer
// that holds the TLS connection (and so its exporter) can build one: any
// certificates, extensions and signature scheme, any signature bytes, and a
// valid Finished MAC. Tests use it to play the attacker; it depends on
// nothing of package postauth's authenticator code (an independent
// implementation of RFC 9261 section 5).
type Forgery struct {
	// Role is the sender's role (it selects the exporter labels).
	Role postauth.Role
	// Request is the encoded request being answered; Context the
	// certificate_request_context to put in the Certificate message.
	Request []byte
	Context []byte
	// Entries are the CertificateEntries, end-entity first.
	Entries []postauth.CertificateEntry
	// Scheme is the CertificateVerify's signature scheme.
	Scheme tls.SignatureScheme
	// Signature, if not nil, is sent as is (a junk signature). Otherwise
	// Signer signs the real CertificateVerify input with Scheme.
	Signature []byte
	Signer    crypto.Signer
}

// Forge builds f on the connection whose state is cs.
func Forge(cs *tls.ConnectionState, f Forgery) ([]byte, error) {
	h := crypto.SHA256
	if cs.CipherSuite == tls.TLS_AES_256_GCM_SHA384 {
		h = crypto.SHA384
	}
	label := "client"
	if f.Role == postauth.RoleServer {
		label = "server"
	}
	hc, err := cs.ExportKeyingMaterial("EXPORTER-"+label+" authenticator handshake context", nil, h.Size())
	if err != nil {
		return nil, err
	}
	fk, err := cs.ExportKeyingMaterial("EXPORTER-"+label+" authenticator finished key", nil, h.Size())
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddUint8(11)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(f.Context) })
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range f.Entries {
				b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Data) })
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					for _, x := range e.Extensions {
						b.AddUint16(x.Type)
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(x.Data) })
					}
				})
			}
		})
	})
	cert, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	th := h.New()
	th.Write(hc)
	th.Write(f.Request)
	th.Write(cert)
	sig := f.Signature
	if sig == nil {
		if f.Signer == nil {
			return nil, errors.New("postauthtest: a Forgery needs a Signature or a Signer")
		}
		msg := make([]byte, 0, 64+23+h.Size())
		for range 64 {
			msg = append(msg, 0x20)
		}
		msg = append(append(msg, "Exported Authenticator\x00"...), th.Sum(nil)...)
		if sig, err = signScheme(f.Signer, f.Scheme, msg); err != nil {
			return nil, err
		}
	}
	var cv cryptobyte.Builder
	cv.AddUint8(15)
	cv.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(uint16(f.Scheme))
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sig) })
	})
	cvMsg, err := cv.Bytes()
	if err != nil {
		return nil, err
	}
	th.Write(cvMsg)
	m := hmac.New(h.New, fk)
	m.Write(th.Sum(nil))
	mac := m.Sum(nil)
	out := append(append(cert, cvMsg...), 20, 0, 0, byte(len(mac)))
	return append(out, mac...), nil
}

// signScheme signs msg with scheme's hash and padding (RFC 8446 4.2.3).
func signScheme(s crypto.Signer, scheme tls.SignatureScheme, msg []byte) ([]byte, error) {
	var h crypto.Hash
	switch scheme {
	case tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256:
		h = crypto.SHA256
	case tls.ECDSAWithP384AndSHA384, tls.PSSWithSHA384:
		h = crypto.SHA384
	case tls.PSSWithSHA512:
		h = crypto.SHA512
	case tls.Ed25519:
		return s.Sign(rand.Reader, msg, crypto.Hash(0))
	default:
		return nil, errors.New("postauthtest: unsupported scheme")
	}
	d := h.New()
	d.Write(msg)
	var opts crypto.SignerOpts = h
	if scheme == tls.PSSWithSHA256 || scheme == tls.PSSWithSHA384 || scheme == tls.PSSWithSHA512 {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
	}
	return s.Sign(rand.Reader, d.Sum(nil), opts)
}
