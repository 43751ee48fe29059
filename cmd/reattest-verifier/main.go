// Command reattest-verifier runs a verifier service that speaks the
// Veraison challenge-response API v1 and issues EARs (EAT Attestation
// Results, ES256) over reattest Evidence: software EAT and TPM 2.0 quotes.
// docs/verification.md describes the API and how relying parties use it.
//
//	go run ./cmd/reattest-verifier -softeat-key agent-attestation.pub.pem
//
// Flags:
//
//	-listen addr         listen address (default 127.0.0.1:8080)
//	-tls-cert, -tls-key  serve HTTPS with this certificate and key (PEM)
//	-signing-key file    EAR signing key (PEM, ECDSA P-256); without it a
//	                     fresh key is generated for this run
//	-softeat-key file    trusted software EAT attestation key (PEM public
//	                     key); repeatable
//	-tpm-ak file         trusted TPM attestation key (TPMT_PUBLIC bytes);
//	                     repeatable
//	-tpm-ak-root file    trusted TPM enrollment CA root (PEM): AKs whose
//	                     AK certificate chains to it; repeatable
//	-tpm-allow-software-key
//	                     accept TPM Evidence that does not certify the
//	                     authenticator key as TPM-resident (default: refused)
//	-session-ttl d       session lifetime (default 2m30s)
//	-max-sessions n      live session limit (default 1024)
//	-v                   log every request (never Evidence)
//
// At start it prints the EAR verification key as a JWK on one line of
// standard output (relying parties pin it), then the base URL.
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/verifier"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "reattest-verifier:", err)
		os.Exit(1)
	}
}

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

// run parses args, starts the service and serves until ctx ends. ready,
// if not nil, receives the base URL once the service listens.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("reattest-verifier", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "listen address")
	certFile := fs.String("tls-cert", "", "TLS certificate (PEM); with -tls-key, serve HTTPS")
	keyFile := fs.String("tls-key", "", "TLS private key (PEM)")
	signingKey := fs.String("signing-key", "", "EAR signing key (PEM, ECDSA P-256); default: a fresh key for this run")
	ttl := fs.Duration("session-ttl", verifier.DefaultSessionTTL, "session lifetime")
	maxSessions := fs.Int("max-sessions", verifier.DefaultMaxSessions, "live session limit")
	verbose := fs.Bool("v", false, "log every request (never Evidence)")
	var softKeys, tpmAKs, tpmRoots files
	fs.Var(&softKeys, "softeat-key", "trusted software EAT attestation key (PEM public key); repeatable")
	fs.Var(&tpmAKs, "tpm-ak", "trusted TPM attestation key (TPMT_PUBLIC bytes); repeatable")
	fs.Var(&tpmRoots, "tpm-ak-root", "trusted TPM enrollment CA root (PEM certificate): AKs certified by it; repeatable")
	tpmSoftwareKey := fs.Bool("tpm-allow-software-key", false, "accept TPM Evidence that does not certify the authenticator key as TPM-resident")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if (*certFile == "") != (*keyFile == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	var opts []verifier.Option
	if len(softKeys) > 0 {
		var keys []crypto.PublicKey
		for _, p := range softKeys {
			k, err := softeat.LoadPublicKey(p)
			if err != nil {
				return fmt.Errorf("-softeat-key %s: %w", p, err)
			}
			keys = append(keys, k)
		}
		v, err := softeat.NewVerifier(keys)
		if err != nil {
			return err
		}
		opts = append(opts, verifier.SoftEAT(v))
	}
	if len(tpmAKs) > 0 || len(tpmRoots) > 0 {
		var topts []tpm.VerifierOption
		for _, p := range tpmAKs {
			b, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("-tpm-ak: %w", err)
			}
			topts = append(topts, tpm.WithPinnedAKs(b))
		}
		for _, p := range tpmRoots {
			root, err := loadCertificate(p)
			if err != nil {
				return fmt.Errorf("-tpm-ak-root %s: %w", p, err)
			}
			topts = append(topts, tpm.WithAKRoots(root))
		}
		if *tpmSoftwareKey {
			topts = append(topts, tpm.AllowSoftwareKey())
		}
		v, err := tpm.NewVerifier(topts...)
		if err != nil {
			return err
		}
		opts = append(opts, verifier.TPM(v))
	}
	if len(opts) == 0 {
		return errors.New("no trusted attestation key: give -softeat-key, -tpm-ak or -tpm-ak-root")
	}
	var key *ecdsa.PrivateKey
	var err error
	if *signingKey != "" {
		if key, err = softeat.LoadKey(*signingKey); err != nil {
			return fmt.Errorf("-signing-key: %w", err)
		}
	} else {
		if key, err = verifier.GenerateKey(); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "reattest-verifier: no -signing-key: generated a key for this run (EARs will not verify after a restart)")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	opts = append(opts, verifier.WithSessionTTL(*ttl), verifier.WithMaxSessions(*maxSessions),
		verifier.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))))
	svc, err := verifier.NewService(key, opts...)
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv, err := verifier.Start(ln, svc, tlsConfig)
	if err != nil {
		ln.Close()
		return err
	}
	defer srv.Close()
	fmt.Fprintf(stdout, "%s\n", svc.PublicJWK())
	fmt.Fprintf(stderr, "reattest-verifier: serving %s (media types %s)\n", srv.URL(), strings.Join(svc.MediaTypes(), ", "))
	if ready != nil {
		ready <- srv.URL()
	}
	<-ctx.Done()
	return nil
}

// loadCertificate reads one PEM certificate.
func loadCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
