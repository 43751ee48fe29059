package postauth_test

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
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

// The client attests: a server (the relying party) asks the client of a
// mutual TLS 1.3 connection for fresh Evidence before a high-impact
// operation, the client answers on the same connection, and the server
// verifies the answer. How the request and the answer travel (HTTP headers,
// capsules) is up to the binding; here they are plain byte slices.
func Example() {
	conn := newExampleConn()
	defer conn.Close()
	ctx := context.Background()

	// Relying party (the TLS server): one RelyingParty with its Evidence
	// verifier, one Requester per connection. The default key trust
	// requires the authenticator key to be the client's TLS certificate
	// key.
	verifier, err := softeat.NewVerifier([]crypto.PublicKey{conn.attestationKey.Public()})
	if err != nil {
		log.Fatal(err)
	}
	rp, err := postauth.NewRelyingParty(verifier, postauth.WithFormats(softeat.MediaType))
	if err != nil {
		log.Fatal(err)
	}
	scs := conn.server.ConnectionState()
	serverCh, err := postauth.NewChannel(&scs)
	if err != nil {
		log.Fatal(err)
	}
	requester, err := rp.NewRequester(serverCh, postauth.RoleClient)
	if err != nil {
		log.Fatal(err)
	}
	req, err := requester.NewRequest(nil) // connection freshness
	if err != nil {
		log.Fatal(err)
	}
	wireRequest, err := req.Marshal() // send to the client
	if err != nil {
		log.Fatal(err)
	}

	// Attester (the TLS client): answer with the key of its TLS certificate
	// and software EAT Evidence bound to this connection and request.
	ccs := conn.client.ConnectionState()
	clientCh, err := postauth.NewChannel(&ccs)
	if err != nil {
		log.Fatal(err)
	}
	got, err := postauth.ParseRequest(wireRequest)
	if err != nil {
		log.Fatal(err)
	}
	id, err := postauth.IdentityFromTLS(&conn.clientCert)
	if err != nil {
		log.Fatal(err)
	}
	attester, err := softeat.NewAttester(conn.attestationKey)
	if err != nil {
		log.Fatal(err)
	}
	responder, err := postauth.NewResponder(id, attester)
	if err != nil {
		log.Fatal(err)
	}
	answer, err := responder.Respond(ctx, clientCh, postauth.RoleClient, got)
	if err != nil {
		log.Fatal(err)
	}

	// Relying party: verify the answer.
	res, err := requester.Verify(ctx, answer, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("attester:", res.Attester())
	fmt.Println("format:", res.Format(), "hardware-backed:", res.HardwareBacked())
	fmt.Println("key trust:", res.KeyTrust())
	fmt.Println("subject:", res.Subject())

	// The context is single use: the same answer again is refused.
	_, err = requester.Verify(ctx, answer, nil)
	fmt.Println("replay:", postauth.CodeOf(err), errors.Is(err, postauth.ErrContextReused))
	// Output:
	// attester: client
	// format: software-eat hardware-backed: false
	// key trust: same-peer
	// subject: CN=agent
	// replay: invalid true
}

// The server attests: an operator's client asks the server for fresh
// Evidence (a ClientCertificateRequest) before it sends a critical command.
func Example_serverAttests() {
	conn := newExampleConn()
	defer conn.Close()
	ctx := context.Background()

	verifier, err := softeat.NewVerifier([]crypto.PublicKey{conn.attestationKey.Public()})
	if err != nil {
		log.Fatal(err)
	}
	rp, err := postauth.NewRelyingParty(verifier)
	if err != nil {
		log.Fatal(err)
	}
	ccs := conn.client.ConnectionState()
	clientCh, err := postauth.NewChannel(&ccs)
	if err != nil {
		log.Fatal(err)
	}
	requester, err := rp.NewRequester(clientCh, postauth.RoleServer)
	if err != nil {
		log.Fatal(err)
	}
	req, err := requester.NewRequest(nil)
	if err != nil {
		log.Fatal(err)
	}

	// The server answers with its TLS certificate's key.
	scs := conn.server.ConnectionState()
	serverCh, err := postauth.NewChannel(&scs)
	if err != nil {
		log.Fatal(err)
	}
	id, err := postauth.IdentityFromTLS(&conn.serverCert)
	if err != nil {
		log.Fatal(err)
	}
	attester, err := softeat.NewAttester(conn.attestationKey)
	if err != nil {
		log.Fatal(err)
	}
	responder, err := postauth.NewResponder(id, attester)
	if err != nil {
		log.Fatal(err)
	}
	answer, err := responder.Respond(ctx, serverCh, postauth.RoleServer, req)
	if err != nil {
		log.Fatal(err)
	}

	res, err := requester.Verify(ctx, answer, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Attester(), res.KeyTrust(), res.Subject())
	// Output: server same-peer CN=localhost
}

// Operation freshness: the context ends with a digest of the one operation
// the answer authorises, so an answer made for one operation does not
// verify for another (an operation swap).
func Example_operation() {
	conn := newExampleConn()
	defer conn.Close()
	ctx := context.Background()

	verifier, _ := softeat.NewVerifier([]crypto.PublicKey{conn.attestationKey.Public()})
	rp, _ := postauth.NewRelyingParty(verifier)
	scs := conn.server.ConnectionState()
	serverCh, _ := postauth.NewChannel(&scs)
	requester, _ := rp.NewRequester(serverCh, postauth.RoleClient)
	ccs := conn.client.ConnectionState()
	clientCh, _ := postauth.NewChannel(&ccs)
	id, _ := postauth.IdentityFromTLS(&conn.clientCert)
	attester, _ := softeat.NewAttester(conn.attestationKey)
	responder, _ := postauth.NewResponder(id, attester)

	// The binding is opaque to postauth; the HTTP binding defines it.
	binding := func(op string) []byte {
		sum := sha256.Sum256([]byte(op))
		return sum[:16]
	}

	req, _ := requester.NewRequest(binding("POST /pay amount=1"))
	answer, err := responder.Respond(ctx, clientCh, postauth.RoleClient, req)
	if err != nil {
		log.Fatal(err)
	}
	// The attacker presents the answer with another operation.
	_, err = requester.Verify(ctx, answer, binding("POST /pay amount=1000"))
	var perr *postauth.Error
	if errors.As(err, &perr) {
		fmt.Println("swapped:", perr.Code, perr.Reason)
	}

	req, _ = requester.NewRequest(binding("POST /pay amount=1"))
	answer, _ = responder.Respond(ctx, clientCh, postauth.RoleClient, req)
	if _, err := requester.Verify(ctx, answer, binding("POST /pay amount=1")); err == nil {
		fmt.Println("matching operation: verified")
	}
	// Output:
	// swapped: invalid operation_mismatch
	// matching operation: verified
}

// A peer that will not attest answers with an empty authenticator; the
// relying party sees CodeRequired, not a pass.
func Example_refusal() {
	conn := newExampleConn()
	defer conn.Close()

	verifier, _ := softeat.NewVerifier([]crypto.PublicKey{conn.attestationKey.Public()})
	rp, _ := postauth.NewRelyingParty(verifier)
	scs := conn.server.ConnectionState()
	serverCh, _ := postauth.NewChannel(&scs)
	requester, _ := rp.NewRequester(serverCh, postauth.RoleClient)
	req, _ := requester.NewRequest(nil)

	ccs := conn.client.ConnectionState()
	clientCh, _ := postauth.NewChannel(&ccs)
	refusal, err := clientCh.Refuse(postauth.RoleClient, req)
	if err != nil {
		log.Fatal(err)
	}
	_, err = requester.Verify(context.Background(), refusal, nil)
	fmt.Println(len(refusal), postauth.CodeOf(err), errors.Is(err, postauth.ErrRefused))
	// Output: 36 required true
}

// The relying party checks the agent posture that fresh Evidence carries
// against a posture policy, after verification: AppraisePosture judges the
// posture the relying party replayed (Result.Posture) and returns an *Error
// that the HTTP middleware maps to a 403 naming the violations.
func ExampleAppraisePosture() {
	conn := newExampleConn()
	defer conn.Close()
	ctx := context.Background()

	// The agent records its posture changes in a Tracker and attests with it.
	tracker, err := posture.NewTracker()
	if err != nil {
		log.Fatal(err)
	}
	_ = tracker.EnableTool(ctx, posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))})
	attester, _ := softeat.NewAttester(conn.attestationKey, softeat.WithPosture(tracker))
	id, _ := postauth.IdentityFromTLS(&conn.clientCert)
	responder, _ := postauth.NewResponder(id, attester)

	verifier, _ := softeat.NewVerifier([]crypto.PublicKey{conn.attestationKey.Public()}, softeat.RequirePosture())
	rp, _ := postauth.NewRelyingParty(verifier)
	scs := conn.server.ConnectionState()
	serverCh, _ := postauth.NewChannel(&scs)
	requester, _ := rp.NewRequester(serverCh, postauth.RoleClient)
	ccs := conn.client.ConnectionState()
	clientCh, _ := postauth.NewChannel(&ccs)

	policy, err := posture.ParsePolicy([]byte("tools:\n  deny: [shell]\n"), "yaml")
	if err != nil {
		log.Fatal(err)
	}
	attest := func() *postauth.Result {
		req, _ := requester.NewRequest(nil)
		answer, err := responder.Respond(ctx, clientCh, postauth.RoleClient, req)
		if err != nil {
			log.Fatal(err)
		}
		res, err := requester.Verify(ctx, answer, nil)
		if err != nil {
			log.Fatal(err)
		}
		return res
	}

	err = postauth.AppraisePosture(ctx, policy, attest())
	var perr *postauth.Error
	if errors.As(err, &perr) {
		fmt.Println(perr.Code, perr.Reason, perr.Violations)
	}
	// The agent disables the tool; fresh Evidence carries the new posture.
	_ = tracker.DisableTool(ctx, "shell")
	fmt.Println("after the change:", postauth.AppraisePosture(ctx, policy, attest()))
	// Output:
	// policy_denied posture_denied [tool:shell forbidden]
	// after the change: <nil>
}

// exampleConn is a mutual TLS 1.3 connection on loopback between a client
// with a certificate and a server, both issued by a throwaway CA, plus a
// software attestation key.
type exampleConn struct {
	client, server         *tls.Conn
	clientCert, serverCert tls.Certificate
	attestationKey         *ecdsa.PrivateKey
}

func (c *exampleConn) Close() {
	c.client.Close()
	c.server.Close()
}

func newExampleConn() *exampleConn {
	caKey := mustKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "example CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		log.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	issue := func(name string, usage x509.ExtKeyUsage) tls.Certificate {
		key := mustKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      pkix.Name{CommonName: name},
			DNSNames:     []string{name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			log.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	c := &exampleConn{
		clientCert:     issue("agent", x509.ExtKeyUsageClientAuth),
		serverCert:     issue("localhost", x509.ExtKeyUsageServerAuth),
		attestationKey: mustKey(),
	}
	serverConf := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{c.serverCert},
		ClientCAs:              pool,
		ClientAuth:             tls.RequireAndVerifyClientCert,
		SessionTicketsDisabled: true, // attested connections do not resume
	}
	clientConf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		ServerName:   "localhost",
		Certificates: []tls.Certificate{c.clientCert},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err == nil {
			c.server = tls.Server(raw, serverConf)
			err = c.server.Handshake()
		}
		accepted <- err
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	c.client = tls.Client(raw, clientConf)
	if err := c.client.Handshake(); err != nil {
		log.Fatal(err)
	}
	if err := <-accepted; err != nil {
		log.Fatal(err)
	}
	return c
}

func mustKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	return k
}
