package postauth_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/reattest/reattest/postauth"
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

func FuzzDecodeCMW(f *testing.F) {
	for _, enc := range []postauth.CMWEncoding{postauth.CMWCBOR, postauth.CMWJSON} {
		b, _ := postauth.EncodeCMW(postauth.Evidence{Type: "application/eat+cwt", Value: []byte{0xd2, 0x84}}, enc)
		f.Add(b)
	}
	f.Add([]byte(`{"a":["application/eat+cwt","AAA"]}`))
	f.Add([]byte{0x82, 0x60, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := postauth.DecodeCMW(b)
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
			back, err := postauth.DecodeCMW(re)
			if err != nil || back.Type != ev.Type || !bytes.Equal(back.Value, ev.Value) {
				t.Fatalf("re-encoded CMW does not decode to the same evidence: %v", err)
			}
		}
	})
}

// The whole relying-party path on a real connection: arbitrary answers to a
// pending request never panic and never verify.
func FuzzRequesterVerify(f *testing.F) {
	e := newEnv(f)
	req, _ := e.serverReqr.NewRequest(nil)
	valid := e.clientAnswer(req)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.Equal(b, valid) {
			return
		}
		r, err := e.rp.NewRequester(e.serverCh, postauth.RoleClient)
		if err != nil {
			t.Fatal(err)
		}
		r.NewRequest(nil)
		if _, err := r.Verify(context.Background(), b, nil); err == nil {
			t.Fatal("fuzzed answer verified")
		}
	})
}
