package tdxtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
	"sync"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/testing/testdata"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"google.golang.org/protobuf/proto"

	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/posture"
)

// TD is the content of a simulated TD's quote body. Nil or short fields
// are zero-filled to their size.
type TD struct {
	MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG []byte // 48 bytes each
	// RTMRs are the initial RTMR values (zero by default; RTMR3 must
	// start at zero for a posture Tracker).
	RTMRs [4][]byte
	// TDAttributes (8 bytes); set bit 0 of byte 0 for a debug TD.
	TDAttributes []byte
	// XFAM (8 bytes); default e71a060000000000, the sample quote's.
	XFAM []byte
	// TEETCBSVN (16 bytes); default 03000400000000000000000000000000.
	TEETCBSVN []byte
	// MRSEAM, MRSIGNERSEAM (48 bytes; MRSIGNERSEAM zero as for Intel's
	// modules) and SEAMAttributes (8 bytes).
	MRSEAM, MRSIGNERSEAM, SEAMAttributes []byte
}

// PlatformConfig describes a simulated platform. The zero value is a
// platform like the one of go-tdx-guest's sample quote, quoting V4.
type PlatformConfig struct {
	// Version is the quote version: 4 (default) or 5 (a TDX 1.5 body).
	Version int
	// FMSPC (6 bytes), PCEID (2 bytes), the SGX TCB components (16
	// bytes, CPUSVN) and PCESVN of the PCK certificate. Defaults:
	// 50806f000000, 0000, 03030202020100020000000000000000, 11.
	FMSPC, PCEID, CPUSVN []byte
	PCESVN               uint16
	// QEISVSVN is the quoting enclave's ISVSVN (default 4).
	QEISVSVN uint16
	// QEVendorID (16 bytes) is the quote header's QE vendor id (default
	// Intel's, 939a7233f79c4ca9940a0db3957f0607).
	QEVendorID []byte
	// TD is the TD's quote body.
	TD TD
}

// Platform is a simulated TDX machine with one TD: a PCK certificate
// issued by the CA, a quoting enclave with its own attestation key, and
// the TD's registers. It implements tdx.QuoteProvider. RTMRs can be
// extended at run time ([Platform.RTMR]) and every quote reports their
// current values. Safe for concurrent use.
type Platform struct {
	ca      *CA
	cfg     PlatformConfig
	pckKey  *ecdsa.PrivateKey
	pck     *x509.Certificate
	akKey   *ecdsa.PrivateKey
	chain   []byte
	version int

	mu   sync.Mutex
	rtmr [4][]byte
	// The QE report signature, made once per QE report like the one a
	// real quoting enclave gets when its attestation key is certified:
	// every quote of the platform carries the same certification data.
	qeReport, qeReportSig []byte
}

var _ tdx.QuoteProvider = (*Platform)(nil)

// NewPlatform returns a platform with a fresh PCK key and certificate
// issued by ca; cfg may be nil.
func (ca *CA) NewPlatform(tb TB, cfg *PlatformConfig) *Platform {
	tb.Helper()
	p, err := ca.newPlatform(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func fill(b []byte, n int, def []byte) []byte {
	if b == nil {
		b = def
	}
	out := make([]byte, n)
	copy(out, b)
	return out
}

func (ca *CA) newPlatform(cfg *PlatformConfig) (*Platform, error) {
	c := PlatformConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.Version == 0 {
		c.Version = 4
	}
	if c.Version != 4 && c.Version != 5 {
		return nil, fmt.Errorf("tdxtest: quote version %d", c.Version)
	}
	c.FMSPC = fill(c.FMSPC, 6, []byte{0x50, 0x80, 0x6f, 0, 0, 0})
	c.PCEID = fill(c.PCEID, 2, nil)
	c.CPUSVN = fill(c.CPUSVN, 16, []byte{3, 3, 2, 2, 2, 1, 0, 2})
	if c.PCESVN == 0 {
		c.PCESVN = 11
	}
	if c.QEISVSVN == 0 {
		c.QEISVSVN = 4
	}
	td := &c.TD
	td.MRTD, td.MRCONFIGID = fill(td.MRTD, 48, nil), fill(td.MRCONFIGID, 48, nil)
	td.MROWNER, td.MROWNERCONFIG = fill(td.MROWNER, 48, nil), fill(td.MROWNERCONFIG, 48, nil)
	td.TDAttributes = fill(td.TDAttributes, 8, nil)
	td.XFAM = fill(td.XFAM, 8, []byte{0xe7, 0x1a, 0x06})
	td.TEETCBSVN = fill(td.TEETCBSVN, 16, []byte{3, 0, 4})
	td.MRSEAM, td.MRSIGNERSEAM = fill(td.MRSEAM, 48, nil), fill(td.MRSIGNERSEAM, 48, nil)
	td.SEAMAttributes = fill(td.SEAMAttributes, 8, nil)
	p := &Platform{ca: ca, cfg: c, version: c.Version}
	for i := range 4 {
		p.rtmr[i] = fill(td.RTMRs[i], 48, nil)
	}
	var err error
	if p.pckKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if p.akKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if p.pck, err = ca.issuePCK(&p.pckKey.PublicKey, &c); err != nil {
		return nil, err
	}
	p.chain = slices.Concat(pemCert(p.pck), pemCert(ca.PlatformCA), pemCert(ca.Root))
	return p, nil
}

// PCK returns the platform's PCK certificate.
func (p *Platform) PCK() *x509.Certificate { return p.pck }

// Config returns the platform's configuration with the defaults filled in.
func (p *Platform) Config() PlatformConfig { return p.cfg }

// SGX PCK certificate extension OIDs (Intel SGX PCK Certificate and CRL
// Profile).
var (
	oidSGX        = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidPPID       = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 1}
	oidTCB        = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2}
	oidPCEID      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 3}
	oidFMSPC      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 4}
	oidSGXType    = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 5}
	oidTCBCompPfx = []int{1, 2, 840, 113741, 1, 13, 1, 2}
)

// sgxExtension encodes the SGX extension of a PCK certificate: PPID, TCB
// (16 SGX components, PCESVN, CPUSVN), PCEID, FMSPC and SGX type.
func sgxExtension(ppid []byte, c *PlatformConfig) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidPPID)
			b.AddASN1OctetString(ppid)
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidTCB)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for i := range 16 {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(append(slices.Clone(oidTCBCompPfx), i+1))
						b.AddASN1Int64(int64(c.CPUSVN[i]))
					})
				}
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(append(slices.Clone(oidTCBCompPfx), 17))
					b.AddASN1Int64(int64(c.PCESVN))
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(append(slices.Clone(oidTCBCompPfx), 18))
					b.AddASN1OctetString(c.CPUSVN)
				})
			})
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidPCEID)
			b.AddASN1OctetString(c.PCEID)
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidFMSPC)
			b.AddASN1OctetString(c.FMSPC)
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidSGXType)
			b.AddASN1Enum(0) // Standard
		})
	})
	return b.Bytes()
}

// issuePCK issues a PCK certificate with the six extensions of Intel's
// (authority and subject key ids, CRL distribution point, key usage,
// basic constraints, SGX extension).
func (ca *CA) issuePCK(pub *ecdsa.PublicKey, c *PlatformConfig) (*x509.Certificate, error) {
	ppid := make([]byte, 16)
	if _, err := rand.Read(ppid); err != nil {
		return nil, err
	}
	ext, err := sgxExtension(ppid, c)
	if err != nil {
		return nil, err
	}
	tmpl := ca.template("Intel SGX PCK Certificate", pub)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	tmpl.CRLDistributionPoints = []string{"https://tdx-test.invalid/sgx/certification/v4/pckcrl?ca=platform&encoding=der"}
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSGX, Value: ext}}
	return createCert(tmpl, ca.PlatformCA, pub, ca.pcaKey)
}

// Quote mints a quote with REPORTDATA reportData and the TD's current
// registers (see the package documentation for the recipe).
func (p *Platform) Quote(ctx context.Context, reportData [tdx.ReportDataSize]byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	rtmrs := [4][]byte{slices.Clone(p.rtmr[0]), slices.Clone(p.rtmr[1]), slices.Clone(p.rtmr[2]), slices.Clone(p.rtmr[3])}
	p.mu.Unlock()
	return p.mint(reportData[:], rtmrs, nil)
}

// QuoteWith mints a quote like Quote, with the TD body changed by edit
// first (to forge one field at a time in tests: the result is signed
// correctly by this platform's keys).
func (p *Platform) QuoteWith(reportData [tdx.ReportDataSize]byte, edit func(td *TD)) ([]byte, error) {
	p.mu.Lock()
	rtmrs := [4][]byte{slices.Clone(p.rtmr[0]), slices.Clone(p.rtmr[1]), slices.Clone(p.rtmr[2]), slices.Clone(p.rtmr[3])}
	p.mu.Unlock()
	return p.mint(reportData[:], rtmrs, edit)
}

// mint builds and signs a quote:
//
//  1. clone the structure of go-tdx-guest's sample quote (V4 or V5);
//  2. set the TD body (registers, attributes, REPORTDATA);
//  3. sign header || body with the platform's attestation key (ECDSA
//     P-256, r || s) and put the key (X || Y) in the signed data;
//  4. set the QE report's REPORTDATA to SHA-256(attestation key ||
//     QE authentication data) || 0^32 and sign the QE report with the
//     PCK key;
//  5. put the PCK chain (PCK, PCK Platform CA, root; PEM) in the
//     certification data, fix every size field, and serialise with
//     abi.QuoteToAbiBytes.
func (p *Platform) mint(rd []byte, rtmrs [4][]byte, edit func(*TD)) ([]byte, error) {
	td := p.cfg.TD
	td.RTMRs = rtmrs
	if edit != nil {
		edit(&td)
	}
	var sample []byte
	if p.version == 5 {
		sample = testdata.RawQuoteV5
	} else {
		sample = testdata.RawQuote
	}
	parsed, err := abi.QuoteToProto(sample)
	if err != nil {
		return nil, err
	}
	var hdr *pb.Header
	var sd *pb.Ecdsa256BitQuoteV4AuthData
	var body []byte
	switch q := proto.Clone(parsed.(proto.Message)).(type) {
	case *pb.QuoteV4:
		q.ExtraBytes = nil
		b := q.TdQuoteBody
		b.TeeTcbSvn, b.MrSeam, b.MrSignerSeam, b.SeamAttributes = td.TEETCBSVN, td.MRSEAM, td.MRSIGNERSEAM, td.SEAMAttributes
		b.TdAttributes, b.Xfam, b.MrTd = td.TDAttributes, td.XFAM, td.MRTD
		b.MrConfigId, b.MrOwner, b.MrOwnerConfig = td.MRCONFIGID, td.MROWNER, td.MROWNERCONFIG
		b.Rtmrs, b.ReportData = td.RTMRs[:], rd
		if body, err = abi.TdQuoteBodyToAbiBytes(b); err != nil {
			return nil, err
		}
		hdr, sd = q.Header, q.SignedData
		parsed = q
	case *pb.QuoteV5:
		q.ExtraBytes = nil
		b := q.TdQuoteBodyDescriptor.TdQuoteBodyV5
		b.TeeTcbSvn, b.MrSeam, b.MrSignerSeam, b.SeamAttributes = td.TEETCBSVN, td.MRSEAM, td.MRSIGNERSEAM, td.SEAMAttributes
		b.TdAttributes, b.Xfam, b.MrTd = td.TDAttributes, td.XFAM, td.MRTD
		b.MrConfigId, b.MrOwner, b.MrOwnerConfig = td.MRCONFIGID, td.MROWNER, td.MROWNERCONFIG
		b.Rtmrs, b.ReportData = td.RTMRs[:], rd
		b.TeeTcbSvn2, b.MrServiceTd = slices.Clone(td.TEETCBSVN), make([]byte, 48)
		if body, err = abi.TdQuoteBodyDescriptorToAbiBytes(q.TdQuoteBodyDescriptor); err != nil {
			return nil, err
		}
		hdr, sd = q.Header, q.SignedData
		parsed = q
	default:
		return nil, fmt.Errorf("tdxtest: sample quote of type %T", parsed)
	}
	if p.cfg.QEVendorID != nil {
		hdr.QeVendorId = fill(p.cfg.QEVendorID, 16, nil)
	}
	h, err := abi.HeaderToAbiBytes(hdr)
	if err != nil {
		return nil, err
	}
	if sd.Signature, err = signP256(p.akKey, slices.Concat(h, body)); err != nil {
		return nil, err
	}
	if sd.EcdsaAttestationKey, err = pubXY(&p.akKey.PublicKey); err != nil {
		return nil, err
	}
	qrc := sd.CertificationData.QeReportCertificationData
	qr := qrc.QeReport
	qr.CpuSvn = slices.Clone(p.cfg.CPUSVN)
	qr.IsvSvn = uint32(p.cfg.QEISVSVN)
	binding := sha256.Sum256(slices.Concat(sd.EcdsaAttestationKey, qrc.QeAuthData.Data))
	qr.ReportData = append(binding[:], make([]byte, 32)...)
	rawQR, err := abi.EnclaveReportToAbiBytes(qr)
	if err != nil {
		return nil, err
	}
	if qrc.QeReportSignature, err = p.signQEReport(rawQR); err != nil {
		return nil, err
	}
	qrc.PckCertificateChainData.PckCertChain = slices.Clone(p.chain)
	qrc.PckCertificateChainData.Size = uint32(len(p.chain))
	qrcLen := len(rawQR) + 64 + 2 + len(qrc.QeAuthData.Data) + 6 + len(p.chain)
	sd.CertificationData.Size = uint32(qrcLen)
	signedLen := 64 + 64 + 6 + qrcLen
	switch q := parsed.(type) {
	case *pb.QuoteV4:
		q.SignedDataSize = uint32(signedLen)
	case *pb.QuoteV5:
		q.SignedDataSize = int32(signedLen)
	}
	return abi.QuoteToAbiBytes(parsed)
}

// signQEReport signs a QE report with the PCK key, once: the same report
// gets the same signature again.
func (p *Platform) signQEReport(report []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bytes.Equal(report, p.qeReport) {
		return slices.Clone(p.qeReportSig), nil
	}
	sig, err := signP256(p.pckKey, report)
	if err != nil {
		return nil, err
	}
	p.qeReport, p.qeReportSig = slices.Clone(report), slices.Clone(sig)
	return sig, nil
}

// RTMR is a simulated RTMR of a Platform: a posture.Register whose Extend
// is the TDX module's RTMR extend, RTMR = SHA-384(RTMR || digest), and
// whose value every later quote of the platform reports. On hardware,
// package tdxguest provides the same over the real RTMR3.
type RTMR struct {
	p   *Platform
	idx int
}

var _ posture.Register = (*RTMR)(nil)

// RTMR returns the simulated RTMR index (0 to 3) of the platform's TD.
func (p *Platform) RTMR(index int) *RTMR {
	if index < 0 || index > 3 {
		panic(fmt.Sprintf("tdxtest: RTMR index %d", index))
	}
	return &RTMR{p: p, idx: index}
}

// Hash is SHA-384, the RTMR hash.
func (r *RTMR) Hash() crypto.Hash { return crypto.SHA384 }

// Extend sets the RTMR to SHA-384(RTMR || digest); digest must be 48
// bytes.
func (r *RTMR) Extend(_ context.Context, digest []byte) error {
	if len(digest) != sha512.Size384 {
		return fmt.Errorf("tdxtest: RTMR extend with %d bytes, want 48", len(digest))
	}
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	h := sha512.New384()
	h.Write(r.p.rtmr[r.idx])
	h.Write(digest)
	r.p.rtmr[r.idx] = h.Sum(nil)
	return nil
}

// Read returns the RTMR's value.
func (r *RTMR) Read(context.Context) ([]byte, error) {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	return slices.Clone(r.p.rtmr[r.idx]), nil
}

// Revoke returns the serial number of the platform's PCK certificate, for
// CollateralConfig.RevokedPCKs.
func (p *Platform) Revoke() *big.Int { return new(big.Int).Set(p.pck.SerialNumber) }
