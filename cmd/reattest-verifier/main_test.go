package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	attKey := postauthtest.NewKey(t)
	att, err := softeat.NewAttester(attKey)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(attKey.Public())
	pubPath := filepath.Join(dir, "att.pub.pem")
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr postauthtest.SyncBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-softeat-key", pubPath}, &stdout, &stderr, ready)
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("run: %v (%s)", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	jwk := strings.TrimSpace(stdout.String())
	pub, err := ear.ParseJWK([]byte(jwk))
	if err != nil {
		t.Fatalf("stdout %q: %v", jwk, err)
	}
	rv, err := ear.NewRemoteVerifier(url, ear.WithVerifierKeys(pub), ear.WithLocalBinding(softeat.MediaType, softeat.Binding))
	if err != nil {
		t.Fatal(err)
	}
	defer rv.Close()
	b := sha256.Sum256([]byte("binder"))
	kh := sha256.Sum256([]byte("spki"))
	ch := postauth.Challenge{Binder: b[:], KeyHash: kh[:], Hash: crypto.SHA256}
	ev, err := att.Attest(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rv.Verify(ctx, ch, ev); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The TPM flags: trust an enrollment CA root (and optionally software
// authenticator keys); the service then accepts TPM quote Evidence.
func TestRunTPM(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "enroll-ca.pem")
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: postauthtest.New(t).Root.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr postauthtest.SyncBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-tpm-ak-root", root, "-tpm-allow-software-key"}, &stdout, &stderr, ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run: %v (%s)", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	if !strings.Contains(stderr.String(), "application/vnd.reattest.tpm-quote+cbor") {
		t.Fatalf("the service does not accept TPM quotes: %s", stderr.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunRefuses(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "not.pem") // exists, holds no certificate
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no trusted key", []string{"-listen", "127.0.0.1:0"}},
		{"missing key file", []string{"-softeat-key", "/nonexistent"}},
		{"tls cert without key", []string{"-softeat-key", "x", "-tls-cert", "c.pem"}},
		{"stray argument", []string{"extra"}},
		{"missing TPM enrollment root", []string{"-tpm-ak-root", "/nonexistent"}},
		{"TPM enrollment root not a certificate", []string{"-tpm-ak-root", notPEM}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := run(context.Background(), tc.args, io.Discard, io.Discard, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if err := run(context.Background(), []string{"-h"}, io.Discard, io.Discard, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}
