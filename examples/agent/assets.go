package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"embed"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

// The embedded demo credentials. They are public: anyone can read them in
// this repository. They exist so that the demo runs with no setup; NEVER
// use them for anything else. Regenerate with `-mode gen-assets -out DIR`.
//
//go:embed assets
var assets embed.FS

// demoFiles names the asset files.
const (
	fileCA             = "ca.pem"
	fileGatewayCert    = "gateway.pem"
	fileGatewayKey     = "gateway-key.pem"
	fileAgentCert      = "agent.pem"
	fileAgentKey       = "agent-key.pem"
	fileAgentAttKey    = "agent-attestation-key.pem"
	fileAgentAttPub    = "agent-attestation-pub.pem"
	fileGatewayAttKey  = "gateway-attestation-key.pem"
	fileGatewayAttPub  = "gateway-attestation-pub.pem"
	filePaymentsPolicy = "payments-policy.yaml"
)

// readAsset returns the file at path if set, else the embedded asset.
func readAsset(path, name string) ([]byte, error) {
	if path != "" {
		return os.ReadFile(path)
	}
	return assets.ReadFile("assets/" + name)
}

func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := readAsset(path, fileCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no CA certificate")
	}
	return pool, nil
}

func loadKeyPair(certPath, keyPath, certName, keyName string) (tls.Certificate, error) {
	c, err := readAsset(certPath, certName)
	if err != nil {
		return tls.Certificate{}, err
	}
	k, err := readAsset(keyPath, keyName)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(c, k)
}

func loadAttestationKey(path, name string) (*ecdsa.PrivateKey, error) {
	b, err := readAsset(path, name)
	if err != nil {
		return nil, err
	}
	return softeat.ParseKeyPEM(b)
}

func loadAttestationPub(path, name string) (*ecdsa.PublicKey, error) {
	b, err := readAsset(path, name)
	if err != nil {
		return nil, err
	}
	return softeat.ParsePublicKeyPEM(b)
}

func loadPolicy(path string) (*posture.Policy, error) {
	if path != "" {
		return posture.LoadPolicy(path)
	}
	b, err := assets.ReadFile("assets/" + filePaymentsPolicy)
	if err != nil {
		return nil, err
	}
	return posture.ParsePolicy(b, "yaml")
}

// genAssets writes a fresh set of demo credentials to dir (the policy file
// is hand-written and not regenerated).
func genAssets(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	now := time.Now()
	notAfter := now.AddDate(20, 0, 0)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "reattest demo CA (public, never trust)"},
		NotBefore: now.Add(-time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) error {
		return os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644)
	}
	if err := write(fileCA, "CERTIFICATE", caDER); err != nil {
		return err
	}
	leaf := func(certName, keyName, cn string, server bool, serial int64) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			return err
		}
		if err := write(certName, "CERTIFICATE", der); err != nil {
			return err
		}
		return writeKey(dir, keyName, "", key)
	}
	if err := leaf(fileGatewayCert, fileGatewayKey, "gateway.demo", true, 2); err != nil {
		return err
	}
	if err := leaf(fileAgentCert, fileAgentKey, "agent-7", false, 3); err != nil {
		return err
	}
	for _, pair := range [][2]string{{fileAgentAttKey, fileAgentAttPub}, {fileGatewayAttKey, fileGatewayAttPub}} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		if err := writeKey(dir, pair[0], pair[1], key); err != nil {
			return err
		}
	}
	return nil
}

func writeKey(dir, keyName, pubName string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if pubName == "" {
		return nil
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, pubName), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}
