//go:build cgo

package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tpm"
)

// TestKeySign: the TPM key signs digests that crypto/ecdsa and crypto/rsa
// verify, for each scheme a TLS 1.3 stack asks for, and refuses what it
// cannot do.
func TestKeySign(t *testing.T) {
	d256 := sha256.Sum256([]byte("message"))
	d384 := sha512.Sum384([]byte("message"))
	t.Run("ecdsa", func(t *testing.T) {
		k := newKey(t)
		pub := k.Public().(*ecdsa.PublicKey)
		if k.Algorithm() != tpm.KeyECCP256 || pub.Curve.Params().BitSize != 256 {
			t.Fatalf("key %v", k.Algorithm())
		}
		for _, c := range []struct {
			h crypto.Hash
			d []byte
		}{{crypto.SHA256, d256[:]}, {crypto.SHA384, d384[:]}} {
			sig, err := k.Sign(rand.Reader, c.d, c.h)
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(pub, c.d, sig) {
				t.Fatalf("%v signature does not verify", c.h)
			}
		}
		if _, err := k.Sign(rand.Reader, d256[:20], crypto.SHA256); err == nil {
			t.Fatal("short digest signed")
		}
		if _, err := k.Sign(rand.Reader, d256[:20], crypto.SHA1); err == nil {
			t.Fatal("SHA-1 signed")
		}
	})
	t.Run("rsa", func(t *testing.T) {
		k := newKey(t, tpm.WithKeyAlgorithm(tpm.KeyRSA2048))
		pub := k.Public().(*rsa.PublicKey)
		if pub.N.BitLen() != 2048 || pub.E != 65537 {
			t.Fatal("not an RSA 2048 key")
		}
		for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto} {
			opts := &rsa.PSSOptions{SaltLength: salt, Hash: crypto.SHA256}
			sig, err := k.Sign(rand.Reader, d256[:], opts)
			if err != nil {
				t.Fatal(err)
			}
			// TLS 1.3 verifies PSS with a salt as long as the hash.
			if err := rsa.VerifyPSS(pub, crypto.SHA256, d256[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
				t.Fatal(err)
			}
		}
		sig, err := k.Sign(rand.Reader, d256[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d256[:], sig); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Sign(rand.Reader, d256[:], &rsa.PSSOptions{SaltLength: 10, Hash: crypto.SHA256}); err == nil {
			t.Fatal("a salt length the TPM does not use was accepted")
		}
	})
}

// TestKeyBlob: a key saved with Blob loads again on the same TPM, with the
// same public key; a closed key no longer signs.
func TestKeyBlob(t *testing.T) {
	ctx := context.Background()
	k := newKey(t)
	again, err := tpm.LoadKey(ctx, simTPM(t), k.Blob())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.PublicArea(), k.PublicArea()) || !bytes.Equal(again.Name(), k.Name()) {
		t.Fatal("another key loaded")
	}
	d := sha256.Sum256([]byte("x"))
	sig, err := again.Sign(nil, d[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatalf("the loaded key does not sign: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Sign(nil, d[:], crypto.SHA256); err == nil {
		t.Fatal("a closed key signed")
	}
	blob := k.Blob()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": blob[:len(blob)-1],
		"trailing":  append(bytes.Clone(blob), 0),
		"private":   append(bytes.Clone(blob[:len(blob)-3]), blob[len(blob)-3]^1, blob[len(blob)-2], blob[len(blob)-1]),
	} {
		if k, err := tpm.LoadKey(ctx, simTPM(t), b); err == nil {
			k.Close()
			t.Errorf("%s: loaded", name)
		}
	}
	// A public area that is not of a non-duplicable signing key is refused
	// before it reaches the TPM.
	pub, _ := tpm2.Unmarshal[tpm2.TPMTPublic](k.PublicArea())
	pub.ObjectAttributes.FixedTPM = false
	area := tpm2.Marshal(*pub)
	b := append(tpm2.Marshal(tpm2.BytesAs2B[tpm2.TPMTPublic](area)), blob[2+len(k.PublicArea()):]...)
	if k, err := tpm.LoadKey(ctx, simTPM(t), b); err == nil {
		k.Close()
		t.Fatal("a duplicable public area loaded")
	}
}

// TestKeyTLSClientCertificate: the TPM key is the key of a TLS client
// certificate, and a real TLS 1.3 handshake with client authentication
// completes (the TPM signs the handshake's CertificateVerify), for ECDSA
// P-256 and RSA-PSS.
func TestKeyTLSClientCertificate(t *testing.T) {
	for _, alg := range []tpm.KeyAlgorithm{tpm.KeyECCP256, tpm.KeyRSA2048} {
		t.Run(alg.String(), func(t *testing.T) {
			k := newKey(t, tpm.WithKeyAlgorithm(alg))
			pki := postauthtest.New(t)
			cc := pki.Issue(t, "agent", postauthtest.WithKey(k))
			cc.PrivateKey = k
			client, server := postauthtest.Pair(t, pki.ClientConfig(&cc), pki.ServerConfig(pki.Issue(t, "localhost", postauthtest.ServerAuth())))
			st := server.ConnectionState()
			if st.Version != tls.VersionTLS13 || len(st.PeerCertificates) != 1 || len(st.VerifiedChains) == 0 {
				t.Fatalf("handshake state %+v", st)
			}
			if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(st.PeerCertificates[0].PublicKey) {
				t.Fatal("the server saw another client key")
			}
			_ = client
		})
	}
}

// TestKeyIdentity: the TPM key is an Exported Authenticator key, with a
// CA-issued certificate (postauth.NewIdentity) or a self-signed one
// (postauth.SelfSignedIdentity, attested-key-only trust): an attested
// exchange whose Evidence certifies that key passes, and the Result's key
// hash is the TPM key's.
func TestKeyIdentity(t *testing.T) {
	for _, alg := range []tpm.KeyAlgorithm{tpm.KeyECCP256, tpm.KeyRSA2048} {
		t.Run(alg.String(), func(t *testing.T) {
			k := newKey(t, tpm.WithKeyAlgorithm(alg))
			att := enrolledAttester(t, k)
			// Self-signed: only the Evidence vouches for the key.
			e := newTLSEnvKey(t, chainVerifier(t), nil, postauth.WithKeyTrust(postauth.KeyTrustAttestedKeyOnly))
			id, err := postauth.SelfSignedIdentity(k, "agent", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			e.clientID = id
			res, err := e.exchange(att)
			if err != nil {
				t.Fatal(err)
			}
			spki, _ := x509.MarshalPKIXPublicKey(k.Public())
			kh := sha256.Sum256(spki)
			if !bytes.Equal(res.KeyHash(), kh[:]) {
				t.Fatal("key hash is not the TPM key's")
			}
			// NewIdentity with a certificate issued for the TPM key, and
			// the same key as TLS client key (same-peer trust).
			pki := postauthtest.New(t)
			cc := pki.Issue(t, "agent", postauthtest.WithKey(k))
			if _, err := postauth.NewIdentity(k, cc.Certificate...); err != nil {
				t.Fatal(err)
			}
			e = newTLSEnvKey(t, chainVerifier(t), k)
			if _, err := e.exchange(att); err != nil {
				t.Fatal(err)
			}
		})
	}
}
