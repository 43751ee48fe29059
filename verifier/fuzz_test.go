package verifier_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/verifier"
)

// fuzzService is an in-process service for handler fuzzing.
func fuzzService(tb testing.TB) (*verifier.Service, *softeat.Attester) {
	tb.Helper()
	att, sv := postauthtest.Software(tb)
	key, err := verifier.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := verifier.NewService(key, verifier.SoftEAT(sv), verifier.WithMaxSessions(64))
	if err != nil {
		tb.Fatal(err)
	}
	return svc, att
}

// FuzzNewSession: any query and Accept header give 201, 400 or 406 (or
// 503 when full), never a panic, and a 201 carries a nonce of 8..64 bytes.
func FuzzNewSession(f *testing.F) {
	svc, _ := fuzzService(f)
	f.Add("nonce=AAAAAAAAAAAAAAAAAAAAAA%3D%3D", "")
	f.Add("nonceSize=32", ear.SessionMediaType)
	f.Add("nonce=x&nonceSize=9", "*/*;q=0")
	f.Fuzz(func(t *testing.T, query, accept string) {
		r := httptest.NewRequest(http.MethodPost, "/x", nil)
		r.URL.Path = ear.NewSessionPath
		r.URL.RawQuery = query
		r.Header.Set("Accept", accept)
		w := httptest.NewRecorder()
		svc.ServeHTTP(w, r)
		switch w.Code {
		case 201:
			var s struct{ Nonce string }
			if err := jsonDecode(w.Body.Bytes(), &s); err != nil {
				t.Fatal(err)
			}
			n, err := base64.URLEncoding.Strict().DecodeString(s.Nonce)
			if err != nil || len(n) < 8 || len(n) > 64 {
				t.Fatalf("nonce %q", s.Nonce)
			}
			// Do not fill the store.
			loc := w.Header().Get("Location")
			d := httptest.NewRequest(http.MethodDelete, "/challenge-response/v1/"+loc, nil)
			svc.ServeHTTP(httptest.NewRecorder(), d)
		case 400, 406:
		default:
			t.Fatalf("status %d", w.Code)
		}
	})
}

// FuzzSubmit: any Evidence body, media type and key header give a status
// of the API, never a panic; a 200 is a complete session.
func FuzzSubmit(f *testing.F) {
	svc, att := fuzzService(f)
	nonce := bytes.Repeat([]byte{5}, 32)
	ev, err := att.Attest(context.Background(), postauth.Challenge{Binder: nonce, KeyHash: make([]byte, 32), Hash: crypto.SHA256})
	if err != nil {
		f.Fatal(err)
	}
	rec, _ := postauth.EncodeCMW(ev, postauth.CMWJSON)
	f.Add(ev.Value, ev.Type, "")
	f.Add(rec, "application/cmw+json", httpbind.EncodeBytes([]byte{0x30, 0x03, 0x02, 0x01, 0x01}))
	f.Add([]byte("x"), "application/eat+cwt; x=y", ":AAAA:")
	f.Fuzz(func(t *testing.T, body []byte, typ, key string) {
		open := httptest.NewRequest(http.MethodPost, ear.NewSessionPath+"?nonce="+ear.EncodeNonce(nonce), nil)
		w := httptest.NewRecorder()
		svc.ServeHTTP(w, open)
		if w.Code != 201 {
			t.Fatalf("newSession %d", w.Code)
		}
		path := "/challenge-response/v1/" + w.Header().Get("Location")
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		r.Header.Set("Content-Type", typ)
		if key != "" {
			r.Header.Set(ear.HeaderAuthenticatorKey, key)
		}
		w = httptest.NewRecorder()
		svc.ServeHTTP(w, r)
		switch w.Code {
		case 200:
			var s struct{ Status string }
			if err := jsonDecode(w.Body.Bytes(), &s); err != nil || s.Status != "complete" {
				t.Fatalf("200 with %s", w.Body.Bytes())
			}
		case 400, 413, 415, 500:
		default:
			t.Fatalf("status %d", w.Code)
		}
		svc.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodDelete, path, nil))
	})
}
