package tpm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-tpm/tpm2"

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
	KeyQuote            = 1  // bstr: TPMS_ATTEST as returned by TPM2_Quote
	KeySignature        = 2  // bstr: TPMT_SIGNATURE over the TPMS_ATTEST
	KeyAK               = 3  // bstr: TPMT_PUBLIC of the attestation key
	KeyPCRs             = 4  // {* uint => bstr}: quoted PCR values, SHA-256 bank
	KeyPosture          = 5  // {1: uint PCR index, 2: posture log} (optional)
	KeyCertify          = 6  // bstr: TPMS_ATTEST as returned by TPM2_Certify (optional, with 7 and 8)
	KeyCertifySignature = 7  // bstr: TPMT_SIGNATURE over the certification
	KeyCertifiedKey     = 8  // bstr: TPMT_PUBLIC of the certified authenticator key
	KeyAKChain          = 9  // [+ bstr]: AK certificate, then intermediates (DER) (optional)
	KeyEKChain          = 10 // [+ bstr]: EK certificate, then intermediates (DER) (optional)
	KeyEventLog         = 11 // bstr: TCG crypto-agile boot event log (optional)
)

// Size limits. A TPMS_ATTEST of a quote is under 300 bytes and an ECDSA
// P-256 TPMT_SIGNATURE under 80; the limits leave room and nothing more.
const (
	// NumPCRs is the number of PCRs a PC Client TPM has (0 to 23). PCR
	// indices outside [0, NumPCRs) are refused everywhere.
	NumPCRs = 24
	// MaxQuoteLen bounds the TPMS_ATTEST bytes (of the quote and of the
	// certification).
	MaxQuoteLen = 1024
	// MaxSignatureLen bounds the TPMT_SIGNATURE bytes.
	MaxSignatureLen = 512
	// MaxAKLen bounds the TPMT_PUBLIC bytes (of the AK and of the
	// certified key).
	MaxAKLen = 1024
	// MaxCertLen bounds one DER certificate of the AK or EK chain.
	MaxCertLen = 4096
	// MaxChainLen bounds the number of certificates in the AK or EK chain.
	MaxChainLen = 4
	// MaxEventLogLen bounds the boot event log. Real logs are often
	// larger (tens of KiB): they then do not fit in the Evidence, whose
	// whole value is at most postauth.MaxEvidenceLen.
	MaxEventLogLen = 48 << 10
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

// Evidence is the decoded Evidence value of this format (the CMW record's
// value). Nothing in it is verified by decoding: only [Verifier.Verify]
// checks it. The encoding is a deterministic CBOR map with the integer keys
// KeyQuote ... KeyEventLog.
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
	// Certification, if not nil, is the AK's TPM2_Certify of the
	// authenticator key.
	Certification *Certification
	// AKChain is the AK certificate followed by its intermediates (DER),
	// or nil (an AK the verifier pins).
	AKChain [][]byte
	// EKChain is the EK certificate followed by its intermediates (DER),
	// or nil.
	EKChain [][]byte
	// EventLog is the TCG crypto-agile boot event log, or nil.
	EventLog []byte
}

// PostureLog is the posture part of the Evidence.
type PostureLog struct {
	// PCR is the index of the posture PCR; it must be quoted.
	PCR int
	// Log is the posture log ([posture.Log.Encode]).
	Log []byte
}

// Certification is the key attestation part of the Evidence: the AK's
// TPM2_Certify of the authenticator key, with the binder as qualifying
// data.
type Certification struct {
	// Attest is the TPMS_ATTEST (TPM_ST_ATTEST_CERTIFY) the TPM produced.
	Attest []byte
	// Signature is the AK's TPMT_SIGNATURE over Attest.
	Signature []byte
	// Key is the certified key's public area (TPMT_PUBLIC): its TPM name
	// is what Attest certifies.
	Key []byte
}

type wirePosture struct {
	PCR uint8           `cbor:"1,keyasint"`
	Log cbor.RawMessage `cbor:"2,keyasint"`
}

type wireEvidence struct {
	Quote            []byte           `cbor:"1,keyasint"`
	Signature        []byte           `cbor:"2,keyasint"`
	AK               []byte           `cbor:"3,keyasint"`
	PCRs             map[uint8][]byte `cbor:"4,keyasint"`
	Posture          *wirePosture     `cbor:"5,keyasint,omitempty"`
	Certify          []byte           `cbor:"6,keyasint,omitempty"`
	CertifySignature []byte           `cbor:"7,keyasint,omitempty"`
	CertifiedKey     []byte           `cbor:"8,keyasint,omitempty"`
	AKChain          [][]byte         `cbor:"9,keyasint,omitempty"`
	EKChain          [][]byte         `cbor:"10,keyasint,omitempty"`
	EventLog         []byte           `cbor:"11,keyasint,omitempty"`
}

// Marshal returns the deterministic CBOR encoding of e. It checks the same
// bounds as [DecodeEvidence].
func (e *Evidence) Marshal() ([]byte, error) {
	w := wireEvidence{Quote: e.Quote, Signature: e.Signature, AK: e.AK, PCRs: make(map[uint8][]byte, len(e.PCRs)),
		AKChain: e.AKChain, EKChain: e.EKChain, EventLog: e.EventLog}
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
	if c := e.Certification; c != nil {
		if len(c.Attest) == 0 || len(c.Signature) == 0 || len(c.Key) == 0 {
			return nil, errors.New("tpm: incomplete certification")
		}
		w.Certify, w.CertifySignature, w.CertifiedKey = c.Attest, c.Signature, c.Key
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
// duplicate keys, no indefinite lengths) and checks its bounds: the
// mandatory fields present and every field within its size limit, PCR
// indices below NumPCRs with 32-byte values, at least one PCR, the three
// certification fields all present or all absent, chains of 1 to
// MaxChainLen certificates. It verifies nothing else.
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
	e := &Evidence{Quote: w.Quote, Signature: w.Signature, AK: w.AK, PCRs: make(map[int][]byte, len(w.PCRs)),
		AKChain: w.AKChain, EKChain: w.EKChain, EventLog: w.EventLog}
	for i, v := range w.PCRs {
		e.PCRs[int(i)] = v
	}
	if w.Posture != nil {
		e.Posture = &PostureLog{PCR: int(w.Posture.PCR), Log: w.Posture.Log}
	}
	if w.Certify != nil {
		e.Certification = &Certification{Attest: w.Certify, Signature: w.CertifySignature, Key: w.CertifiedKey}
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
	present := 0
	for _, f := range [][]byte{w.Certify, w.CertifySignature, w.CertifiedKey} {
		if f != nil {
			present++
		}
	}
	switch {
	case present != 0 && present != 3:
		return errors.New("tpm: certification, its signature and the certified key go together")
	case present == 3 && (len(w.Certify) == 0 || len(w.Certify) > MaxQuoteLen):
		return errors.New("tpm: certification size out of range")
	case present == 3 && (len(w.CertifySignature) == 0 || len(w.CertifySignature) > MaxSignatureLen):
		return errors.New("tpm: certification signature size out of range")
	case present == 3 && (len(w.CertifiedKey) == 0 || len(w.CertifiedKey) > MaxAKLen):
		return errors.New("tpm: certified key public area size out of range")
	}
	for _, c := range [][][]byte{w.AKChain, w.EKChain} {
		if c == nil {
			continue
		}
		if len(c) == 0 || len(c) > MaxChainLen {
			return errors.New("tpm: certificate chain length out of range")
		}
		for _, der := range c {
			if len(der) == 0 || len(der) > MaxCertLen {
				return errors.New("tpm: certificate size out of range")
			}
		}
	}
	if w.EventLog != nil && (len(w.EventLog) == 0 || len(w.EventLog) > MaxEventLogLen) {
		return errors.New("tpm: event log size out of range")
	}
	return nil
}

// Attest is the content of a TPMS_ATTEST structure of a quote or a
// certification.
type Attest struct {
	// QualifiedSigner is the qualified name of the signing key. The
	// Verifier does not check it (the signature identifies the key).
	QualifiedSigner []byte
	// ExtraData is the qualifying data: the binder (or SHA-256 of the
	// binder, see docs/tpm.md).
	ExtraData []byte
	// Clock information (TPMS_CLOCK_INFO) and the firmware version. They
	// are reported for logging; the Verifier ignores them.
	Clock           uint64
	ResetCount      uint32
	RestartCount    uint32
	Safe            bool
	FirmwareVersion uint64
	// PCRs is the quoted PCR selection of the SHA-256 bank, ascending
	// (quotes only).
	PCRs []int
	// PCRDigest is the digest of the selected PCR values (quotes only).
	PCRDigest []byte
	// CertifiedName and CertifiedQualifiedName are the TPM name and the
	// qualified name of the certified object (certifications only).
	CertifiedName          []byte
	CertifiedQualifiedName []byte
}

// unmarshalCanonical decodes a TPM structure with go-tpm's tpm2.Unmarshal
// and requires that it re-encodes to exactly b: no trailing bytes, no
// non-canonical values (a TPMI_YES_NO of 2). A panic of the decoder is an
// error.
func unmarshalCanonical[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte) (v *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("tpm: decoding %T: %v", v, r)
		}
	}()
	v, err = unmarshal[T, P](b)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tpm2.Marshal(*v), b) {
		return nil, errors.New("tpm: trailing or non-canonical bytes")
	}
	return v, nil
}

// unmarshal is tpm2.Unmarshal with a decoder panic turned into an error.
func unmarshal[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte) (v *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("tpm: decoding %T: %v", v, r)
		}
	}()
	return tpm2.Unmarshal[T, P](b)
}

// attestLen is the encoded length of a decoded quote or certification
// TPMS_ATTEST, and the offset of its clockInfo.safe byte: with them a
// parser checks that the structure has no trailing bytes and a canonical
// TPMI_YES_NO without encoding it again (go-tpm's reflection encoder costs
// as much as its decoder, on every verification).
func attestLen(at *tpm2.TPMSAttest) (n, safe int, err error) {
	n = 4 + 2 + 2 + len(at.QualifiedSigner.Buffer) + 2 + len(at.ExtraData.Buffer)
	safe = n + 8 + 4 + 4
	n = safe + 1 + 8
	switch at.Type {
	case tpm2.TPMSTAttestQuote:
		q, err := at.Attested.Quote()
		if err != nil {
			return 0, 0, err
		}
		n += 4 + 2 + len(q.PCRDigest.Buffer)
		for _, sel := range q.PCRSelect.PCRSelections {
			n += 2 + 1 + len(sel.PCRSelect)
		}
	case tpm2.TPMSTAttestCertify:
		c, err := at.Attested.Certify()
		if err != nil {
			return 0, 0, err
		}
		n += 2 + len(c.Name.Buffer) + 2 + len(c.QualifiedName.Buffer)
	default:
		return 0, 0, fmt.Errorf("tpm: TPMS_ATTEST type %#04x", uint16(at.Type))
	}
	return n, safe, nil
}

// parseAttest decodes a TPMS_ATTEST of the given type (tpm2.Unmarshal
// checks the magic TPM_GENERATED_VALUE).
func parseAttest(b []byte, typ tpm2.TPMISTAttest) (*tpm2.TPMSAttest, *Attest, error) {
	if len(b) == 0 || len(b) > MaxQuoteLen {
		return nil, nil, errors.New("tpm: TPMS_ATTEST size out of range")
	}
	at, err := unmarshal[tpm2.TPMSAttest](b)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: TPMS_ATTEST: %w", err)
	}
	if at.Type != typ {
		return nil, nil, fmt.Errorf("tpm: TPMS_ATTEST type %#04x, want %#04x", uint16(at.Type), uint16(typ))
	}
	n, safe, err := attestLen(at)
	if err != nil {
		return nil, nil, err
	}
	if n != len(b) || b[safe] > 1 {
		return nil, nil, errors.New("tpm: TPMS_ATTEST with trailing or non-canonical bytes")
	}
	if at.Magic != tpm2.TPMGeneratedValue {
		return nil, nil, errors.New("tpm: TPMS_ATTEST magic is not TPM_GENERATED_VALUE")
	}
	if at.Type != typ {
		return nil, nil, fmt.Errorf("tpm: TPMS_ATTEST type %#04x, want %#04x", uint16(at.Type), uint16(typ))
	}
	return at, &Attest{
		QualifiedSigner: slices.Clone(at.QualifiedSigner.Buffer),
		ExtraData:       slices.Clone(at.ExtraData.Buffer),
		Clock:           at.ClockInfo.Clock,
		ResetCount:      at.ClockInfo.ResetCount,
		RestartCount:    at.ClockInfo.RestartCount,
		Safe:            bool(at.ClockInfo.Safe),
		FirmwareVersion: at.FirmwareVersion,
	}, nil
}

// ParseAttest parses the TPMS_ATTEST bytes of a quote (with go-tpm's
// tpm2.Unmarshal). It accepts only the magic TPM_GENERATED_VALUE, the type
// TPM_ST_ATTEST_QUOTE and a PCR selection of exactly one bank, SHA-256,
// with PCRs below NumPCRs and a 32-byte digest, with nothing after the
// structure. It verifies no signature: a parsed quote means nothing until
// [Verifier.Verify] accepted the Evidence that carries it.
func ParseAttest(b []byte) (*Attest, error) {
	at, a, err := parseAttest(b, tpm2.TPMSTAttestQuote)
	if err != nil {
		return nil, err
	}
	q, err := at.Attested.Quote()
	if err != nil {
		return nil, fmt.Errorf("tpm: quote info: %w", err)
	}
	sels := q.PCRSelect.PCRSelections
	if len(sels) != 1 {
		return nil, fmt.Errorf("tpm: quote selects %d PCR banks, want the SHA-256 bank only", len(sels))
	}
	if sels[0].Hash != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("tpm: quoted bank %#04x is not SHA-256", uint16(sels[0].Hash))
	}
	for byteIdx, v := range sels[0].PCRSelect {
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
	if len(q.PCRDigest.Buffer) != sha256.Size {
		return nil, errors.New("tpm: PCR digest is not a SHA-256 digest")
	}
	a.PCRDigest = slices.Clone(q.PCRDigest.Buffer)
	return a, nil
}

// ParseCertification parses the TPMS_ATTEST bytes of a certification
// (TPM2_Certify, with go-tpm's tpm2.Unmarshal): the magic
// TPM_GENERATED_VALUE, the type TPM_ST_ATTEST_CERTIFY, nothing after the
// structure. Like [ParseAttest], it verifies no signature.
func ParseCertification(b []byte) (*Attest, error) {
	at, a, err := parseAttest(b, tpm2.TPMSTAttestCertify)
	if err != nil {
		return nil, err
	}
	c, err := at.Attested.Certify()
	if err != nil {
		return nil, fmt.Errorf("tpm: certify info: %w", err)
	}
	a.CertifiedName = slices.Clone(c.Name.Buffer)
	a.CertifiedQualifiedName = slices.Clone(c.QualifiedName.Buffer)
	return a, nil
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

// ecdsaSignature parses an ECDSA/SHA-256 TPMT_SIGNATURE (with go-tpm's
// tpm2.Unmarshal) into r and s, each 1 to 32 bytes.
func ecdsaSignature(b []byte) (r, s []byte, err error) {
	if len(b) == 0 || len(b) > MaxSignatureLen {
		return nil, nil, errors.New("tpm: TPMT_SIGNATURE size out of range")
	}
	sig, err := unmarshal[tpm2.TPMTSignature](b)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: malformed TPMT_SIGNATURE: %w", err)
	}
	if sig.SigAlg != tpm2.TPMAlgECDSA {
		return nil, nil, fmt.Errorf("tpm: signature algorithm %#04x is not ECDSA", uint16(sig.SigAlg))
	}
	e, err := sig.Signature.ECDSA()
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: malformed ECDSA signature: %w", err)
	}
	if e.Hash != tpm2.TPMAlgSHA256 {
		return nil, nil, fmt.Errorf("tpm: signature hash %#04x is not SHA-256", uint16(e.Hash))
	}
	r, s = e.SignatureR.Buffer, e.SignatureS.Buffer
	if len(r) == 0 || len(r) > 32 || len(s) == 0 || len(s) > 32 {
		return nil, nil, errors.New("tpm: ECDSA P-256 signature integer size out of range")
	}
	if 2+2+2+len(r)+2+len(s) != len(b) { // TPMT_SIGNATURE: sigAlg, hash, TPM2B r, TPM2B s
		return nil, nil, errors.New("tpm: TPMT_SIGNATURE with trailing bytes")
	}
	return r, s, nil
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
