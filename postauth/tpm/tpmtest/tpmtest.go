// Package tpmtest helps tests and demos of package tpm run against real
// TPM implementations: a test TPM manufacturer that writes EK
// certificates into a TPM's NV memory (as TPM vendors and swtpm_setup
// do), a connection to swtpm (REATTEST_SWTPM), the trust roots of swtpm's
// local CA, and a way to turn the in-process simulator into another
// machine (a new endorsement seed).
//
// Nothing here is for production: a Manufacturer's certificates are worth
// what its key, held in process memory, is worth.
package tpmtest

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/reattest/reattest/postauth/tpm"
)

// Manufacturer is a test TPM manufacturer: a CA that certifies
// endorsement keys.
type Manufacturer struct {
	root *x509.Certificate
	key  crypto.Signer
	name string
}

// NewManufacturer returns a Manufacturer with a fresh ECDSA P-256 root
// named name.
func NewManufacturer(name string) (*Manufacturer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " EK root", Organization: []string{name}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(30, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Manufacturer{root: root, key: key, name: name}, nil
}

// Root is the manufacturer's root certificate: the EK root a verifier or an
// enrollment CA trusts.
func (m *Manufacturer) Root() *x509.Certificate { return m.root }

// Certify issues an EK certificate for pub in the shape of real ones: an
// empty subject, a critical subject alternative name of directoryName form
// (TPM manufacturer, model and version attributes), the extended key usage
// tcg-kp-EKCertificate, key usage keyEncipherment.
func (m *Manufacturer) Certify(pub crypto.PublicKey) ([]byte, error) {
	san, err := tpmSAN(m.name)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(30, 0, 0), // EK certificates rarely expire (swtpm's: 9999)
		KeyUsage:              x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: san}},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, m.root, pub, m.key)
}

// tpmSAN is a subjectAltName with one directoryName: TPM manufacturer,
// model and version (TCG EK Credential Profile).
func tpmSAN(model string) ([]byte, error) {
	name := pkix.RDNSequence{{
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 1}, Value: "id:FFFFF1D0"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 2}, Value: model},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 3}, Value: "id:00010001"},
	}}
	rdn, err := asn1.Marshal(name)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(4).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddBytes(rdn) })
	})
	return b.Bytes()
}

// PersistentEK is the persistent handle where Provision stores the EK
// (TCG Provisioning Guidance: the RSA EK).
const PersistentEK tpm2.TPMHandle = 0x81010001

// Provision does what a TPM vendor (or swtpm_setup) does at
// manufacturing: it creates the TPM's RSA 2048 EK (the primary key of the
// TCG template), makes it persistent at PersistentEK, certifies it and
// writes the certificate into NV index tpm.EKCertIndexRSA with platform
// authorization (replacing what is there). It needs empty platform and
// owner authorization values, as the simulator and swtpm have before
// anyone sets them. It returns the EK as [tpm.ReadEK] reads it back.
func (m *Manufacturer) Provision(ctx context.Context, t transport.TPM) (*tpm.EK, error) {
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if old, err := (tpm2.ReadPublic{ObjectHandle: PersistentEK}).Execute(t); err == nil {
		if _, err := (tpm2.EvictControl{Auth: owner, ObjectHandle: &tpm2.NamedHandle{Handle: PersistentEK, Name: old.Name}, PersistentHandle: PersistentEK}).Execute(t); err != nil {
			return nil, fmt.Errorf("tpmtest: evicting the old EK: %w", err)
		}
	}
	ek, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tpm2.RSAEKTemplate)}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpmtest: creating the EK: %w", err)
	}
	_, err = tpm2.EvictControl{Auth: owner, ObjectHandle: &tpm2.NamedHandle{Handle: ek.ObjectHandle, Name: ek.Name}, PersistentHandle: PersistentEK}.Execute(t)
	tpm2.FlushContext{FlushHandle: ek.ObjectHandle}.Execute(t) //nolint:errcheck // best effort
	if err != nil {
		return nil, fmt.Errorf("tpmtest: persisting the EK: %w", err)
	}
	area, err := ek.OutPublic.Contents()
	if err != nil {
		return nil, err
	}
	pub, err := tpm2.Pub(*area)
	if err != nil {
		return nil, err
	}
	der, err := m.Certify(pub)
	if err != nil {
		return nil, err
	}
	if err := WriteNV(t, tpm.EKCertIndexRSA, der); err != nil {
		return nil, err
	}
	return tpm.ReadEK(ctx, t, tpm.WithEKCertIndex(tpm.EKCertIndexRSA))
}

// WriteNV defines NV index idx with platform authorization (undefining it
// first if it exists) with the attributes of EK certificate indices
// (platform write, owner and auth read, no dictionary-attack protection),
// and writes data into it.
func WriteNV(t transport.TPM, idx uint32, data []byte) error {
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	h := tpm2.TPMHandle(idx)
	if old, err := (tpm2.NVReadPublic{NVIndex: h}).Execute(t); err == nil {
		if _, err := (tpm2.NVUndefineSpace{AuthHandle: platform, NVIndex: tpm2.NamedHandle{Handle: h, Name: old.NVName}}).Execute(t); err != nil {
			return fmt.Errorf("tpmtest: undefining NV %#x: %w", idx, err)
		}
	}
	pub := tpm2.TPMSNVPublic{
		NVIndex: h,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true, NoDA: true, PlatformCreate: true,
			NT: tpm2.TPMNTOrdinary,
		},
		DataSize: uint16(len(data)),
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: platform, PublicInfo: tpm2.New2B(pub)}).Execute(t); err != nil {
		return fmt.Errorf("tpmtest: defining NV %#x: %w", idx, err)
	}
	name, err := tpm2.NVName(&pub)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += 512 {
		end := min(off+512, len(data))
		if _, err := (tpm2.NVWrite{
			AuthHandle: platform,
			NVIndex:    tpm2.NamedHandle{Handle: h, Name: *name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]},
			Offset:     uint16(off),
		}).Execute(t); err != nil {
			return fmt.Errorf("tpmtest: writing NV %#x: %w", idx, err)
		}
	}
	return nil
}

// ChangeEPS runs TPM2_ChangeEPS with an empty platform authorization: the
// TPM gets a new endorsement primary seed, so a new EK, new
// endorsement-hierarchy AKs and a new machine identifier. On the
// simulator it turns the one TPM of the process into "another machine"
// (its owner hierarchy, and the keys in it, stay). go-tpm has no command
// type for it; this sends the bytes of Part 3, section 24.8.
func ChangeEPS(t transport.TPM) error {
	cmd := []byte{
		0x80, 0x02, // TPM_ST_SESSIONS
		0x00, 0x00, 0x00, 0x1b, // commandSize: 27
		0x00, 0x00, 0x01, 0x24, // TPM_CC_ChangeEPS
		0x40, 0x00, 0x00, 0x0c, // TPM_RH_PLATFORM
		0x00, 0x00, 0x00, 0x09, // authorizationSize
		0x40, 0x00, 0x00, 0x09, // TPM_RS_PW
		0x00, 0x00, // nonce
		0x00,       // session attributes
		0x00, 0x00, // hmac (empty password)
	}
	rsp, err := t.Send(cmd)
	if err != nil {
		return err
	}
	if len(rsp) < 10 {
		return errors.New("tpmtest: short TPM2_ChangeEPS response")
	}
	if rc := uint32(rsp[6])<<24 | uint32(rsp[7])<<16 | uint32(rsp[8])<<8 | uint32(rsp[9]); rc != 0 {
		return fmt.Errorf("tpmtest: TPM2_ChangeEPS: %w", tpm2.TPMRC(rc))
	}
	return nil
}

// FlushTransient flushes every transient object and every loaded session:
// swtpm keeps them across connections, so a test that died leaves them
// behind (the TPM has three object slots).
func FlushTransient(t transport.TPM) error {
	for _, first := range []uint32{0x80000000, 0x02000000, 0x03000000} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: first, PropertyCount: 64}.Execute(t)
		if err != nil {
			return err
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return err
		}
		for _, h := range hs.Handle {
			if uint32(h)>>24 != first>>24 {
				continue
			}
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t); err != nil {
				return fmt.Errorf("tpmtest: flushing %#x: %w", uint32(h), err)
			}
		}
	}
	return nil
}

// EnvSWTPM names the environment variable with the host:port of a swtpm
// TPM 2.0 data port (the control port is the next one). .ci/run sets it.
const EnvSWTPM = "REATTEST_SWTPM"

// SkipMessage is the message of tests skipped for lack of a swtpm.
const SkipMessage = "REATTEST_SWTPM not set: run .ci/run or start swtpm, see CONTRIBUTING.md"

// conn is a transport.TPMCloser over a TCP connection to swtpm's data
// port, which carries raw TPM commands and responses (not the Microsoft
// simulator framing of go-tpm's tpm2/transport/tcp).
type conn struct {
	transport.TPM
	c net.Conn
}

func (c *conn) Close() error { return c.c.Close() }

// Dial connects to swtpm's data port at addr (host:port).
func Dial(addr string) (transport.TPMCloser, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("tpmtest: swtpm at %s: %w", addr, err)
	}
	return &conn{TPM: transport.FromReadWriter(c), c: c}, nil
}

// SWTPMRoots returns the certificates of swtpm's local CA, which signs the
// EK certificates that swtpm_setup --create-ek-cert writes: its root, then
// the issuer (intermediate) certificate. They are found the way
// swtpm_localca finds them: the statedir and issuercert of
// swtpm-localca.conf, in $XDG_CONFIG_HOME (or ~/.config) for a user who
// has one, else /etc; REATTEST_SWTPM_LOCALCA names another configuration
// file.
func SWTPMRoots() (root, issuer *x509.Certificate, err error) {
	conf := os.Getenv("REATTEST_SWTPM_LOCALCA")
	if conf == "" {
		conf = "/etc/swtpm-localca.conf"
		if os.Geteuid() != 0 {
			dir := os.Getenv("XDG_CONFIG_HOME")
			if dir == "" {
				home, _ := os.UserHomeDir()
				dir = filepath.Join(home, ".config")
			}
			if user := filepath.Join(dir, "swtpm-localca.conf"); fileExists(user) {
				conf = user
			}
		}
	}
	f, err := os.Open(conf)
	if err != nil {
		return nil, nil, fmt.Errorf("tpmtest: swtpm local CA configuration: %w", err)
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			vals[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if vals["statedir"] == "" || vals["issuercert"] == "" {
		return nil, nil, fmt.Errorf("tpmtest: %s names no statedir or issuercert", conf)
	}
	if root, err = readPEMCert(filepath.Join(vals["statedir"], "swtpm-localca-rootca-cert.pem")); err != nil {
		return nil, nil, err
	}
	if issuer, err = readPEMCert(vals["issuercert"]); err != nil {
		return nil, nil, err
	}
	return root, issuer, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readPEMCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tpmtest: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("tpmtest: %s holds no certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}
