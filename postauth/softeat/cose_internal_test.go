package softeat

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	mrand "math/rand/v2"
	"testing"

	cose "github.com/veraison/go-cose"

	"github.com/reattest/reattest/internal/detcbor"
	"github.com/reattest/reattest/posture"
)

// The hand-written claims encoder gives exactly the deterministic encoding
// of the reflection encoder, for claims of every shape.
func TestEncodeClaimsMatchesDetcbor(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	blob := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	for i := range 500 {
		c := claims{
			IssuedAt: int64(r.Uint64() >> r.IntN(64)),
			Nonce:    blob([]int{0, 1, 23, 24, 32, 48, 255, 256, 70000}[r.IntN(9)]),
			UEID:     blob(r.IntN(40)),
			Profile:  string(blob(r.IntN(300))),
			KeyHash:  posture.Digest{Alg: []int{1, 7, 8, -1, 100000}[r.IntN(5)], Value: blob(r.IntN(70))},
		}
		if i%3 == 0 {
			c.IssuedAt = -c.IssuedAt - 1
		}
		if i%2 == 0 {
			enc, _ := detcbor.Enc.Marshal(map[int]string{1: string(blob(r.IntN(50)))}) // any CBOR item as the log
			c.Posture = &postureClaim{Head: posture.Digest{Alg: 1, Value: blob(32)}, Log: enc}
		}
		want, err := detcbor.Enc.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeClaims(&c); !bytes.Equal(got, want) {
			t.Fatalf("case %d: encodeClaims differs from the deterministic encoding\n got %x\nwant %x", i, got, want)
		}
	}
}

// The hand-written COSE_Sign1 is byte for byte what veraison/go-cose
// produces for the same header, payload and signature, and go-cose
// verifies it.
func TestTokenMatchesGoCose(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	att, err := NewAttester(key)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte{0xa1, 0x06, 0x01}
	sig, err := att.signES256(rand.Reader, att.protected, payload)
	if err != nil {
		t.Fatal(err)
	}
	ours := encodeToken(att.protected, payload, sig)
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(ours); err != nil {
		t.Fatal(err)
	}
	cv, _ := cose.NewVerifier(cose.AlgorithmES256, &key.PublicKey)
	if err := msg.Verify(nil, cv); err != nil {
		t.Fatalf("go-cose does not verify our token: %v", err)
	}
	theirs, err := msg.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, theirs) {
		t.Fatalf("tokens differ\n ours %x\ntheirs %x", ours, theirs)
	}
	p, u, pl, s, err := decodeToken(ours)
	if err != nil || !bytes.Equal(p, att.protected) || !bytes.Equal(u, emptyUnprotected) || !bytes.Equal(pl, payload) || !bytes.Equal(s, sig) {
		t.Fatalf("decodeToken: %v", err)
	}
	if !verifyES256(&key.PublicKey, p, pl, s) {
		t.Fatal("verifyES256 refuses a good signature")
	}
	s[0] ^= 1
	if verifyES256(&key.PublicKey, p, pl, s) {
		t.Fatal("verifyES256 accepts a bad signature")
	}
}
