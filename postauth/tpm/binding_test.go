package tpm_test

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/tpm"
)

func TestBinding(t *testing.T) {
	for _, g := range loadGolden(t) {
		t.Run(g.name, func(t *testing.T) {
			nonce, kh, err := tpm.Binding(g.ch, g.ev)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(nonce, g.ch.Binder) || !bytes.Equal(kh, g.ch.KeyHash) {
				t.Fatalf("nonce %x key hash %x", nonce, kh)
			}
			other := g.ch
			b := sha256.Sum256([]byte("another connection"))
			other.Binder = b[:]
			nonce, kh, err = tpm.Binding(other, g.ev)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(nonce, other.Binder) || kh != nil {
				t.Fatal("bound to another binder")
			}
		})
	}
	g := loadGolden(t)[0]
	if _, _, err := tpm.Binding(g.ch, postauth.Evidence{Type: "application/eat+cwt", Value: g.ev.Value}); err == nil {
		t.Fatal("another media type accepted")
	}
	if _, _, err := tpm.Binding(g.ch, postauth.Evidence{Type: tpm.MediaType, Value: []byte{0xa0}}); err == nil {
		t.Fatal("garbage accepted")
	}
}

// FuzzBinding: the unverified binding reader never panics and reports the
// Challenge's key hash only with a matching binder.
func FuzzBinding(f *testing.F) {
	gs := loadGolden(f)
	for _, g := range gs {
		f.Add(g.ev.Value)
	}
	ch := gs[0].ch
	f.Fuzz(func(t *testing.T, data []byte) {
		nonce, kh, err := tpm.Binding(ch, postauth.Evidence{Type: tpm.MediaType, Value: data})
		if err == nil && kh != nil && !bytes.Equal(nonce, ch.Binder) {
			t.Fatal("a key hash without the binder")
		}
	})
}
