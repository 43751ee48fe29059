package softeat_test

import (
	"bytes"
	"context"
	"crypto"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
)

func TestBinding(t *testing.T) {
	f := newFixture(t)
	ev, err := f.att.Attest(context.Background(), f.chal)
	if err != nil {
		t.Fatal(err)
	}
	nonce, kh, err := softeat.Binding(f.chal, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(nonce, f.chal.Binder) || !bytes.Equal(kh, f.chal.KeyHash) {
		t.Fatalf("nonce %x key hash %x", nonce, kh)
	}
	// It reads, it does not compare: another challenge gets the values
	// the token carries.
	other := f.chal
	other.Binder = bytes.Repeat([]byte{9}, 32)
	if nonce, _, err := softeat.Binding(other, ev); err != nil || !bytes.Equal(nonce, f.chal.Binder) {
		t.Fatalf("%x %v", nonce, err)
	}
	// An unsigned (forged) token decodes too: the signature is the remote
	// verifier's job.
	forged := f.sign(t, f.claims())
	forged[len(forged)-1] ^= 1
	if _, _, err := softeat.Binding(f.chal, postauth.Evidence{Type: softeat.MediaType, Value: forged}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		ch     postauth.Challenge
		ev     postauth.Evidence
		reason postauth.Reason
	}{
		{"another media type", f.chal, postauth.Evidence{Type: "application/cbor", Value: ev.Value}, postauth.ReasonFormatNotAccepted},
		{"garbage", f.chal, postauth.Evidence{Type: softeat.MediaType, Value: []byte{1, 2, 3}}, postauth.ReasonEvidenceInvalid},
		{"nonce of another length than the challenge hash's", postauth.Challenge{Binder: f.chal.Binder, KeyHash: f.chal.KeyHash, Hash: crypto.SHA384}, ev, postauth.ReasonEvidenceInvalid},
		{"key hash of another algorithm", postauth.Challenge{Binder: bytes.Repeat([]byte{3}, 48), Hash: crypto.SHA384},
			postauth.Evidence{Type: softeat.MediaType, Value: f.sign(t, func() map[int64]any { c := f.claims(); c[10] = bytes.Repeat([]byte{3}, 48); return c }())}, postauth.ReasonKeyHashMismatch},
		{"unprotected header not empty", f.chal, postauth.Evidence{Type: softeat.MediaType, Value: func() []byte {
			kid, _ := softeat.KeyID(f.key.Key.Public())
			return f.signRaw(t, mustCBOR(t, map[int64]any{1: -7, 4: kid}), mustCBOR(t, map[int64]any{4: kid}), mustCBOR(t, f.claims()))
		}()}, postauth.ReasonEvidenceInvalid},
		{"claims not in the deterministic encoding", f.chal, postauth.Evidence{Type: softeat.MediaType, Value: func() []byte {
			payload := mustCBOR(t, f.claims())
			payload[0] = 0xbf // an indefinite-length map head: another byte form
			return f.signPayload(t, append(payload, 0xff))
		}()}, postauth.ReasonEvidenceInvalid},
		{"wrong profile", f.chal, postauth.Evidence{Type: softeat.MediaType, Value: f.sign(t, func() map[int64]any { c := f.claims(); c[265] = "x"; return c }())}, postauth.ReasonEvidenceInvalid},
		{"unknown claim", f.chal, postauth.Evidence{Type: softeat.MediaType, Value: f.sign(t, func() map[int64]any { c := f.claims(); c[-1] = 1; return c }())}, postauth.ReasonEvidenceInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := softeat.Binding(tc.ch, tc.ev)
			postauthtest.WantError(t, err, postauth.CodeInvalid, tc.reason)
		})
	}
}

func FuzzBinding(f *testing.F) {
	fx := newFixture(f)
	ev, err := fx.att.Attest(context.Background(), fx.chal)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ev.Value)
	f.Add(fx.sign(f, fx.claims()))
	f.Fuzz(func(t *testing.T, data []byte) {
		nonce, _, err := softeat.Binding(fx.chal, postauth.Evidence{Type: softeat.MediaType, Value: data})
		if err == nil && len(nonce) == 0 {
			t.Fatal("bound without a nonce")
		}
	})
}
