package postauth_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
)

// env is one real mutual TLS 1.3 connection on loopback with everything
// both ends need to attest and to verify.
type env struct {
	t          testing.TB
	ep         *postauthtest.Endpoints
	clientCh   *postauth.Channel // the client's view
	serverCh   *postauth.Channel // the server's view
	clientID   *postauth.Identity
	serverID   *postauth.Identity
	attKey     *postauthtest.SoftwareKey
	attester   *softeat.Attester
	verifier   *softeat.Verifier
	rp         *postauth.RelyingParty // software EAT only, default options
	serverReqr *postauth.Requester    // server asks the client
	clientReqr *postauth.Requester    // client asks the server
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ep := postauthtest.MutualTLS(t)
	return envFor(t, ep)
}

func envFor(t testing.TB, ep *postauthtest.Endpoints) *env {
	t.Helper()
	return envWith(t, ep, postauthtest.NewSoftwareKey(t))
}

// envWith is envFor with the given attestation key: envs made with the
// same key trust the same attester.
func envWith(t testing.TB, ep *postauthtest.Endpoints, attKey *postauthtest.SoftwareKey) *env {
	t.Helper()
	e := &env{t: t, ep: ep, attKey: attKey}
	var err error
	ccs, scs := ep.Client.ConnectionState(), ep.Server.ConnectionState()
	if e.clientCh, err = postauth.NewChannel(&ccs); err != nil {
		t.Fatal(err)
	}
	if e.serverCh, err = postauth.NewChannel(&scs); err != nil {
		t.Fatal(err)
	}
	if e.clientID, err = postauth.IdentityFromTLS(&ep.ClientCert); err != nil {
		t.Fatal(err)
	}
	if e.serverID, err = postauth.IdentityFromTLS(&ep.ServerCert); err != nil {
		t.Fatal(err)
	}
	e.attester = attKey.Attester(t)
	e.verifier = attKey.Verifier(t)
	e.rp = e.relyingParty()
	if e.serverReqr, err = e.rp.NewRequester(e.serverCh, postauth.RoleClient); err != nil {
		t.Fatal(err)
	}
	if e.clientReqr, err = e.rp.NewRequester(e.clientCh, postauth.RoleServer); err != nil {
		t.Fatal(err)
	}
	return e
}

// relyingParty returns a RelyingParty with e's verifier that accepts
// software EAT, with opts applied after that (a later option wins).
func (e *env) relyingParty(opts ...postauth.Option) *postauth.RelyingParty {
	e.t.Helper()
	return newRelyingParty(e.t, e.verifier, append([]postauth.Option{postauth.WithFormats(softeat.MediaType)}, opts...)...)
}

func newRelyingParty(t testing.TB, v postauth.Verifier, opts ...postauth.Option) *postauth.RelyingParty {
	t.Helper()
	rp, err := postauth.NewRelyingParty(v, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

// respond answers req on ch as role, signing with id and attesting with
// att (postauth.Responder).
func respond(t testing.TB, ch *postauth.Channel, role postauth.Role, req *postauth.Request, id *postauth.Identity, att postauth.Attester, opts ...postauth.Option) ([]byte, error) {
	t.Helper()
	r, err := postauth.NewResponder(id, att, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r.Respond(context.Background(), ch, role, req)
}

// clientAnswer makes the client answer req with attested Evidence.
func (e *env) clientAnswer(req *postauth.Request) []byte {
	e.t.Helper()
	raw, err := respond(e.t, e.clientCh, postauth.RoleClient, req, e.clientID, e.attester)
	if err != nil {
		e.t.Fatalf("Respond: %v", err)
	}
	return raw
}

// forger builds authenticators from scratch, independently of the package
// under test, straight from the RFC 9261 text and the TLS exporter. Tests
// use it to produce messages the package would refuse to create.
// forger builds authenticators as an attacker holding the connection can
// (postauthtest.Forge): any certificates and extensions, a valid Finished.
type forger struct{ cs tls.ConnectionState }

func newForger(t *testing.T, conn *tls.Conn) *forger {
	t.Helper()
	return &forger{cs: conn.ConnectionState()}
}

type forgedEntry struct {
	der  []byte
	exts []postauth.Extension
}

// build returns Certificate || CertificateVerify || Finished for request
// bytes reqBytes, sent with the labels of role, signed by signer (ECDSA
// P-256 with SHA-256).
func (f *forger) build(t *testing.T, role postauth.Role, reqBytes, context []byte, entries []forgedEntry, signer crypto.Signer) []byte {
	t.Helper()
	es := make([]postauth.CertificateEntry, len(entries))
	for i, e := range entries {
		es[i] = postauth.CertificateEntry{Data: e.der, Extensions: e.exts}
	}
	out, err := postauthtest.Forge(&f.cs, postauthtest.Forgery{Role: role, Request: reqBytes, Context: context,
		Entries: es, Scheme: tls.ECDSAWithP256AndSHA256, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// side is one direction of attestation on an env: who attests (role), the
// relying party's Requester and channel, and the attester's channel,
// identity and connection.
type side struct {
	role postauth.Role
	reqr *postauth.Requester
	rpCh *postauth.Channel
	ch   *postauth.Channel
	id   *postauth.Identity
	conn *tls.Conn
	cert tls.Certificate
}

func (e *env) side(role postauth.Role) side {
	if role == postauth.RoleClient {
		return side{role, e.serverReqr, e.serverCh, e.clientCh, e.clientID, e.ep.Client, e.ep.ClientCert}
	}
	return side{role, e.clientReqr, e.clientCh, e.serverCh, e.serverID, e.ep.Server, e.ep.ServerCert}
}

// answer makes the attester of s answer req with attested Evidence.
func (e *env) answer(s side, req *postauth.Request) []byte {
	e.t.Helper()
	raw, err := respond(e.t, s.ch, s.role, req, s.id, e.attester)
	if err != nil {
		e.t.Fatalf("Respond: %v", err)
	}
	return raw
}

// challenge returns the Challenge the attester of s must bind Evidence to.
func (s side) challenge(t testing.TB, req *postauth.Request) postauth.Challenge {
	t.Helper()
	b, err := s.ch.Binder(s.id.SPKI(), req.Context)
	if err != nil {
		t.Fatal(err)
	}
	return postauth.Challenge{Binder: b, KeyHash: s.ch.KeyHash(s.id.SPKI()), Hash: s.ch.Hash(), Context: req.Context, Role: s.role}
}

// eachRole runs f for the client attesting to the server and the server
// attesting to the client, each on a fresh connection.
func eachRole(t *testing.T, f func(t *testing.T, e *env, s side)) {
	for _, role := range []postauth.Role{postauth.RoleClient, postauth.RoleServer} {
		t.Run(role.String()+"-attests", func(t *testing.T) {
			e := newEnv(t)
			f(t, e, e.side(role))
		})
	}
}
