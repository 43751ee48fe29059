package postauth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
)

func TestRoundTripClientAttests(t *testing.T) {
	e := newEnv(t)
	req, err := e.serverReqr.NewRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := e.clientAnswer(req)
	res, err := e.serverReqr.Verify(context.Background(), raw, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.Attester() != postauth.RoleClient || res.Format() != softeat.Format || res.HardwareBacked() {
		t.Errorf("unexpected result: attester %v format %q hw %v", res.Attester(), res.Format(), res.HardwareBacked())
	}
	if res.KeyTrust() != postauth.KeyTrustSamePeer {
		t.Errorf("key trust = %v, want same-peer (mTLS)", res.KeyTrust())
	}
	if !bytes.Equal(res.MachineID(), e.attester.UEID()) {
		t.Errorf("machine id = %x, want %x", res.MachineID(), e.attester.UEID())
	}
	if !bytes.Equal(res.KeyHash(), e.serverCh.KeyHash(e.clientID.SPKI())) {
		t.Error("key hash is not the client key's")
	}
	if time.Since(res.AttestedAt()) > time.Minute {
		t.Errorf("attested at %v", res.AttestedAt())
	}
}

func TestRoundTripServerAttests(t *testing.T) {
	e := newEnv(t)
	req, err := e.clientReqr.NewRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	if req.Type != postauth.TypeClientCertificateRequest {
		t.Fatalf("client requester issued type %d", req.Type)
	}
	// The server answers with its TLS certificate's key.
	raw, err := respond(t, e.serverCh, postauth.RoleServer, req, e.serverID, e.attester)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.clientReqr.Verify(context.Background(), raw, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.Attester() != postauth.RoleServer || res.KeyTrust() != postauth.KeyTrustSamePeer {
		t.Errorf("attester %v key trust %v", res.Attester(), res.KeyTrust())
	}
}

func TestRoundTripJSONCMW(t *testing.T) {
	e := newEnv(t)
	req, _ := e.serverReqr.NewRequest(nil)
	raw, err := respond(t, e.clientCh, postauth.RoleClient, req, e.clientID, e.attester, postauth.WithCMWEncoding(postauth.CMWJSON))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.serverReqr.Verify(context.Background(), raw, nil); err != nil {
		t.Fatalf("Verify with a JSON CMW: %v", err)
	}
}

// Relay: a relaying attacker M holds connection B to the server and makes
// the victim agent answer B's challenge on its own connection A to M. The
// exporter differs per connection, so the answer fails on B.
func TestAttackRelay(t *testing.T) {
	for _, role := range []postauth.Role{postauth.RoleClient, postauth.RoleServer} {
		t.Run(role.String()+"-attests", func(t *testing.T) {
			p := postauthtest.New(t)
			sc := p.Issue(t, "localhost", postauthtest.ServerAuth())
			cc := p.Issue(t, "agent")
			attKey := postauthtest.NewSoftwareKey(t) // same trusted attester on both
			a := envWith(t, pairEndpoints(t, p, sc, cc), attKey)
			b := envWith(t, pairEndpoints(t, p, sc, cc), attKey)
			sa, sb := a.side(role), b.side(role)

			req, err := sb.reqr.NewRequest(nil)
			if err != nil {
				t.Fatal(err)
			}
			onA := a.answer(sa, req) // made with connection A's exporter
			_, err = sb.reqr.Verify(context.Background(), onA, nil)
			postauthtest.WantErrorIs(t, err, postauth.ErrBadFinished, postauth.CodeInvalid, postauth.ReasonBadFinished)

			// The same holds at layer 1 alone, for a request both sides know.
			onA = a.answer(sa, req)
			if _, err := sb.rpCh.Validate(role, req, onA); !errors.Is(err, postauth.ErrBadFinished) {
				t.Fatalf("layer-1 relay: want ErrBadFinished, got %v", err)
			}
		})
	}
}

func pairEndpoints(t *testing.T, p *postauthtest.PKI, sc, cc tls.Certificate) *postauthtest.Endpoints {
	c, s := postauthtest.Pair(t, p.ClientConfig(&cc), p.ServerConfig(sc))
	return &postauthtest.Endpoints{Client: c, Server: s, ClientCert: cc, ServerCert: sc, PKI: p}
}

func TestAttackReplay(t *testing.T) {
	eachRole(t, func(t *testing.T, e *env, s side) {
		req, _ := s.reqr.NewRequest(nil)
		raw := e.answer(s, req)
		if _, err := s.reqr.Verify(context.Background(), raw, nil); err != nil {
			t.Fatal(err)
		}
		_, err := s.reqr.Verify(context.Background(), raw, nil)
		postauthtest.WantErrorIs(t, err, postauth.ErrContextReused, postauth.CodeInvalid, postauth.ReasonContextReused)
	})
}

// A failed answer consumes its context too: no second try with the same one.
func TestContextConsumedByFailure(t *testing.T) {
	eachRole(t, func(t *testing.T, e *env, s side) {
		req, _ := s.reqr.NewRequest(nil)
		raw := e.answer(s, req)
		bad := bytes.Clone(raw)
		bad[len(bad)-1] ^= 1
		if _, err := s.reqr.Verify(context.Background(), bad, nil); err == nil {
			t.Fatal("tampered answer accepted")
		}
		_, err := s.reqr.Verify(context.Background(), raw, nil)
		postauthtest.WantErrorIs(t, err, postauth.ErrContextReused, postauth.CodeInvalid, postauth.ReasonContextReused)
	})
}

// Reflection: a malicious server turns the client's own request for server
// attestation into a CertificateRequest, gets the client to answer it, and
// sends the answer back as its own. Role-specific exporter labels and the
// request type in the transcript make it fail.
func TestAttackReflection(t *testing.T) {
	e := newEnv(t)
	clientAsks, _ := e.clientReqr.NewRequest(nil)
	reflected := &postauth.Request{Type: postauth.TypeCertificateRequest, Context: clientAsks.Context, Extensions: clientAsks.Extensions}
	clientsOwn := e.clientAnswer(reflected)
	_, err := e.clientReqr.Verify(context.Background(), clientsOwn, nil)
	postauthtest.WantErrorIs(t, err, postauth.ErrBadFinished, postauth.CodeInvalid, postauth.ReasonBadFinished)

	// And an endpoint refuses to answer a request of the other role's type.
	_, err = respond(t, e.serverCh, postauth.RoleServer, reflected, e.serverID, e.attester)
	if !errors.Is(err, postauth.ErrWrongRequestType) {
		t.Fatalf("server answered a CertificateRequest: %v", err)
	}
}

func TestAttackTamper(t *testing.T) {
	// Offsets in Certificate || CertificateVerify || Finished.
	certLen := func(raw []byte) int { return 4 + int(raw[1])<<16 | int(raw[2])<<8 | int(raw[3]) }
	cases := []struct {
		name   string
		mutate func(raw []byte) []byte
		want   error
		reason postauth.Reason
	}{
		{"context-nonce", func(r []byte) []byte { r[5] ^= 1; return r }, postauth.ErrUnknownContext, postauth.ReasonUnknownContext},
		{"context-tail", func(r []byte) []byte { r[4+32] ^= 1; return r }, postauth.ErrContextMismatch, postauth.ReasonContextMismatch},
		{"certificate", func(r []byte) []byte { r[4+1+32+3+3+40] ^= 1; return r }, postauth.ErrBadFinished, postauth.ReasonBadFinished},
		{"extension", func(r []byte) []byte { r[certLen(r)-10] ^= 1; return r }, postauth.ErrBadFinished, postauth.ReasonBadFinished},
		{"signature", func(r []byte) []byte { r[certLen(r)+12] ^= 1; return r }, postauth.ErrBadFinished, postauth.ReasonBadFinished},
		{"finished", func(r []byte) []byte { r[len(r)-1] ^= 1; return r }, postauth.ErrBadFinished, postauth.ReasonBadFinished},
		{"truncated", func(r []byte) []byte { return r[:len(r)-1] }, postauth.ErrMalformed, postauth.ReasonMalformed},
		{"trailing", func(r []byte) []byte { return append(r, 0) }, postauth.ErrMalformed, postauth.ReasonMalformed},
	}
	eachRole(t, func(t *testing.T, e *env, s side) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				req, _ := s.reqr.NewRequest(nil)
				raw := tc.mutate(e.answer(s, req))
				_, err := s.reqr.Verify(context.Background(), raw, nil)
				postauthtest.WantErrorIs(t, err, tc.want, postauth.CodeInvalid, tc.reason)
			})
		}
	})
}

// A peer that holds the connection (and so can compute Finished) but not the
// certificate's private key cannot pass: the CertificateVerify check fails.
func TestAttackForgedSignature(t *testing.T) {
	eachRole(t, func(t *testing.T, e *env, s side) {
		req, _ := s.reqr.NewRequest(nil)
		reqBytes, _ := req.Marshal()
		ev, err := e.attester.Attest(context.Background(), s.challenge(t, req))
		if err != nil {
			t.Fatal(err)
		}
		other := postauthtest.NewKey(t) // not the certificate's key
		raw := newForger(t, s.conn).build(t, s.role, reqBytes, req.Context,
			[]forgedEntry{{der: s.cert.Certificate[0], exts: []postauth.Extension{cmwExt(t, ev)}}}, other)
		_, err = s.reqr.Verify(context.Background(), raw, nil)
		postauthtest.WantErrorIs(t, err, postauth.ErrBadSignature, postauth.CodeInvalid, postauth.ReasonBadSignature)
	})
}

func TestForgerAgreesWithPackage(t *testing.T) {
	// The independent forger, given the right key, produces an authenticator
	// the package accepts: the tests above fail for the reason they claim.
	eachRole(t, func(t *testing.T, e *env, s side) {
		req, _ := s.reqr.NewRequest(nil)
		reqBytes, _ := req.Marshal()
		ev, err := e.attester.Attest(context.Background(), s.challenge(t, req))
		if err != nil {
			t.Fatal(err)
		}
		raw := newForger(t, s.conn).build(t, s.role, reqBytes, req.Context,
			[]forgedEntry{{der: s.cert.Certificate[0], exts: []postauth.Extension{cmwExt(t, ev)}}}, s.cert.PrivateKey.(crypto.Signer))
		if _, err := s.reqr.Verify(context.Background(), raw, nil); err != nil {
			t.Fatalf("forged-with-the-right-key authenticator rejected: %v", err)
		}
	})
}

func mustBinder(t *testing.T, ch *postauth.Channel, spki, context []byte) []byte {
	t.Helper()
	b, err := ch.Binder(spki, context)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cmwExt(t *testing.T, ev postauth.Evidence) postauth.Extension {
	t.Helper()
	rec, err := postauth.EncodeCMW(ev, postauth.CMWCBOR)
	if err != nil {
		t.Fatal(err)
	}
	return postauth.Extension{Type: postauth.DefaultAttestationExtension, Data: append([]byte{byte(len(rec) >> 8), byte(len(rec))}, rec...)}
}

// lyingAttester signs Evidence for a challenge other than the one asked.
type lyingAttester struct {
	inner  postauth.Attester
	mutate func(*postauth.Challenge)
}

func (l lyingAttester) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	l.mutate(&ch)
	return l.inner.Attest(ctx, ch)
}

func TestAttackEvidence(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*postauth.Challenge)
		want   error
		reason postauth.Reason
	}{
		// Evidence made for another request (a stale or foreign binder).
		{"binder", func(c *postauth.Challenge) { c.Binder = bytes.Clone(c.Binder); c.Binder[0] ^= 1 }, postauth.ErrBinderMismatch, postauth.ReasonBinderMismatch},
		// Key substitution: the attester vouches for another key.
		{"key-hash", func(c *postauth.Challenge) { c.KeyHash = bytes.Clone(c.KeyHash); c.KeyHash[0] ^= 1 }, postauth.ErrKeyHashMismatch, postauth.ReasonKeyHashMismatch},
	}
	eachRole(t, func(t *testing.T, e *env, s side) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				req, _ := s.reqr.NewRequest(nil)
				raw, err := respond(t, s.ch, s.role, req, s.id, lyingAttester{e.attester, tc.mutate})
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.reqr.Verify(context.Background(), raw, nil)
				postauthtest.WantErrorIs(t, err, tc.want, postauth.CodeInvalid, tc.reason)
			})
		}
	})
}

// A verifier that forgets to compare the nonce and key hash still cannot let
// unbound Evidence through: Verify compares what it reports.
type carelessVerifier struct{ nonce, keyHash []byte }

func (c carelessVerifier) Verify(context.Context, postauth.Challenge, postauth.Evidence) (*postauth.Appraisal, error) {
	return &postauth.Appraisal{Format: "careless", Nonce: c.nonce, KeyHash: c.keyHash}, nil
}

func TestCarelessVerifierCannotPass(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		v      carelessVerifier
		want   error
		reason postauth.Reason
	}{
		{"nonce", carelessVerifier{nonce: make([]byte, 32), keyHash: e.serverCh.KeyHash(e.clientID.SPKI())}, postauth.ErrBinderMismatch, postauth.ReasonBinderMismatch},
		{"key-hash", carelessVerifier{keyHash: make([]byte, 32)}, postauth.ErrKeyHashMismatch, postauth.ReasonKeyHashMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := e.serverReqr.NewRequest(nil)
			if tc.want == postauth.ErrKeyHashMismatch {
				tc.v.nonce = mustBinder(t, e.serverCh, e.clientID.SPKI(), req.Context)
			}
			_, err := e.serverReqr.VerifyWith(context.Background(), newRelyingParty(t, tc.v), e.clientAnswer(req), nil)
			postauthtest.WantErrorIs(t, err, tc.want, postauth.CodeInvalid, tc.reason)
		})
	}
}

func TestAttackEvidenceSignature(t *testing.T) {
	e := newEnv(t)
	// Evidence signed by an attestation key the verifier does not trust.
	rogue := postauthtest.NewSoftwareKey(t).Attester(t)
	req, _ := e.serverReqr.NewRequest(nil)
	raw, err := respond(t, e.clientCh, postauth.RoleClient, req, e.clientID, rogue)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.serverReqr.Verify(context.Background(), raw, nil)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUntrustedAttester)
}

func TestAttackDiversion(t *testing.T) {
	e := newEnv(t)
	// The relying party expects one machine; a genuine attester elsewhere
	// answers.
	v := e.attKey.Verifier(t, softeat.WithMachineIDs([]byte{0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}))
	req, _ := e.serverReqr.NewRequest(nil)
	_, err := e.serverReqr.VerifyWith(context.Background(), newRelyingParty(t, v), e.clientAnswer(req), nil)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonUnknownMachine)
	// The machine it expects passes.
	v = e.attKey.Verifier(t, softeat.WithMachineIDs(e.attester.UEID()))
	req, _ = e.serverReqr.NewRequest(nil)
	if _, err := e.serverReqr.VerifyWith(context.Background(), newRelyingParty(t, v), e.clientAnswer(req), nil); err != nil {
		t.Fatalf("expected machine: %v", err)
	}
}

func TestAttestationNotOffered(t *testing.T) {
	eachRole(t, func(t *testing.T, e *env, s side) {
		sigalgs := postauth.Extension{Type: postauth.ExtensionSignatureAlgorithms, Data: []byte{0, 2, 4, 3}}
		typ := postauth.TypeCertificateRequest
		if s.role == postauth.RoleServer {
			typ = postauth.TypeClientCertificateRequest
		}
		plain := &postauth.Request{Type: typ, Context: []byte("0123456789abcdef"), Extensions: []postauth.Extension{sigalgs}}

		// The attester will not put Evidence where it was not offered...
		_, err := respond(t, s.ch, s.role, plain, s.id, e.attester)
		if !errors.Is(err, postauth.ErrAttestationNotOffered) {
			t.Fatalf("Respond: want ErrAttestationNotOffered, got %v", err)
		}
		// ...a relying party refuses an authenticator that carries it anyway...
		reqBytes, _ := plain.Marshal()
		ev, _ := e.attester.Attest(context.Background(), s.challenge(t, plain))
		forged := newForger(t, s.conn).build(t, s.role, reqBytes, plain.Context,
			[]forgedEntry{{der: s.cert.Certificate[0], exts: []postauth.Extension{cmwExt(t, ev)}}}, s.cert.PrivateKey.(crypto.Signer))
		_, err = s.rpCh.Validate(s.role, plain, forged)
		postauthtest.WantErrorIs(t, err, postauth.ErrUnexpectedExtension, postauth.CodeInvalid, postauth.ReasonUnsupportedExtension)
		// ...and attested verification needs a request that offered it.
		_, err = e.rp.Verify(context.Background(), s.rpCh, s.role, plain, forged)
		postauthtest.WantErrorIs(t, err, postauth.ErrAttestationNotOffered, postauth.CodeInvalid, postauth.ReasonAttestationNotOffered)
	})
}

func TestAttestationOnlyInEndEntity(t *testing.T) {
	eachRole(t, func(t *testing.T, e *env, s side) {
		req, _ := s.reqr.NewRequest(nil)
		reqBytes, _ := req.Marshal()
		ev, _ := e.attester.Attest(context.Background(), s.challenge(t, req))
		forged := newForger(t, s.conn).build(t, s.role, reqBytes, req.Context, []forgedEntry{
			{der: s.cert.Certificate[0]},
			{der: e.ep.PKI.Root.Raw, exts: []postauth.Extension{cmwExt(t, ev)}},
		}, s.cert.PrivateKey.(crypto.Signer))
		_, err := s.reqr.Verify(context.Background(), forged, nil)
		postauthtest.WantErrorIs(t, err, postauth.ErrUnexpectedExtension, postauth.CodeInvalid, postauth.ReasonUnsupportedExtension)
	})
}

func TestNoAttestationInAnswer(t *testing.T) {
	eachRole(t, func(t *testing.T, e *env, s side) {
		req, _ := s.reqr.NewRequest(nil)
		// A plain RFC 9261 authenticator, no Evidence: the request is not met.
		raw, err := s.ch.Authenticate(s.role, req, s.id, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.reqr.Verify(context.Background(), raw, nil)
		postauthtest.WantErrorIs(t, err, postauth.ErrNoAttestation, postauth.CodeRequired, postauth.ReasonNoAttestation)
	})
}

func TestRefusal(t *testing.T) {
	eachRole(t, func(t *testing.T, e *env, s side) {
		req, _ := s.reqr.NewRequest(nil)
		raw, err := s.ch.Refuse(s.role, req)
		if err != nil {
			t.Fatal(err)
		}
		if a, err := postauth.ParseAuthenticator(raw); err != nil || !a.Empty() {
			t.Fatalf("refusal is not an empty authenticator: %v", err)
		}
		if _, err := s.rpCh.Validate(s.role, req, raw); !errors.Is(err, postauth.ErrRefused) {
			t.Fatalf("Validate: want ErrRefused, got %v", err)
		}
		_, err = s.reqr.Verify(context.Background(), raw, nil)
		postauthtest.WantErrorIs(t, err, postauth.ErrRefused, postauth.CodeRequired, postauth.ReasonAttestationRefused)
		if n := s.reqr.Pending(); n != 0 {
			t.Errorf("refused request still pending (%d)", n)
		}
		// A refusal computed on another connection is not one.
		other := newEnv(t)
		os := other.side(s.role)
		req2, _ := os.reqr.NewRequest(nil)
		raw2, _ := s.ch.Refuse(s.role, req2)
		_, err = os.reqr.Verify(context.Background(), raw2, nil)
		postauthtest.WantErrorIs(t, err, postauth.ErrBadFinished, postauth.CodeInvalid, postauth.ReasonBadFinished)
	})
}

func TestKeyTrust(t *testing.T) {
	selfSigned := func(t *testing.T) *postauth.Identity {
		id, err := postauth.SelfSignedIdentity(postauthtest.NewKey(t), "agent", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	answer := func(t *testing.T, e *env, id *postauth.Identity, opts ...postauth.Option) (*postauth.Result, error) {
		req, _ := e.serverReqr.NewRequest(nil)
		raw, err := respond(t, e.clientCh, postauth.RoleClient, req, id, e.attester)
		if err != nil {
			t.Fatal(err)
		}
		return e.serverReqr.VerifyWith(context.Background(), e.relyingParty(opts...), raw, nil)
	}
	t.Run("same-peer-rejects-other-key", func(t *testing.T) {
		e := newEnv(t)
		_, err := answer(t, e, selfSigned(t))
		postauthtest.WantErrorIs(t, err, postauth.ErrKeyNotTrusted, postauth.CodeInvalid, postauth.ReasonKeyNotTrusted)
	})
	t.Run("same-peer-rejects-other-ca-cert", func(t *testing.T) {
		e := newEnv(t)
		other := e.ep.PKI.Issue(t, "agent") // valid chain, other key
		id, _ := postauth.IdentityFromTLS(&other)
		_, err := answer(t, e, id)
		postauthtest.WantErrorIs(t, err, postauth.ErrKeyNotTrusted, postauth.CodeInvalid, postauth.ReasonKeyNotTrusted)
	})
	t.Run("attested-key-only-opt-in", func(t *testing.T) {
		e := newEnv(t)
		res, err := answer(t, e, selfSigned(t), postauth.WithKeyTrust(postauth.KeyTrustAttestedKeyOnly))
		if err != nil {
			t.Fatal(err)
		}
		if res.KeyTrust() != postauth.KeyTrustAttestedKeyOnly {
			t.Errorf("key trust %v", res.KeyTrust())
		}
	})
	t.Run("chain", func(t *testing.T) {
		e := newEnv(t)
		other := e.ep.PKI.Issue(t, "agent")
		id, _ := postauth.IdentityFromTLS(&other)
		if _, err := answer(t, e, id, postauth.WithKeyTrust(postauth.KeyTrustChain), postauth.WithRoots(e.ep.PKI.Pool)); err != nil {
			t.Fatalf("chained identity rejected: %v", err)
		}
		_, err := answer(t, e, selfSigned(t), postauth.WithKeyTrust(postauth.KeyTrustChain), postauth.WithRoots(e.ep.PKI.Pool))
		postauthtest.WantErrorIs(t, err, postauth.ErrKeyNotTrusted, postauth.CodeInvalid, postauth.ReasonKeyNotTrusted)
	})
	t.Run("no-mtls-no-roots-fails-closed", func(t *testing.T) {
		p := postauthtest.New(t)
		c, s := postauthtest.Pair(t, p.ClientConfig(nil), p.ServerConfig(p.Issue(t, "localhost", postauthtest.ServerAuth())))
		e := envFor(t, &postauthtest.Endpoints{Client: c, Server: s, ClientCert: p.Issue(t, "agent"), ServerCert: p.Issue(t, "localhost", postauthtest.ServerAuth()), PKI: p})
		_, err := answer(t, e, selfSigned(t))
		postauthtest.WantErrorIs(t, err, postauth.ErrNoKeyTrust, postauth.CodeInvalid, postauth.ReasonKeyNotTrusted)
	})
}

func TestSignatureSchemes(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name   string
		key    crypto.Signer
		scheme tls.SignatureScheme
	}{
		{"p256", postauthtest.NewKey(t), tls.ECDSAWithP256AndSHA256},
		{"p384", p384, tls.ECDSAWithP384AndSHA384},
		{"ed25519", edKey, tls.Ed25519},
		{"rsa-pss", rsaKey, tls.PSSWithSHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			id, err := postauth.SelfSignedIdentity(tc.key, "agent", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := e.serverReqr.NewRequest(nil)
			raw, err := respond(t, e.clientCh, postauth.RoleClient, req, id, e.attester)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := postauth.ParseAuthenticator(raw)
			if a.Scheme != tc.scheme {
				t.Errorf("scheme 0x%04x, want 0x%04x", uint16(a.Scheme), uint16(tc.scheme))
			}
			rp := e.relyingParty(postauth.WithKeyTrust(postauth.KeyTrustAttestedKeyOnly))
			if _, err := e.serverReqr.VerifyWith(context.Background(), rp, raw, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("scheme-not-offered", func(t *testing.T) {
		e := newEnv(t)
		r, _ := e.relyingParty(postauth.WithSignatureSchemes(tls.Ed25519)).NewRequester(e.serverCh, postauth.RoleClient)
		req, _ := r.NewRequest(nil)
		_, err := respond(t, e.clientCh, postauth.RoleClient, req, e.clientID, e.attester)
		if !errors.Is(err, postauth.ErrUnsupportedScheme) {
			t.Fatalf("P-256 key answered an Ed25519-only request: %v", err)
		}
	})
}

// The SHA-384 suites change the transcript, binder and key hash sizes.
func TestSHA384Suite(t *testing.T) {
	ep := postauthtest.MutualTLS(t)
	ccs, scs := ep.Client.ConnectionState(), ep.Server.ConnectionState()
	clientCh, err := postauth.NewChannelFromExporter(tls.TLS_AES_256_GCM_SHA384, ccs.ExportKeyingMaterial)
	if err != nil {
		t.Fatal(err)
	}
	serverCh, _ := postauth.NewChannelFromExporter(tls.TLS_AES_256_GCM_SHA384, scs.ExportKeyingMaterial)
	id, _ := postauth.IdentityFromTLS(&ep.ClientCert)
	att, v := postauthtest.Software(t)
	// No TLS peer on an exporter-only channel: trust the attested key.
	rp := newRelyingParty(t, v, postauth.WithKeyTrust(postauth.KeyTrustAttestedKeyOnly))
	r, _ := rp.NewRequester(serverCh, postauth.RoleClient)
	req, _ := r.NewRequest(nil)
	raw, err := respond(t, clientCh, postauth.RoleClient, req, id, att)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := postauth.ParseAuthenticator(raw)
	if len(a.Finished) != 48 {
		t.Errorf("Finished is %d bytes, want 48", len(a.Finished))
	}
	res, err := r.Verify(context.Background(), raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.KeyHash()) != 48 {
		t.Errorf("key hash is %d bytes, want 48", len(res.KeyHash()))
	}
}

func TestFormatNotAccepted(t *testing.T) {
	e := newEnv(t)
	req, _ := e.serverReqr.NewRequest(nil)
	rp := e.relyingParty(postauth.WithFormats("application/vnd.example.tpm-quote+cbor"))
	_, err := e.serverReqr.VerifyWith(context.Background(), rp, e.clientAnswer(req), nil)
	postauthtest.WantErrorIs(t, err, postauth.ErrFormatNotAccepted, postauth.CodeInvalid, postauth.ReasonFormatNotAccepted)
}

func TestNewChannelRefusesNonTLS13(t *testing.T) {
	t.Run("tls12", func(t *testing.T) {
		p := postauthtest.New(t)
		sc := p.ServerConfig(p.Issue(t, "localhost", postauthtest.ServerAuth()))
		sc.MinVersion, sc.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		cc := p.ClientConfig(nil)
		cc.MinVersion = tls.VersionTLS12
		c, _ := postauthtest.Pair(t, cc, sc)
		cs := c.ConnectionState()
		_, err := postauth.NewChannel(&cs)
		postauthtest.WantErrorIs(t, err, postauth.ErrNotTLS13, postauth.CodeInvalid, postauth.ReasonTLS13Required)
	})
	t.Run("zero", func(t *testing.T) {
		_, err := postauth.NewChannel(&tls.ConnectionState{})
		postauthtest.WantErrorIs(t, err, postauth.ErrNoConnectionState, postauth.CodeInvalid, postauth.ReasonNoTLS)
	})
	t.Run("nil", func(t *testing.T) {
		_, err := postauth.NewChannel(nil)
		postauthtest.WantErrorIs(t, err, postauth.ErrNoConnectionState, postauth.CodeInvalid, postauth.ReasonNoTLS)
	})
	t.Run("incomplete", func(t *testing.T) {
		_, err := postauth.NewChannel(&tls.ConnectionState{Version: tls.VersionTLS13})
		postauthtest.WantErrorIs(t, err, postauth.ErrHandshakeIncomplete, postauth.CodeInvalid, postauth.ReasonHandshakeIncomplete)
	})
	t.Run("hand-made-state-without-keys", func(t *testing.T) {
		// Looks complete but has no keying material: no panic, an error.
		ch, err := postauth.NewChannel(&tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true, CipherSuite: tls.TLS_AES_128_GCM_SHA256})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.Binder([]byte("spki"), nil); err == nil {
			t.Fatal("exporter without keys did not fail")
		}
	})
}

// The exporter labels are the sender's: an authenticator for the right
// request, signed with the right key, but made with the other role's labels
// fails. (With reflection, the request type byte differs too; this isolates
// the labels.)
func TestRoleLabelsBind(t *testing.T) {
	e := newEnv(t)
	req, _ := e.clientReqr.NewRequest(nil)
	reqBytes, _ := req.Marshal()
	ev, _ := e.attester.Attest(context.Background(), postauth.Challenge{
		Binder: mustBinder(t, e.serverCh, e.serverID.SPKI(), req.Context), KeyHash: e.serverCh.KeyHash(e.serverID.SPKI()),
		Hash: e.serverCh.Hash(), Context: req.Context, Role: postauth.RoleServer,
	})
	signer := e.ep.ServerCert.PrivateKey.(crypto.Signer)
	entries := []forgedEntry{{der: e.ep.ServerCert.Certificate[0], exts: []postauth.Extension{cmwExt(t, ev)}}}
	wrong := newForger(t, e.ep.Server).build(t, postauth.RoleClient, reqBytes, req.Context, entries, signer)
	_, err := e.clientReqr.Verify(context.Background(), wrong, nil)
	postauthtest.WantErrorIs(t, err, postauth.ErrBadFinished, postauth.CodeInvalid, postauth.ReasonBadFinished)

	// The same with the server's labels verifies: only the labels differed.
	req, _ = e.clientReqr.NewRequest(nil)
	reqBytes, _ = req.Marshal()
	ev, _ = e.attester.Attest(context.Background(), postauth.Challenge{
		Binder: mustBinder(t, e.serverCh, e.serverID.SPKI(), req.Context), KeyHash: e.serverCh.KeyHash(e.serverID.SPKI()),
		Hash: e.serverCh.Hash(), Context: req.Context, Role: postauth.RoleServer,
	})
	entries = []forgedEntry{{der: e.ep.ServerCert.Certificate[0], exts: []postauth.Extension{cmwExt(t, ev)}}}
	right := newForger(t, e.ep.Server).build(t, postauth.RoleServer, reqBytes, req.Context, entries, signer)
	if _, err := e.clientReqr.Verify(context.Background(), right, nil); err != nil {
		t.Fatalf("server labels: %v", err)
	}
}

// A Verifier that returns neither an Appraisal nor an error has not
// vouched for anything: invalid, never a pass.
func TestNilAppraisalIsInvalid(t *testing.T) {
	e := newEnv(t)
	nothing := verifierFunc(func(context.Context, postauth.Challenge, postauth.Evidence) (*postauth.Appraisal, error) {
		return nil, nil
	})
	req, _ := e.serverReqr.NewRequest(nil)
	_, err := e.serverReqr.VerifyWith(context.Background(), newRelyingParty(t, nothing), e.clientAnswer(req), nil)
	postauthtest.WantError(t, err, postauth.CodeInvalid, postauth.ReasonEvidenceInvalid)
}

// The verifier's expiry bounds a Result whatever the relying party's max
// age: ValidAt is false from the expiry on.
func TestVerifierExpiry(t *testing.T) {
	e := newEnv(t)
	clock := postauthtest.NewClock(time.Time{})
	expiring := verifierFunc(func(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
		app, err := e.verifier.Verify(ctx, ch, ev)
		if app != nil {
			app.Expiry = clock.Now().Add(10 * time.Second)
		}
		return app, err
	})
	req, _ := e.serverReqr.NewRequest(nil)
	res, err := e.serverReqr.VerifyWith(context.Background(), newRelyingParty(t, expiring, postauth.WithClock(clock.Now)), e.clientAnswer(req), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.ValidAt(clock.Now().Add(9*time.Second), time.Hour) {
		t.Fatal("not valid before the verifier's expiry")
	}
	if res.ValidAt(clock.Now().Add(10*time.Second), time.Hour) || res.ValidAt(clock.Now().Add(11*time.Second), 0) {
		t.Fatal("valid at or after the verifier's expiry")
	}
}

type verifierFunc func(context.Context, postauth.Challenge, postauth.Evidence) (*postauth.Appraisal, error)

func (f verifierFunc) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	return f(ctx, ch, ev)
}
