package postauth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

func TestParseRequestDoesNotAlias(t *testing.T) {
	e := newEnv(t)
	req, _ := e.serverReqr.NewTemplate()
	b, _ := req.Marshal()
	in := bytes.Clone(b)
	got, err := postauth.ParseRequest(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] ^= 0xff
	}
	// Completing a template appends to the context: that must not write
	// over the extensions.
	got.Context = append(got.Context, opDigest("op")...)
	if _, err := got.SignatureSchemes(); err != nil {
		t.Fatalf("extensions damaged: %v", err)
	}
	again := &postauth.Request{Type: got.Type, Context: got.Context[:postauth.NonceLen], Extensions: got.Extensions}
	out, _ := again.Marshal()
	if !bytes.Equal(out, b) {
		t.Fatal("parsed request changed with its input")
	}
}

// A client certificate that TLS did not verify (RequireAnyClientCert) is no
// identity: same-peer key trust must not rest on it.
func TestUnverifiedPeerCertificateIsNoIdentity(t *testing.T) {
	p := postauthtest.New(t)
	stranger := postauthtest.New(t).Issue(t, "agent") // another, untrusted CA
	sc := p.ServerConfig(p.Issue(t, "localhost", postauthtest.ServerAuth()))
	sc.ClientAuth = tls.RequireAnyClientCert
	c, s := postauthtest.Pair(t, p.ClientConfig(&stranger), sc)
	e := envFor(t, &postauthtest.Endpoints{Client: c, Server: s, ClientCert: stranger, ServerCert: p.Issue(t, "localhost", postauthtest.ServerAuth()), PKI: p})
	if e.serverCh.PeerSPKI() != nil {
		t.Fatal("unverified client certificate recorded as the peer")
	}
	req, _ := e.serverReqr.NewRequest(nil)
	_, err := e.serverReqr.Verify(context.Background(), e.clientAnswer(req), nil)
	postauthtest.WantErrorIs(t, err, postauth.ErrNoKeyTrust, postauth.CodeInvalid, postauth.ReasonKeyNotTrusted)
}

func TestEmptyBindingRefused(t *testing.T) {
	e := newEnv(t)
	if _, err := e.serverReqr.NewRequest([]byte{}); err == nil {
		t.Fatal("an empty binding would look like a template")
	}
}

func TestTemplateRefusal(t *testing.T) {
	e := newEnv(t)
	tmpl, _ := e.serverReqr.NewTemplate()
	raw, err := e.clientCh.Refuse(postauth.RoleClient, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.serverReqr.Verify(context.Background(), raw, opDigest("op"))
	postauthtest.WantErrorIs(t, err, postauth.ErrRefused, postauth.CodeRequired, postauth.ReasonAttestationRefused)
}

// Under same-peer key trust only the key is compared, so the name a Result
// reports must be the TLS-verified one, not the authenticator certificate's.
func TestSamePeerSubjectFromTLS(t *testing.T) {
	e := newEnv(t)
	forgedName, err := postauth.SelfSignedIdentity(e.ep.ClientCert.PrivateKey.(crypto.Signer), "payments-admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := e.serverReqr.NewRequest(nil)
	raw, err := respond(t, e.clientCh, postauth.RoleClient, req, forgedName, e.attester)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.serverReqr.Verify(context.Background(), raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.KeyTrust() != postauth.KeyTrustSamePeer || res.Subject() != "CN=agent" {
		t.Fatalf("subject %q (%v), want the TLS peer's CN=agent", res.Subject(), res.KeyTrust())
	}
}

func TestCodeOfTypedNil(t *testing.T) {
	var pe *postauth.Error
	var err error = pe
	if got := postauth.CodeOf(err); got != postauth.CodeUnknown {
		t.Fatalf("CodeOf(typed nil) = %v", got)
	}
	_ = err.Error()
}

// A media type is type/subtype: a bare token is not one, although
// mime.ParseMediaType accepts it.
func TestBareTokenIsNoMediaType(t *testing.T) {
	if _, err := postauth.EncodeCMW(postauth.Evidence{Type: "nope", Value: []byte{1}}, postauth.CMWCBOR); err == nil {
		t.Fatal("a bare token accepted as a media type")
	}
	if got := postauth.BaseMediaType("nope"); got != "" {
		t.Fatalf("BaseMediaType(nope) = %q", got)
	}
	if got := postauth.BaseMediaType("Application/EAT+CWT; x=1"); got != "application/eat+cwt" {
		t.Fatalf("BaseMediaType = %q", got)
	}
}
