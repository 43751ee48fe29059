package tpm_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"maps"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"golang.org/x/crypto/cryptobyte"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/tpm"
)

// softwareAK returns a TPMT_PUBLIC with the AK template's attributes for a
// software key: it looks like an AK, but no TPM holds it.
func softwareAK(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	pub := tpm.AKTemplate()
	enc, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: enc[1:33]},
		Y: tpm2.TPM2BECCParameter{Buffer: enc[33:]},
	})
	return tpm2.Marshal(pub)
}

// attestFields are the fields of a TPMS_ATTEST that forged quotes vary.
type attestFields struct {
	magic   uint32
	typ     uint16
	extra   []byte
	banks   []uint16 // one TPMS_PCR_SELECTION per entry, all with sel
	sel     []byte
	digest  []byte
	trailer []byte
}

// quoteFields returns the fields of a well-formed quote over pcrs.
func quoteFields(extra []byte, pcrs map[int][]byte) attestFields {
	sel := make([]byte, 3)
	for i := range pcrs {
		sel[i/8] |= 1 << (i % 8)
	}
	return attestFields{magic: 0xff544347, typ: 0x8018, extra: extra, banks: []uint16{0x000B}, sel: sel, digest: tpm.PCRDigest(pcrs)}
}

func (f attestFields) marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint32(f.magic)
	b.AddUint16(f.typ)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 34)) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(f.extra) })
	b.AddUint64(1234) // clock
	b.AddUint32(1)    // resetCount
	b.AddUint32(2)    // restartCount
	b.AddUint8(1)     // safe
	b.AddUint64(0x2000_0001)
	b.AddUint32(uint32(len(f.banks)))
	for _, h := range f.banks {
		b.AddUint16(h)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(f.sel) })
	}
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(f.digest) })
	b.AddBytes(f.trailer)
	return b.BytesOrPanic()
}

// signAttest returns an ECDSA/SHA-256 TPMT_SIGNATURE over attest by key.
func signAttest(t testing.TB, key *ecdsa.PrivateKey, attest []byte) []byte {
	t.Helper()
	d := sha256.Sum256(attest)
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddUint16(0x0018)
	b.AddUint16(0x000B)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(r.FillBytes(make([]byte, 32))) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.FillBytes(make([]byte, 32))) })
	return b.BytesOrPanic()
}

// forge returns Evidence with a TPMS_ATTEST made of f, signed by key,
// carrying pcrs and the software AK of key.
func forge(t testing.TB, key *ecdsa.PrivateKey, f attestFields, pcrs map[int][]byte) postauth.Evidence {
	t.Helper()
	q := f.marshal()
	e := &tpm.Evidence{Quote: q, Signature: signAttest(t, key, q), AK: softwareAK(t, key), PCRs: maps.Clone(pcrs)}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return postauth.Evidence{Type: tpm.MediaType, Value: b}
}

// forgeQuote is forge of a well-formed quote over pcrs bound to binder.
func forgeQuote(t testing.TB, key *ecdsa.PrivateKey, binder []byte, pcrs map[int][]byte) postauth.Evidence {
	t.Helper()
	return forge(t, key, quoteFields(binder, pcrs), pcrs)
}

// zeroPCRs returns PCRs idx... with all-zero values.
func zeroPCRs(idx ...int) map[int][]byte {
	m := make(map[int][]byte, len(idx))
	for _, i := range idx {
		m[i] = make([]byte, 32)
	}
	return m
}

func encode(t testing.TB, d *tpm.Evidence) postauth.Evidence {
	t.Helper()
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return postauth.Evidence{Type: tpm.MediaType, Value: b}
}
