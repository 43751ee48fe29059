package ear_test

import (
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
)

// enactTrust builds EnactTrust Evidence around a TPMS_ATTEST quote with
// extraData extra (the signature is not checked by the binding reader).
func enactTrust(extra []byte) []byte {
	var attest []byte
	attest = binary.BigEndian.AppendUint32(attest, 0xff544347)
	attest = binary.BigEndian.AppendUint16(attest, 0x8018)
	attest = binary.BigEndian.AppendUint16(attest, 4)
	attest = append(attest, 0, 0x0b, 1, 2) // qualifiedSigner
	attest = binary.BigEndian.AppendUint16(attest, uint16(len(extra)))
	attest = append(attest, extra...)
	attest = append(attest, make([]byte, 17+10)...) // clock info, firmware, PCR select...
	out := make([]byte, 16)                         // NODE_UUID
	out = binary.BigEndian.AppendUint16(out, uint16(len(attest)))
	out = append(out, attest...)
	return append(out, 0x00, 0x18, 0x00, 0x0b, 0, 0) // a TPMT_SIGNATURE stub
}

func TestEnactTrustBinding(t *testing.T) {
	b32 := sha256.Sum256([]byte("binder"))
	b48 := sha512.Sum384([]byte("binder"))
	sum48 := sha256.Sum256(b48[:])
	kh := sha256.Sum256([]byte("spki"))
	ch32 := postauth.Challenge{Binder: b32[:], KeyHash: kh[:], Hash: crypto.SHA256}
	ch48 := postauth.Challenge{Binder: b48[:], KeyHash: kh[:], Hash: crypto.SHA384}
	for _, tc := range []struct {
		name    string
		ch      postauth.Challenge
		ev      []byte
		bound   bool
		wantErr bool
	}{
		{"binder as extraData", ch32, enactTrust(b32[:]), true, false},
		{"SHA-256 of a 48-byte binder", ch48, enactTrust(sum48[:]), true, false},
		{"48-byte binder as is", ch48, enactTrust(b48[:]), true, false},
		{"another nonce", ch32, enactTrust(make([]byte, 32)), false, false},
		{"SHA-256 of a 32-byte binder is not accepted", ch32, enactTrust(func() []byte { s := sha256.Sum256(b32[:]); return s[:] }()), false, false},
		{"truncated", ch32, enactTrust(b32[:])[:30], false, true},
		{"no signature", ch32, enactTrust(b32[:])[:len(enactTrust(b32[:]))-6], false, true},
		{"bad magic", ch32, func() []byte { e := enactTrust(b32[:]); e[18] = 0; return e }(), false, true},
		{"empty", ch32, nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nonce, keyHash, err := ear.EnactTrustBinding(tc.ch, postauth.Evidence{Type: ear.EnactTrustMediaType, Value: tc.ev})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if tc.wantErr {
				return
			}
			if bound := string(nonce) == string(tc.ch.Binder); bound != tc.bound {
				t.Fatalf("bound %v, want %v", bound, tc.bound)
			}
			if tc.bound && string(keyHash) != string(tc.ch.KeyHash) {
				t.Fatal("key hash")
			}
		})
	}
	if _, _, err := ear.EnactTrustBinding(ch32, postauth.Evidence{Type: "application/eat+cwt", Value: enactTrust(b32[:])}); err == nil {
		t.Fatal("another media type accepted")
	}
}
