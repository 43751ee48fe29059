package tdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
)

// intelQEVendorID is the QE vendor id of Intel's quoting enclave
// (939A7233-F79C-4CA9-940A-0DB3957F0607), in the quote header.
var intelQEVendorID = []byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}

// TD attribute bits (TDX module ABI, TDINFO_STRUCT.ATTRIBUTES, little-endian
// 64-bit value).
const (
	// AttrDebug is TUD.DEBUG (bit 0): the host can read and change the
	// TD's memory and CPU state. A debug TD's quote proves nothing about
	// what runs in it.
	AttrDebug = 1 << 0
)

// Quote is the content of a TDX quote (version 4, or version 5 with a
// TDX 1.0 or TDX 1.5 body) that policy and logs care about. [ParseQuote]
// fills it from the raw bytes; nothing in it is verified until the
// [Verifier] accepted the Evidence that carries it. Byte fields are in
// the quote's byte order (MR* and RTMRs as the TDX module wrote them).
type Quote struct {
	// Version is the quote format version, 4 or 5.
	Version int
	// TEETCBSVN is the TDX module's TEE_TCB_SVN (16 bytes).
	TEETCBSVN []byte
	// TEETCBSVN2 is TEE_TCB_SVN_2 (16 bytes) of a V5 TDX 1.5 body, else nil.
	TEETCBSVN2 []byte
	// MRSEAM and MRSIGNERSEAM measure and sign the TDX module (48 bytes).
	MRSEAM, MRSIGNERSEAM []byte
	// SEAMAttributes (8 bytes) are the TDX module's attributes.
	SEAMAttributes []byte
	// TDAttributes (8 bytes, little-endian) are the TD's attributes;
	// [AttrDebug] is bit 0.
	TDAttributes []byte
	// XFAM (8 bytes) is the TD's extended features mask.
	XFAM []byte
	// MRTD measures the TD's initial contents (48 bytes).
	MRTD []byte
	// MRCONFIGID, MROWNER and MROWNERCONFIG are set by the host at TD
	// creation (48 bytes each).
	MRCONFIGID, MROWNER, MROWNERCONFIG []byte
	// RTMRs are the four runtime measurement registers (48 bytes each).
	RTMRs [4][]byte
	// MRSERVICETD (48 bytes) of a V5 TDX 1.5 body, else nil.
	MRSERVICETD []byte
	// ReportData is the TD's REPORTDATA (64 bytes).
	ReportData []byte
	// QEVendorID is the header's QE vendor id (16 bytes).
	QEVendorID []byte

	proto     any    // *pb.QuoteV4 or *pb.QuoteV5, for package verify
	signed    []byte // header || body: what the attestation key signed
	sig       []byte // the attestation key's signature, r || s
	certified []byte // attestation key || certification data: what the QE and PCK vouch for
}

// Debug reports whether the TD is a debug TD (TD attribute bit 0).
func (q *Quote) Debug() bool { return len(q.TDAttributes) > 0 && q.TDAttributes[0]&AttrDebug != 0 }

// ParseQuote parses a raw TDX quote with go-tdx-guest's ABI parser. It
// accepts version 4 and version 5 quotes (TDX 1.0 and 1.5 bodies) of at
// most MaxQuoteLen bytes with ECDSA-256 attestation keys and QE report
// certification data carrying a PCK certificate chain, and refuses
// anything after the signed data. It verifies no signature.
func ParseQuote(raw []byte) (*Quote, error) {
	if len(raw) == 0 || len(raw) > MaxQuoteLen {
		return nil, errors.New("tdx: quote size out of range")
	}
	p, err := quoteToProto(raw)
	if err != nil {
		return nil, err
	}
	q := &Quote{proto: p}
	var hdr *pb.Header
	var extra []byte
	switch p := p.(type) {
	case *pb.QuoteV4:
		q.Version = 4
		hdr, extra = p.GetHeader(), p.GetExtraBytes()
		b := p.GetTdQuoteBody()
		q.TEETCBSVN, q.MRSEAM, q.MRSIGNERSEAM, q.SEAMAttributes = b.GetTeeTcbSvn(), b.GetMrSeam(), b.GetMrSignerSeam(), b.GetSeamAttributes()
		q.TDAttributes, q.XFAM, q.MRTD = b.GetTdAttributes(), b.GetXfam(), b.GetMrTd()
		q.MRCONFIGID, q.MROWNER, q.MROWNERCONFIG = b.GetMrConfigId(), b.GetMrOwner(), b.GetMrOwnerConfig()
		q.ReportData = b.GetReportData()
		copy(q.RTMRs[:], b.GetRtmrs())
	case *pb.QuoteV5:
		q.Version = 5
		hdr, extra = p.GetHeader(), p.GetExtraBytes()
		b := p.GetTdQuoteBodyDescriptor().GetTdQuoteBodyV5()
		q.TEETCBSVN, q.MRSEAM, q.MRSIGNERSEAM, q.SEAMAttributes = b.GetTeeTcbSvn(), b.GetMrSeam(), b.GetMrSignerSeam(), b.GetSeamAttributes()
		q.TDAttributes, q.XFAM, q.MRTD = b.GetTdAttributes(), b.GetXfam(), b.GetMrTd()
		q.MRCONFIGID, q.MROWNER, q.MROWNERCONFIG = b.GetMrConfigId(), b.GetMrOwner(), b.GetMrOwnerConfig()
		q.ReportData = b.GetReportData()
		q.TEETCBSVN2, q.MRSERVICETD = b.GetTeeTcbSvn2(), b.GetMrServiceTd()
		copy(q.RTMRs[:], b.GetRtmrs())
	default:
		return nil, fmt.Errorf("tdx: unsupported quote type %T", p)
	}
	if len(extra) != 0 {
		return nil, errors.New("tdx: bytes after the quote's signed data")
	}
	// The signed message is header || body (V5: body descriptor), then a
	// 4-byte size and the signed data: signature, attestation key,
	// certification data.
	msgLen := 48 + 584
	if d := q.descriptor(); d != nil {
		msgLen = 48 + 6 + int(d.GetTdQuoteBodySize())
	}
	if len(raw) < msgLen+4+128 || int(binary.LittleEndian.Uint32(raw[msgLen:])) != len(raw)-msgLen-4 {
		return nil, errors.New("tdx: quote signed data size mismatch")
	}
	q.signed, q.sig, q.certified = raw[:msgLen:msgLen], raw[msgLen+4:msgLen+4+64:msgLen+4+64], raw[msgLen+4+64:]
	q.QEVendorID = hdr.GetQeVendorId()
	// abi.CheckQuote checked every size; check the ones this package
	// indexes, so that a change there cannot turn into a panic here.
	for _, f := range [][]byte{q.MRTD, q.MRCONFIGID, q.MROWNER, q.MROWNERCONFIG, q.MRSEAM, q.MRSIGNERSEAM, q.RTMRs[0], q.RTMRs[1], q.RTMRs[2], q.RTMRs[3]} {
		if len(f) != RTMRSize {
			return nil, errors.New("tdx: quote body field of the wrong size")
		}
	}
	if len(q.ReportData) != ReportDataSize || len(q.TEETCBSVN) != 16 || len(q.TDAttributes) != 8 || len(q.XFAM) != 8 || len(q.SEAMAttributes) != 8 {
		return nil, errors.New("tdx: quote body field of the wrong size")
	}
	return q, nil
}

// quoteToProto runs abi.QuoteToProto on peer input. That parser is
// third-party code which can index out of range on some malformed V5
// quotes (a signed-data size above 2^31 becomes a negative int32): a
// panic there must become an error, not a crashed server.
func quoteToProto(raw []byte) (p any, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, errors.New("tdx: malformed quote (parser failed)")
		}
	}()
	p, err = abi.QuoteToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("tdx: parsing quote: %w", err)
	}
	return p, nil
}

// descriptor returns a V5 quote's body descriptor, or nil.
func (q *Quote) descriptor() *pb.TDQuoteBodyDescriptor {
	if p, ok := q.proto.(*pb.QuoteV5); ok {
		return p.GetTdQuoteBodyDescriptor()
	}
	return nil
}

// qeReport returns the quoting enclave's report.
func (q *Quote) qeReport() *pb.EnclaveReport {
	var sd *pb.Ecdsa256BitQuoteV4AuthData
	switch p := q.proto.(type) {
	case *pb.QuoteV4:
		sd = p.GetSignedData()
	case *pb.QuoteV5:
		sd = p.GetSignedData()
	}
	return sd.GetCertificationData().GetQeReportCertificationData().GetQeReport()
}

// machineID is the TD instance identity the Verifier reports as
// MachineID: SHA-256(MRTD || MRCONFIGID || MROWNER || MROWNERCONFIG)
// (docs/tdx.md section 5).
func (q *Quote) machineID() []byte {
	return machineID(q.MRTD, q.MRCONFIGID, q.MROWNER, q.MROWNERCONFIG)
}

func isIntelQE(vendor []byte) bool { return bytes.Equal(vendor, intelQEVendorID) }
