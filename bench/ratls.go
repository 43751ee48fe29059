package main

// The alternative users would pick today: RA-TLS / attested TLS, where the
// Evidence travels in the client's handshake certificate, so every fresh
// attestation costs a new TLS connection. It uses the same software EAT
// attester and verifier (postauth/softeat) as the reattest scenarios, so
// only the mechanism differs.
//
// Binding, as RA-TLS does it: the EAT's eat_nonce is
//
//	SHA-256("reattest-bench RA-TLS v1" || SPKI || uint64be(unix time / 30 s))
//
// and its key hash is SHA-256(SPKI), where SPKI is the certificate's
// (fresh, per-connection) public key. The handshake's CertificateVerify
// proves possession of that key. The server accepts the current and the
// previous 30-second window. This is the cheapest sound RA-TLS variant (no
// round trip to fetch a server nonce) and so the most favourable baseline,
// but it is weaker than reattest: freshness is a time window (up to 60 s;
// Evidence can be made ahead of time and used by whoever holds the key
// within it), there is no server-chosen nonce, the Evidence is bound to the
// key but not to the TLS session's exporter, identity comes from the
// Evidence only (the certificate is self-signed; ClientAuth is
// RequireAnyClientCert) and nothing binds an individual request. Its one
// advantage: the Evidence is checked before the connection carries any
// request. A server-nonce variant would add a round trip.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/reattest/reattest/postauth"
)

// oidEvidence is the certificate extension carrying the CMW-wrapped
// Evidence (an OCTET STRING). It sits under the enterprise number that
// RFC 5612 reserves for documentation (32473): a stand-in for the OID a
// real RA-TLS profile defines, which does not change the cost.
var oidEvidence = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1}

const ratlsWindow = 30 // seconds per freshness window

func ratlsBinder(spki []byte, window int64) []byte {
	h := sha256.New()
	h.Write([]byte("reattest-bench RA-TLS v1"))
	h.Write(spki)
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(window)))
	return h.Sum(nil)
}

// ratlsCertificate makes the client's handshake certificate: a fresh ECDSA
// P-256 key, software EAT Evidence bound to it, and a self-signed
// certificate carrying the Evidence.
func ratlsCertificate(ctx context.Context, att postauth.Attester, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	kh := sha256.Sum256(spki)
	ev, err := att.Attest(ctx, postauth.Challenge{
		Binder: ratlsBinder(spki, now.Unix()/ratlsWindow), KeyHash: kh[:],
		Hash: crypto.SHA256, Role: postauth.RoleClient,
	})
	if err != nil {
		return nil, err
	}
	cmw, err := postauth.EncodeCMW(ev, postauth.CMWCBOR)
	if err != nil {
		return nil, err
	}
	extVal, err := asn1.Marshal(cmw)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "ra-tls agent"},
		NotBefore:       now.Add(-time.Minute),
		NotAfter:        now.Add(time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{{Id: oidEvidence, Value: extVal}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

var errNoEvidence = errors.New("ra-tls: certificate carries no evidence")

// ratlsServer is a TLS 1.3 + HTTP/2 server that demands a client
// certificate and verifies the Evidence in it during the handshake
// (VerifyConnection), before any request.
type ratlsServer struct {
	e   *env
	srv *httptest.Server
}

func newRATLSServer(e *env) *ratlsServer {
	s := &ratlsServer{e: e}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathOpen, okHandler)
	s.srv = httptest.NewUnstartedServer(e.countRequests(mux))
	s.srv.EnableHTTP2 = true
	s.srv.TLS = &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{e.serverCert},
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true, // a resumed handshake would carry no fresh certificate
		VerifyConnection:       s.verifyConnection,
	}
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.Config.ConnState = e.countConns
	s.srv.StartTLS()
	e.tb.Cleanup(s.srv.Close)
	return s
}

func (s *ratlsServer) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) != 1 {
		return errors.New("ra-tls: want exactly one client certificate")
	}
	cert := cs.PeerCertificates[0]
	var cmw []byte
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidEvidence) {
			rest, err := asn1.Unmarshal(ext.Value, &cmw)
			if err != nil || len(rest) != 0 {
				return errors.New("ra-tls: malformed evidence extension")
			}
		}
	}
	if cmw == nil {
		return errNoEvidence
	}
	ev, err := postauth.DecodeCMW(cmw)
	if err != nil {
		return err
	}
	kh := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	w := s.e.clock.now().Unix() / ratlsWindow
	for _, win := range []int64{w, w - 1} {
		_, err = s.e.verifier.Verify(context.Background(), postauth.Challenge{
			Binder: ratlsBinder(cert.RawSubjectPublicKeyInfo, win), KeyHash: kh[:],
			Hash: crypto.SHA256, Role: postauth.RoleClient,
		}, ev)
		if !errors.Is(err, postauth.ErrBinderMismatch) {
			break
		}
	}
	return err
}

// ratlsClient dials a new TLS connection for every request, presenting a
// freshly made attested certificate.
type ratlsClient struct {
	e    *env
	base *http.Transport
	addr string
}

// newRATLSClient returns an RA-TLS client; curves, if set, restricts the
// key exchange (nil: Go's default, X25519MLKEM768 first, as in every other
// scenario).
func (e *env) newRATLSClient(curves []tls.CurveID) *ratlsClient {
	c := &ratlsClient{e: e, addr: e.ratls.srv.Listener.Addr().String()}
	cfg := e.pki.ClientConfig(nil)
	cfg.CurvePreferences = curves
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return ratlsCertificate(cri.Context(), e.attester, e.clock.now())
	}
	c.base = &http.Transport{TLSClientConfig: cfg, Protocols: h2Only()}
	return c
}

// do makes one attested request: TCP connect, full TLS 1.3 handshake with
// the attested client certificate, one HTTP/2 request, close.
func (c *ratlsClient) do(ctx context.Context) error {
	cc, err := c.base.NewClientConn(ctx, "https", c.addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	return post(ctx, cc.RoundTrip, "https://"+c.addr+pathOpen)
}
