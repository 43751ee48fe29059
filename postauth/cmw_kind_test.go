package postauth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"testing"

	"github.com/veraison/cmw"

	"github.com/reattest/reattest/postauth"
)

// The CMW indicator says which conceptual message a record carries:
// Evidence (4, the zero Kind) or an Attestation Result (8, the passport
// model). EncodeCMW writes the indicator of the Kind and DecodeCMW reads it
// back, in both encodings.
func TestCMWKind(t *testing.T) {
	value := []byte{0xd2, 0x84, 0x43}
	for _, enc := range []postauth.CMWEncoding{postauth.CMWCBOR, postauth.CMWJSON} {
		for _, tc := range []struct {
			kind postauth.Kind
			ind  byte
		}{
			{postauth.KindEvidence, 4},
			{postauth.KindAttestationResult, 8},
		} {
			b, err := postauth.EncodeCMW(postauth.Evidence{Type: "application/eat+jwt", Value: value, Kind: tc.kind}, enc)
			if err != nil {
				t.Fatal(err)
			}
			switch enc {
			case postauth.CMWCBOR: // [type, value, ind]: the last byte is the indicator
				if b[len(b)-1] != tc.ind {
					t.Errorf("%v, CBOR: indicator %d, want %d", tc.kind, b[len(b)-1], tc.ind)
				}
			case postauth.CMWJSON:
				if want := []byte{',', '0' + tc.ind, ']'}; !bytes.HasSuffix(b, want) {
					t.Errorf("%v, JSON: %s does not end with indicator %d", tc.kind, b, tc.ind)
				}
			}
			ev, err := postauth.DecodeCMW(b)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind != tc.kind || ev.Type != "application/eat+jwt" || !bytes.Equal(ev.Value, value) {
				t.Errorf("decoded %+v, want kind %v", ev, tc.kind)
			}
		}
	}
	if _, err := postauth.EncodeCMW(postauth.Evidence{Type: "application/eat+jwt", Value: value, Kind: 7}, postauth.CMWCBOR); err == nil {
		t.Error("EncodeCMW accepted an unknown kind")
	}
}

// Records from other senders: no indicator and both bits are Evidence (the
// zero Kind); an indicator with neither bit is refused.
func TestCMWKindFromIndicator(t *testing.T) {
	val := base64.RawURLEncoding.EncodeToString([]byte{1, 2, 3})
	for _, tc := range []struct {
		name string
		rec  string
		want postauth.Kind
		ok   bool
	}{
		{"no indicator", `["application/eat+jwt","` + val + `"]`, postauth.KindEvidence, true},
		{"evidence", `["application/eat+jwt","` + val + `",4]`, postauth.KindEvidence, true},
		{"attestation results", `["application/eat+jwt","` + val + `",8]`, postauth.KindAttestationResult, true},
		{"both bits", `["application/eat+jwt","` + val + `",12]`, postauth.KindEvidence, true},
		{"attestation results and endorsements", `["application/eat+jwt","` + val + `",10]`, postauth.KindAttestationResult, true},
		{"reference values only", `["application/eat+jwt","` + val + `",1]`, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := postauth.DecodeCMW([]byte(tc.rec))
			if !tc.ok {
				if err == nil {
					t.Fatalf("accepted %s", tc.rec)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind != tc.want {
				t.Errorf("kind %v, want %v", ev.Kind, tc.want)
			}
		})
	}
	// The veraison/cmw library reads our Attestation Result record the same.
	b, err := postauth.EncodeCMW(postauth.Evidence{Type: "application/eat+jwt", Value: []byte{1}, Kind: postauth.KindAttestationResult}, postauth.CMWCBOR)
	if err != nil {
		t.Fatal(err)
	}
	var rec cmw.CMW
	if err := rec.Deserialize(b); err != nil {
		t.Fatal(err)
	}
	if ind, err := rec.GetMonadIndicator(); err != nil || ind != cmw.AttestationResults {
		t.Fatalf("veraison/cmw reads indicator %v (%v), want attestation results", ind, err)
	}
}

// An Attester's Kind travels to the relying party's Verifier through the
// authenticator's cmw_attestation.
func TestCMWKindReachesVerifier(t *testing.T) {
	e := newEnv(t)
	seen := &kindVerifier{inner: e.verifier}
	rp := e.relyingParty()
	rp = newRelyingParty(t, seen, postauth.WithFormats(rp.Formats()...))
	reqr, err := rp.NewRequester(e.serverCh, postauth.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []postauth.Kind{postauth.KindAttestationResult, postauth.KindEvidence} {
		req, err := reqr.NewRequest(nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := respond(t, e.clientCh, postauth.RoleClient, req, e.clientID, kindAttester{e.attester, kind})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reqr.Verify(context.Background(), raw, nil); err != nil {
			t.Fatal(err)
		}
		if seen.kind != kind {
			t.Errorf("the Verifier saw kind %v, want %v", seen.kind, kind)
		}
	}
}

type kindAttester struct {
	inner postauth.Attester
	kind  postauth.Kind
}

func (a kindAttester) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	ev, err := a.inner.Attest(ctx, ch)
	ev.Kind = a.kind
	return ev, err
}

type kindVerifier struct {
	inner postauth.Verifier
	kind  postauth.Kind
}

func (v *kindVerifier) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	v.kind = ev.Kind
	return v.inner.Verify(ctx, ch, ev)
}
