package postauth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	cose "github.com/veraison/go-cose"

	"github.com/reattest/reattest/internal/detcbor"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

// Decoders must never panic, must respect their size limits, and what they
// accept must re-encode to the same bytes (one encoding per message).

func FuzzParseRequest(f *testing.F) {
	e := newEnv(f)
	for _, binding := range [][]byte{nil, opDigest("op")} {
		req, _ := e.serverReqr.NewRequest(binding)
		b, _ := req.Marshal()
		f.Add(b)
	}
	req, _ := e.clientReqr.NewTemplate()
	b, _ := req.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := postauth.ParseRequest(b)
		if err != nil {
			return
		}
		out, err := req.Marshal()
		if err != nil {
			t.Fatalf("parsed request does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip changed the request:\n in %x\nout %x", b, out)
		}
	})
}

func FuzzParseAuthenticator(f *testing.F) {
	e := newEnv(f)
	req, _ := e.serverReqr.NewRequest(nil)
	f.Add(e.clientAnswer(req))
	ref, _ := e.clientCh.Refuse(postauth.RoleClient, req)
	f.Add(ref)
	plain, _ := e.clientCh.Authenticate(postauth.RoleClient, req, e.clientID, nil)
	f.Add(plain)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := postauth.ParseAuthenticator(b)
		if err != nil {
			return
		}
		if len(b) > postauth.MaxAuthenticatorLen {
			t.Fatal("accepted an oversized authenticator")
		}
		out, err := a.Marshal()
		if err != nil {
			t.Fatalf("parsed authenticator does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip changed the authenticator")
		}
	})
}

// FuzzDecodeCMW calls the CMW decoder without its recover
// (DecodeCMWUnrecovered), so that a panic of the third-party parser
// (veraison/cmw) fails the target instead of being turned into an error.
func FuzzDecodeCMW(f *testing.F) {
	for _, enc := range []postauth.CMWEncoding{postauth.CMWCBOR, postauth.CMWJSON} {
		b, _ := postauth.EncodeCMW(postauth.Evidence{Type: "application/eat+cwt", Value: []byte{0xd2, 0x84}}, enc)
		f.Add(b)
		b, _ = postauth.EncodeCMW(postauth.Evidence{Type: "application/eat+jwt", Value: []byte("e30.e30.AA"), Kind: postauth.KindAttestationResult}, enc)
		f.Add(b)
	}
	f.Add([]byte(`{"a":["application/eat+cwt","AAA"]}`))
	f.Add([]byte{0x82, 0x60, 0x40})
	f.Add([]byte{0x83, 0x63, 'a', '/', 'b', 0x41, 1, 0x18, 4})          // indicator not in shortest form
	f.Add([]byte{0x83, 0x63, 'a', '/', 'b', 0x5f, 0x41, 1, 0xff, 0x04}) // indefinite-length value
	f.Add([]byte{0x82, 0x63, 'a', '/', 0xff, 0x41, 1})                  // type not UTF-8
	f.Add([]byte{0x83, 0x63, 'a', '/', 'b', 0x41, 1, 0x04, 0x00})       // data after the record
	f.Add([]byte{0x83, 0x19, 0x01, 0x0e, 0x41, 1, 0x04})                // CoAP content format 270
	f.Add([]byte(`["",0]`))                                             // panics inside veraison/cmw v0.2.0
	f.Add([]byte(`["application/eat+cwt",true]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := postauth.DecodeCMWUnrecovered(b)
		if ev2, err2 := postauth.DecodeCMW(b); (err == nil) != (err2 == nil) || ev2.Type != ev.Type || !bytes.Equal(ev2.Value, ev.Value) || ev2.Kind != ev.Kind {
			t.Fatalf("DecodeCMW and its unrecovered path disagree: %v / %v", err, err2)
		}
		// The hand-written CBOR path and veraison/cmw agree on every input.
		if ev3, err3 := postauth.DecodeCMWRecord(b); (err == nil) != (err3 == nil) || ev3.Type != ev.Type || !bytes.Equal(ev3.Value, ev.Value) || ev3.Kind != ev.Kind {
			t.Fatalf("the CBOR fast path and veraison/cmw disagree: %v / %v", err, err3)
		}
		if err != nil {
			return
		}
		if ev.Type == "" || len(ev.Value) == 0 || len(ev.Value) > postauth.MaxEvidenceLen {
			t.Fatalf("accepted bad evidence %q (%d bytes)", ev.Type, len(ev.Value))
		}
		for _, enc := range []postauth.CMWEncoding{postauth.CMWCBOR, postauth.CMWJSON} {
			re, err := postauth.EncodeCMW(ev, enc)
			if err != nil {
				continue // a decodable type may not encode (e.g. too long)
			}
			back, err := postauth.DecodeCMWUnrecovered(re)
			if err != nil || back.Type != ev.Type || !bytes.Equal(back.Value, ev.Value) || back.Kind != ev.Kind {
				t.Fatalf("re-encoded CMW does not decode to the same evidence: %v", err)
			}
		}
	})
}

// fixedRand is a Rand that always reads the same bytes: every Requester
// made with it issues the same first request context, so a fuzzed answer
// is checked against a pending request instead of ending at
// unknown_context.
type fixedRand struct{}

func (fixedRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i) ^ 0x5a
	}
	return len(p), nil
}

// fuzzRequester returns a Requester of the server side of e's connection,
// made by rp, and the request it issued. With a fixedRand in rp, that
// request is the same on every call.
func fuzzRequester(t testing.TB, e *env, rp *postauth.RelyingParty) (*postauth.Requester, *postauth.Request) {
	r, err := rp.NewRequester(e.serverCh, postauth.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	req, err := r.NewRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, req
}

// The whole relying-party path on a real connection: arbitrary answers to a
// pending request never panic and never verify. The Requester has a fixed
// Rand, so the answer's context matches the request it issued and fuzzed
// answers reach the authenticator checks behind the context lookup.
func FuzzRequesterVerify(f *testing.F) {
	e := newEnv(f)
	rp := e.relyingParty(postauth.WithRand(fixedRand{}))
	_, req := fuzzRequester(f, e, rp)
	valid := e.clientAnswer(req)
	ref, _ := e.clientCh.Refuse(postauth.RoleClient, req)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(ref)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, got := fuzzRequester(t, e, rp)
		if !bytes.Equal(got.Context, req.Context) {
			t.Fatal("the fixed Rand gave another context")
		}
		_, err := r.Verify(context.Background(), b, nil)
		if bytes.Equal(b, valid) {
			return // genuine (stale after the verifier's 2 minutes)
		}
		if err == nil {
			t.Fatal("fuzzed answer verified")
		}
		if postauth.CodeOf(err) == postauth.CodeUnknown {
			t.Fatalf("an error without a code: %v", err)
		}
	})
}

// FuzzRequesterVerifyEvidence fuzzes the software EAT claims inside a
// genuine answer: the harness signs the fuzzed claims with the trusted
// attestation key and answers the pending request with them (valid
// CertificateVerify and Finished), so mutations reach the CMW, the format
// check, the Evidence verifier behind its signature, the binder and key
// hash cross-checks and the relying party's posture replay.
func FuzzRequesterVerifyEvidence(f *testing.F) {
	e := newEnv(f)
	rp := e.relyingParty(postauth.WithRand(fixedRand{}))
	_, req := fuzzRequester(f, e, rp)
	tr, _ := posture.NewTracker()
	tr.SetModel(context.Background(), posture.Model{Name: "m", Digest: posture.DigestOf([]byte("w"))})
	tr.EnableTool(context.Background(), posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))})
	for _, att := range []*softeat.Attester{e.attester, e.attKey.Attester(f, softeat.WithPosture(tr))} {
		rec := &recordingAttester{inner: att}
		if _, err := respond(f, e.clientCh, postauth.RoleClient, req, e.clientID, rec); err != nil {
			f.Fatal(err)
		}
		var msg cose.Sign1Message
		if err := msg.UnmarshalCBOR(rec.ev.Value); err != nil {
			f.Fatal(err)
		}
		f.Add(msg.Payload)
	}
	f.Fuzz(func(t *testing.T, claims []byte) {
		r, req := fuzzRequester(t, e, rp)
		raw, err := respond(t, e.clientCh, postauth.RoleClient, req, e.clientID, claimsSigner{e.attKey, claims})
		if err != nil {
			return // the Responder refused (an empty claims set)
		}
		res, err := r.Verify(context.Background(), raw, nil)
		if err != nil {
			if postauth.CodeOf(err) == postauth.CodeUnknown {
				t.Fatalf("an error without a code: %v", err)
			}
			return
		}
		// Accepted: the claims are canonical and say what the Result says.
		var c map[int64]any
		if err := detcbor.DecNoTags.Unmarshal(claims, &c); err != nil {
			t.Fatalf("accepted claims do not decode: %v", err)
		}
		if canon, _ := detcbor.Enc.Marshal(c); !bytes.Equal(canon, claims) {
			t.Fatal("accepted non-canonical claims")
		}
		if ueid, _ := c[256].([]byte); !bytes.Equal(ueid, res.MachineID()) {
			t.Fatalf("machine id %x, claims say %x", res.MachineID(), ueid)
		}
		if _, ok := c[-70001]; ok != (res.Posture() != nil) {
			t.Fatalf("posture claim present %v, replayed state %v", ok, res.Posture())
		}
	})
}

// claimsSigner signs fixed claims with the profile's headers and a
// trusted key, whatever the Challenge.
type claimsSigner struct {
	key    *postauthtest.SoftwareKey
	claims []byte
}

func (a claimsSigner) Attest(_ context.Context, _ postauth.Challenge) (postauth.Evidence, error) {
	kid, err := softeat.KeyID(a.key.Key.Public())
	if err != nil {
		return postauth.Evidence{}, err
	}
	msg := cose.Sign1Message{
		Headers: cose.Headers{Protected: cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmES256, cose.HeaderLabelKeyID: kid}},
		Payload: a.claims,
	}
	signer, err := cose.NewSigner(cose.AlgorithmES256, a.key.Key)
	if err != nil {
		return postauth.Evidence{}, err
	}
	if err := msg.Sign(rand.Reader, nil, signer); err != nil {
		return postauth.Evidence{}, err
	}
	tok, err := msg.MarshalCBOR()
	return postauth.Evidence{Type: softeat.MediaType, Value: tok}, err
}
