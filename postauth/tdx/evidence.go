package tdx

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/reattest/reattest/internal/detcbor"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// MediaType is the CMW media type of TDX quote Evidence (a vendor type;
// docs/tdx.md section 2).
const MediaType = "application/vnd.reattest.tdx-quote+cbor"

// Format names reported in [postauth.Result.Format]. A quote whose PCK
// chain ends at Intel's SGX Root CA is FormatIntel (and HardwareBacked);
// one that ends at another root the Verifier was told to trust (a test
// root, see package tdxtest) is FormatTestRoot, never HardwareBacked.
const (
	Format         = "tdx-quote"
	FormatTestRoot = "tdx-quote-test-root"
)

// Evidence map keys (docs/tdx.md section 2).
const (
	KeyQuote   = 1 // bstr: the TDX quote (V4 or V5) as the quoting enclave produced it
	KeyPosture = 2 // {1: uint RTMR index, 2: posture log} (optional)
)

// Sizes and limits.
const (
	// ReportDataSize is the size of a TD's REPORTDATA.
	ReportDataSize = 64
	// RTMRSize is the size of an RTMR (and of MRTD, MRCONFIGID, ...).
	RTMRSize = 48
	// PostureRTMR is the RTMR the agent posture log is extended into. RTMR3
	// is the one the TDX measurement convention leaves to the workload
	// (RTMR0 to RTMR2 hold firmware, boot loader and OS measurements).
	PostureRTMR = 3
	// MaxQuoteLen bounds a quote. A V4 quote with its PCK chain is about
	// 5 KB.
	MaxQuoteLen = 16 << 10
	// MaxBinderLen is the longest binder REPORTDATA can carry.
	MaxBinderLen = ReportDataSize
)

// Evidence is the decoded Evidence value of this format (the CMW
// record's value). Nothing in it is verified by decoding: only
// [Verifier.Verify] checks it.
type Evidence struct {
	// Quote is the raw TDX quote (Intel's ABI, little-endian), version 4
	// or 5, with the PCK certificate chain in its certification data.
	Quote []byte
	// Posture, if not nil, carries the agent posture log extended into
	// RTMR3.
	Posture *PostureLog
}

// PostureLog is the posture part of the Evidence.
type PostureLog struct {
	// RTMR is the index of the posture RTMR; only PostureRTMR (3) is
	// accepted.
	RTMR int
	// Log is the posture log ([posture.Log.Encode]), measured with
	// SHA-384.
	Log []byte
}

type wirePosture struct {
	RTMR uint8           `cbor:"1,keyasint"`
	Log  cbor.RawMessage `cbor:"2,keyasint"`
}

type wireEvidence struct {
	Quote   []byte       `cbor:"1,keyasint"`
	Posture *wirePosture `cbor:"2,keyasint,omitempty"`
}

// Marshal returns the deterministic CBOR encoding of e. It checks the same
// bounds as [DecodeEvidence].
func (e *Evidence) Marshal() ([]byte, error) {
	w := wireEvidence{Quote: e.Quote}
	if e.Posture != nil {
		if e.Posture.RTMR != PostureRTMR {
			return nil, fmt.Errorf("tdx: posture RTMR %d, want %d", e.Posture.RTMR, PostureRTMR)
		}
		w.Posture = &wirePosture{RTMR: PostureRTMR, Log: e.Posture.Log}
	}
	if err := w.check(); err != nil {
		return nil, err
	}
	b, err := detcbor.Enc.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("tdx: encoding evidence: %w", err)
	}
	if len(b) > postauth.MaxEvidenceLen {
		return nil, fmt.Errorf("tdx: evidence larger than %d bytes", postauth.MaxEvidenceLen)
	}
	return b, nil
}

// DecodeEvidence decodes an Evidence value strictly (no unknown keys, no
// duplicate keys, no indefinite lengths, only the canonical encoding that
// [Evidence.Marshal] produces) and checks its bounds: a quote of
// 1 to MaxQuoteLen bytes and, if present, a posture part naming RTMR3 with
// a CBOR map of at most posture.MaxLogLen bytes. It parses neither the
// quote nor the log and verifies nothing.
func DecodeEvidence(b []byte) (*Evidence, error) {
	if len(b) == 0 || len(b) > postauth.MaxEvidenceLen {
		return nil, errors.New("tdx: evidence size out of range")
	}
	var w wireEvidence
	if err := detcbor.Dec.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("tdx: decoding evidence: %w", err)
	}
	if err := w.check(); err != nil {
		return nil, err
	}
	// One byte form per value: the decoder would also take, for example,
	// an array of small integers for a byte string.
	if enc, err := detcbor.Enc.Marshal(w); err != nil || !bytes.Equal(enc, b) {
		return nil, errors.New("tdx: evidence is not canonically encoded")
	}
	e := &Evidence{Quote: w.Quote}
	if w.Posture != nil {
		e.Posture = &PostureLog{RTMR: int(w.Posture.RTMR), Log: w.Posture.Log}
	}
	return e, nil
}

func (w *wireEvidence) check() error {
	if len(w.Quote) == 0 || len(w.Quote) > MaxQuoteLen {
		return errors.New("tdx: quote size out of range")
	}
	if w.Posture != nil {
		if w.Posture.RTMR != PostureRTMR {
			return fmt.Errorf("tdx: posture RTMR %d, want %d", w.Posture.RTMR, PostureRTMR)
		}
		if len(w.Posture.Log) == 0 || len(w.Posture.Log) > posture.MaxLogLen {
			return errors.New("tdx: posture log size out of range")
		}
		if w.Posture.Log[0]>>5 != 5 { // CBOR major type 5: a map
			return errors.New("tdx: posture log is not a CBOR map")
		}
	}
	return nil
}

// ReportData returns the REPORTDATA that binds a quote to binder:
// binder || zero bytes up to 64 (docs/tdx.md section 3). With a SHA-256
// suite that is binder (32) || 0^32, with a SHA-384 suite binder (48) ||
// 0^16. The binder must be 1 to 64 bytes.
func ReportData(binder []byte) ([ReportDataSize]byte, error) {
	var rd [ReportDataSize]byte
	if len(binder) == 0 || len(binder) > MaxBinderLen {
		return rd, fmt.Errorf("tdx: binder of %d bytes (want 1 to %d)", len(binder), MaxBinderLen)
	}
	copy(rd[:], binder)
	return rd, nil
}

// binderFromReportData returns REPORTDATA[:n] if the rest of REPORTDATA
// is zero, and nil otherwise. It does not compare anything with the
// Challenge: the caller does, in constant time.
func binderFromReportData(rd []byte, n int) []byte {
	if len(rd) != ReportDataSize || n <= 0 || n > ReportDataSize {
		return nil
	}
	pad := make([]byte, ReportDataSize-n)
	if subtle.ConstantTimeCompare(rd[n:], pad) != 1 {
		return nil
	}
	return rd[:n:n]
}
