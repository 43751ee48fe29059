package ear

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/reattest/reattest/postauth"
)

// EnactTrustMediaType is the media type of Veraison's TPM_ENACTTRUST
// scheme: NODE_UUID (16 bytes) || uint16 length || TPMS_ATTEST ||
// TPMT_SIGNATURE.
const EnactTrustMediaType = "application/vnd.enacttrust.tpm-evidence"

// maxEnactTrustLen bounds EnactTrust Evidence (a quote and a signature).
const maxEnactTrustLen = 4 << 10

// EnactTrustBinding is the local binding checker ([BindingFunc]) for
// Veraison's TPM_ENACTTRUST Evidence: it parses the TPMS_ATTEST of the
// quote (magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE) and returns
// its extraData, which must be the binder (or SHA-256 of a binder longer
// than 32 bytes, for TPMs whose largest digest is SHA-256). Like the
// reattest TPM format, the quote carries no key hash: the binder covers
// the authenticator key, so a matching extraData reports the Challenge's
// key hash.
//
// This check matters: Veraison services v0.0.2506 judged an EnactTrust
// quote over a different nonce affirming (the scheme never compares
// extraData with the session nonce).
func EnactTrustBinding(ch postauth.Challenge, ev postauth.Evidence) (nonce, keyHash []byte, err error) {
	if baseType(ev.Type) != EnactTrustMediaType {
		return nil, nil, invalid(postauth.ReasonFormatNotAccepted, fmt.Errorf("ear: media type %q is not EnactTrust Evidence", trunc(ev.Type)))
	}
	extra, err := enactTrustExtraData(ev.Value)
	if err != nil {
		return nil, nil, invalid(postauth.ReasonEvidenceInvalid, err)
	}
	if !tpmBinderMatches(extra, ch.Binder) {
		return extra, nil, nil
	}
	return slices.Clone(ch.Binder), slices.Clone(ch.KeyHash), nil
}

// enactTrustExtraData returns the extraData of the TPMS_ATTEST in
// EnactTrust Evidence.
func enactTrustExtraData(b []byte) ([]byte, error) {
	if len(b) > maxEnactTrustLen {
		return nil, errors.New("ear: EnactTrust evidence too large")
	}
	s := cryptobyte.String(b)
	var uuid []byte
	var attest cryptobyte.String
	if !s.ReadBytes(&uuid, 16) || !s.ReadUint16LengthPrefixed(&attest) || s.Empty() {
		return nil, errors.New("ear: truncated EnactTrust evidence")
	}
	var magic uint32
	var typ uint16
	var signer, extra cryptobyte.String
	if !attest.ReadUint32(&magic) || !attest.ReadUint16(&typ) ||
		!attest.ReadUint16LengthPrefixed(&signer) || !attest.ReadUint16LengthPrefixed(&extra) {
		return nil, errors.New("ear: truncated TPMS_ATTEST")
	}
	if magic != 0xff544347 || typ != 0x8018 {
		return nil, errors.New("ear: not a TPM2_Quote TPMS_ATTEST")
	}
	if len(extra) == 0 || len(extra) > 64 {
		return nil, errors.New("ear: TPMS_ATTEST extraData size out of range")
	}
	return slices.Clone([]byte(extra)), nil
}

// tpmBinderMatches reports whether extraData is the binder, or SHA-256 of
// a binder longer than 32 bytes.
func tpmBinderMatches(extra, binder []byte) bool {
	if len(binder) == 0 {
		return false
	}
	if equal(extra, binder) {
		return true
	}
	if len(binder) <= sha256.Size {
		return false
	}
	sum := sha256.Sum256(binder)
	return equal(extra, sum[:])
}
