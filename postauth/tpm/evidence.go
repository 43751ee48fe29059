package tpm

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/crypto/cryptobyte"

	"github.com/reattest/reattest/internal/detcbor"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// MediaType is the CMW media type of TPM quote Evidence.
const MediaType = "application/vnd.reattest.tpm-quote+cbor"

// Format is the format name reported in [postauth.Result.Format].
const Format = "tpm2-quote"

// Evidence map keys (docs/tpm.md).
const (
	KeyQuote     = 1 // bstr: TPMS_ATTEST as returned by TPM2_Quote
	KeySignature = 2 // bstr: TPMT_SIGNATURE over the TPMS_ATTEST
	KeyAK        = 3 // bstr: TPMT_PUBLIC of the attestation key
	KeyPCRs      = 4 // {* uint => bstr}: quoted PCR values, SHA-256 bank
	KeyPosture   = 5 // {1: uint PCR index, 2: posture log} (optional)
)

// Size limits. A TPMS_ATTEST of a quote is under 300 bytes and an ECDSA
// P-256 TPMT_SIGNATURE under 80; the limits leave room and nothing more.
const (
	// NumPCRs is the number of PCRs a PC Client TPM has (0 to 23). PCR
	// indices outside [0, NumPCRs) are refused everywhere.
	NumPCRs = 24
	// MaxQuoteLen bounds the TPMS_ATTEST bytes.
	MaxQuoteLen = 1024
	// MaxSignatureLen bounds the TPMT_SIGNATURE bytes.
	MaxSignatureLen = 512
	// MaxAKLen bounds the TPMT_PUBLIC bytes.
	MaxAKLen = 1024
	// MaxBinderLen is the largest binder the Attester accepts (SHA-512
	// size; the protocol uses 32 or 48 bytes).
	MaxBinderLen = 64
	// PCRSize is the size of a SHA-256 PCR value.
	PCRSize = sha256.Size
)

// DefaultPosturePCR is the PCR a [PCRRegister] uses by default: the
// application PCR 23, resettable from locality 0 (PC Client profile).
const DefaultPosturePCR = 23

// sha256Hash is the hash of the PCR bank and of the posture log.
const sha256Hash = crypto.SHA256

// TPM constants used by the parsers (TPM 2.0 Part 2).
const (
	tpmGeneratedValue = 0xff544347 // TPM_GENERATED_VALUE
	tpmSTAttestQuote  = 0x8018     // TPM_ST_ATTEST_QUOTE
	tpmAlgSHA256      = 0x000B     // TPM_ALG_SHA256
	tpmAlgECDSA       = 0x0018     // TPM_ALG_ECDSA
)

// Evidence is the decoded Evidence value of this format (the CMW record's
// value). Nothing in it is verified by decoding: only [Verifier.Verify]
// checks it. The encoding is a deterministic CBOR map with the integer keys
// KeyQuote ... KeyPosture.
type Evidence struct {
	// Quote is the TPMS_ATTEST structure the TPM produced and signed.
	Quote []byte
	// Signature is the TPMT_SIGNATURE over Quote.
	Signature []byte
	// AK is the attestation key's public area (TPMT_PUBLIC).
	AK []byte
	// PCRs are the quoted PCR values of the SHA-256 bank by PCR index. The
	// set of indices is the PCR selection.
	PCRs map[int][]byte
	// Posture, if not nil, names the PCR the agent posture log is extended
	// into and carries the log.
	Posture *PostureLog
}

// PostureLog is the posture part of the Evidence.
type PostureLog struct {
	// PCR is the index of the posture PCR; it must be quoted.
	PCR int
	// Log is the posture log ([posture.Log.Encode]).
	Log []byte
}

type wirePosture struct {
	PCR uint8           `cbor:"1,keyasint"`
	Log cbor.RawMessage `cbor:"2,keyasint"`
}

type wireEvidence struct {
	Quote     []byte           `cbor:"1,keyasint"`
	Signature []byte           `cbor:"2,keyasint"`
	AK        []byte           `cbor:"3,keyasint"`
	PCRs      map[uint8][]byte `cbor:"4,keyasint"`
	Posture   *wirePosture     `cbor:"5,keyasint,omitempty"`
}

// Marshal returns the deterministic CBOR encoding of e. It checks the same
// bounds as [DecodeEvidence].
func (e *Evidence) Marshal() ([]byte, error) {
	w := wireEvidence{Quote: e.Quote, Signature: e.Signature, AK: e.AK, PCRs: make(map[uint8][]byte, len(e.PCRs))}
	for i, v := range e.PCRs {
		if i < 0 || i >= NumPCRs {
			return nil, fmt.Errorf("tpm: PCR index %d out of range", i)
		}
		w.PCRs[uint8(i)] = v
	}
	if e.Posture != nil {
		if e.Posture.PCR < 0 || e.Posture.PCR >= NumPCRs {
			return nil, fmt.Errorf("tpm: posture PCR index %d out of range", e.Posture.PCR)
		}
		w.Posture = &wirePosture{PCR: uint8(e.Posture.PCR), Log: e.Posture.Log}
	}
	if err := w.check(); err != nil {
		return nil, err
	}
	b, err := detcbor.Enc.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("tpm: encoding evidence: %w", err)
	}
	if len(b) > postauth.MaxEvidenceLen {
		return nil, fmt.Errorf("tpm: evidence larger than %d bytes", postauth.MaxEvidenceLen)
	}
	return b, nil
}

// DecodeEvidence decodes an Evidence value strictly (no unknown keys, no
// duplicate keys, no indefinite lengths) and checks its bounds: every field
// present and within its size limit, PCR indices below NumPCRs with
// 32-byte values, at least one PCR. It verifies nothing else.
func DecodeEvidence(b []byte) (*Evidence, error) {
	if len(b) == 0 || len(b) > postauth.MaxEvidenceLen {
		return nil, errors.New("tpm: evidence size out of range")
	}
	var w wireEvidence
	if err := detcbor.Dec.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("tpm: decoding evidence: %w", err)
	}
	if err := w.check(); err != nil {
		return nil, err
	}
	e := &Evidence{Quote: w.Quote, Signature: w.Signature, AK: w.AK, PCRs: make(map[int][]byte, len(w.PCRs))}
	for i, v := range w.PCRs {
		e.PCRs[int(i)] = v
	}
	if w.Posture != nil {
		e.Posture = &PostureLog{PCR: int(w.Posture.PCR), Log: w.Posture.Log}
	}
	return e, nil
}

func (w *wireEvidence) check() error {
	switch {
	case len(w.Quote) == 0 || len(w.Quote) > MaxQuoteLen:
		return errors.New("tpm: quote size out of range")
	case len(w.Signature) == 0 || len(w.Signature) > MaxSignatureLen:
		return errors.New("tpm: signature size out of range")
	case len(w.AK) == 0 || len(w.AK) > MaxAKLen:
		return errors.New("tpm: AK public area size out of range")
	case len(w.PCRs) == 0:
		return errors.New("tpm: no PCR values")
	}
	for i, v := range w.PCRs {
		if int(i) >= NumPCRs {
			return fmt.Errorf("tpm: PCR index %d out of range", i)
		}
		if len(v) != PCRSize {
			return fmt.Errorf("tpm: PCR %d value is %d bytes, want %d", i, len(v), PCRSize)
		}
	}
	if w.Posture != nil {
		if int(w.Posture.PCR) >= NumPCRs {
			return fmt.Errorf("tpm: posture PCR index %d out of range", w.Posture.PCR)
		}
		if len(w.Posture.Log) == 0 || len(w.Posture.Log) > posture.MaxLogLen {
			return errors.New("tpm: posture log size out of range")
		}
		if w.Posture.Log[0]>>5 != 5 { // CBOR major type 5: a map
			return errors.New("tpm: posture log is not a CBOR map")
		}
	}
	return nil
}

// Attest is the content of a quote's TPMS_ATTEST structure.
type Attest struct {
	// QualifiedSigner is the qualified name of the signing key. The
	// Verifier does not check it (the signature identifies the key).
	QualifiedSigner []byte
	// ExtraData is the qualifying data of the quote: the binder (or
	// SHA-256 of the binder, see docs/tpm.md).
	ExtraData []byte
	// Clock information (TPMS_CLOCK_INFO) and the firmware version. They
	// are reported for logging; the Verifier ignores them.
	Clock           uint64
	ResetCount      uint32
	RestartCount    uint32
	Safe            bool
	FirmwareVersion uint64
	// PCRs is the quoted PCR selection of the SHA-256 bank, ascending.
	PCRs []int
	// PCRDigest is the digest of the selected PCR values.
	PCRDigest []byte
}

// ParseAttest parses the TPMS_ATTEST bytes of a quote. It accepts only
// the magic TPM_GENERATED_VALUE, the type TPM_ST_ATTEST_QUOTE and a PCR
// selection of exactly one bank, SHA-256, with PCRs below NumPCRs and a
// 32-byte digest, with nothing after the structure. It verifies no
// signature: a parsed quote means nothing until [Verifier.Verify]
// accepted the Evidence that carries it.
func ParseAttest(b []byte) (*Attest, error) {
	if len(b) > MaxQuoteLen {
		return nil, errors.New("tpm: quote too large")
	}
	s := cryptobyte.String(b)
	var magic uint32
	var typ uint16
	if !s.ReadUint32(&magic) || !s.ReadUint16(&typ) {
		return nil, errors.New("tpm: truncated TPMS_ATTEST")
	}
	if magic != tpmGeneratedValue {
		return nil, errors.New("tpm: TPMS_ATTEST magic is not TPM_GENERATED_VALUE")
	}
	if typ != tpmSTAttestQuote {
		return nil, fmt.Errorf("tpm: TPMS_ATTEST type %#04x is not TPM_ST_ATTEST_QUOTE", typ)
	}
	var a Attest
	var signer, extra cryptobyte.String
	var safe uint8
	if !s.ReadUint16LengthPrefixed(&signer) || !s.ReadUint16LengthPrefixed(&extra) ||
		!s.ReadUint64(&a.Clock) || !s.ReadUint32(&a.ResetCount) || !s.ReadUint32(&a.RestartCount) ||
		!s.ReadUint8(&safe) || !s.ReadUint64(&a.FirmwareVersion) {
		return nil, errors.New("tpm: truncated TPMS_ATTEST")
	}
	if safe > 1 {
		return nil, errors.New("tpm: bad TPMI_YES_NO in clock info")
	}
	a.Safe = safe == 1
	a.QualifiedSigner = slices.Clone([]byte(signer))
	a.ExtraData = slices.Clone([]byte(extra))
	var count uint32
	if !s.ReadUint32(&count) {
		return nil, errors.New("tpm: truncated PCR selection")
	}
	if count != 1 {
		return nil, fmt.Errorf("tpm: quote selects %d PCR banks, want the SHA-256 bank only", count)
	}
	var hash uint16
	var sel cryptobyte.String
	if !s.ReadUint16(&hash) || !s.ReadUint8LengthPrefixed(&sel) {
		return nil, errors.New("tpm: truncated PCR selection")
	}
	if hash != tpmAlgSHA256 {
		return nil, fmt.Errorf("tpm: quoted PCR bank %#04x is not SHA-256", hash)
	}
	for byteIdx, v := range sel {
		for v != 0 {
			bit := bits.TrailingZeros8(v)
			v &^= 1 << bit
			pcr := byteIdx*8 + bit
			if pcr >= NumPCRs {
				return nil, fmt.Errorf("tpm: quoted PCR %d out of range", pcr)
			}
			a.PCRs = append(a.PCRs, pcr)
		}
	}
	if len(a.PCRs) == 0 {
		return nil, errors.New("tpm: quote selects no PCR")
	}
	var digest cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&digest) || !s.Empty() {
		return nil, errors.New("tpm: malformed PCR digest")
	}
	if len(digest) != sha256.Size {
		return nil, errors.New("tpm: PCR digest is not a SHA-256 digest")
	}
	a.PCRDigest = slices.Clone([]byte(digest))
	return &a, nil
}

// PCRDigest returns the digest a quote of the given SHA-256 PCR values
// carries: SHA-256 over the values concatenated in ascending index order.
func PCRDigest(pcrs map[int][]byte) []byte {
	h := sha256.New()
	for _, i := range slices.Sorted(maps.Keys(pcrs)) {
		h.Write(pcrs[i])
	}
	return h.Sum(nil)
}

// ecdsaSignature parses an ECDSA/SHA-256 TPMT_SIGNATURE into r and s.
func ecdsaSignature(b []byte) (r, sv []byte, err error) {
	s := cryptobyte.String(b)
	var alg, hash uint16
	var rb, sb cryptobyte.String
	if !s.ReadUint16(&alg) || !s.ReadUint16(&hash) ||
		!s.ReadUint16LengthPrefixed(&rb) || !s.ReadUint16LengthPrefixed(&sb) || !s.Empty() {
		return nil, nil, errors.New("tpm: malformed TPMT_SIGNATURE")
	}
	if alg != tpmAlgECDSA || hash != tpmAlgSHA256 {
		return nil, nil, fmt.Errorf("tpm: signature scheme %#04x/%#04x is not ECDSA with SHA-256", alg, hash)
	}
	if len(rb) == 0 || len(rb) > 32 || len(sb) == 0 || len(sb) > 32 {
		return nil, nil, errors.New("tpm: ECDSA P-256 signature integer size out of range")
	}
	return rb, sb, nil
}

// qualifyingData is what the Attester puts in the quote's extraData: the
// binder itself if the TPM accepts maxData bytes, else SHA-256(binder).
func qualifyingData(binder []byte, maxData int) []byte {
	if len(binder) <= maxData {
		return slices.Clone(binder)
	}
	sum := sha256.Sum256(binder)
	return sum[:]
}
