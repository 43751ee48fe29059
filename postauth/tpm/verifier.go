package tpm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"

	"github.com/reattest/reattest/postauth"
)

// Verifier checks TPM quote Evidence against pinned attestation keys. It
// is safe for concurrent use.
type Verifier struct {
	aks        map[string]*ecdsa.PublicKey // by AK name
	pcrs       map[int][][]byte
	reqPosture bool
	posturePCR int
}

var _ postauth.Verifier = (*Verifier)(nil)

// NewVerifier returns a Verifier that trusts quotes signed by the
// attestation keys aks, each given as its public area (TPMT_PUBLIC bytes,
// [Attester.AKPublic]). Each must be an ECC P-256 restricted signing key
// with fixedTPM and name algorithm SHA-256; keys are matched by TPM name,
// so the whole public area, attributes included, is pinned.
//
// Pinning is the trust decision: the relying party must have learned the
// AK public area from a trusted enrolment (for example credential
// activation against a known EK). Certificate chains for AKs are future
// work.
//
// Options: [WithPCRPolicy], [RequirePosture], [WithPosturePCR].
func NewVerifier(aks [][]byte, opts ...VerifierOption) (*Verifier, error) {
	if len(aks) == 0 {
		return nil, errors.New("tpm: no trusted attestation keys")
	}
	var cfg verifierConfig
	for _, o := range opts {
		if o != nil {
			o.applyVerifier(&cfg)
		}
	}
	v := &Verifier{aks: make(map[string]*ecdsa.PublicKey, len(aks)), reqPosture: cfg.requirePosture, posturePCR: cfg.posturePCR}
	if v.posturePCR == 0 {
		v.posturePCR = DefaultPosturePCR
	}
	if v.posturePCR < 0 || v.posturePCR >= NumPCRs {
		return nil, fmt.Errorf("tpm: posture PCR %d out of range", v.posturePCR)
	}
	for i, raw := range aks {
		key, name, err := parseAK(raw)
		if err != nil {
			return nil, fmt.Errorf("tpm: trusted AK %d: %w", i, err)
		}
		v.aks[string(name)] = key
	}
	if cfg.pcrPolicy != nil {
		v.pcrs = make(map[int][][]byte, len(cfg.pcrPolicy))
		for i, vals := range cfg.pcrPolicy {
			if i < 0 || i >= NumPCRs {
				return nil, fmt.Errorf("tpm: PCR policy: index %d out of range", i)
			}
			if len(vals) == 0 {
				return nil, fmt.Errorf("tpm: PCR policy: PCR %d allows no value", i)
			}
			for _, val := range vals {
				if len(val) != PCRSize {
					return nil, fmt.Errorf("tpm: PCR policy: PCR %d: a value of %d bytes, want %d", i, len(val), PCRSize)
				}
			}
			v.pcrs[i] = slices.Clone(vals)
		}
	}
	return v, nil
}

// MediaTypes is the media type the Verifier accepts ([postauth.MediaTyper]).
func (v *Verifier) MediaTypes() []string { return []string{MediaType} }

// evidenceErr is a CodeInvalid error with a wire-safe reason.
func evidenceErr(reason postauth.Reason, cause error) error {
	return postauth.NewError(postauth.CodeInvalid, reason, cause)
}

// Verify checks the Evidence in this order (docs/tpm.md): the media type;
// the encoding and bounds; the AK is pinned; the ECDSA P-256 signature over
// the TPMS_ATTEST; the quote's magic, type and PCR selection form; extraData
// equals the binder; the quoted selection equals the reported PCRs; the PCR
// digest equals SHA-256 of the reported values; the posture log replays to
// the posture PCR; the PCR policy. It reports Nonce = the binder and
// KeyHash = the Challenge's key hash (implied by the binder, which covers
// the authenticator key), MachineID = the AK name, and the PCR values as
// Measurements.
func (v *Verifier) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if postauth.BaseMediaType(ev.Type) != MediaType {
		return nil, evidenceErr(postauth.ReasonFormatNotAccepted, fmt.Errorf("tpm: media type %q", ev.Type))
	}
	e, err := DecodeEvidence(ev.Value)
	if err != nil {
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, err)
	}
	name := akName(e.AK)
	key, ok := v.aks[string(name)]
	if !ok {
		return nil, evidenceErr(postauth.ReasonUntrustedAttester, errors.New("tpm: attestation key not trusted"))
	}
	r, s, err := ecdsaSignature(e.Signature)
	if err != nil {
		return nil, evidenceErr(postauth.ReasonBadEvidenceSignature, err)
	}
	digest := sha256.Sum256(e.Quote)
	if !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)) {
		return nil, evidenceErr(postauth.ReasonBadEvidenceSignature, errors.New("tpm: quote signature invalid"))
	}
	at, err := ParseAttest(e.Quote)
	if err != nil {
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, err)
	}
	if !binderMatches(at.ExtraData, ch.Binder) {
		return nil, evidenceErr(postauth.ReasonBinderMismatch, postauth.ErrBinderMismatch)
	}
	if !slices.Equal(at.PCRs, slices.Sorted(maps.Keys(e.PCRs))) {
		return nil, evidenceErr(postauth.ReasonPCRSelectionMismatch, errors.New("tpm: reported PCRs differ from the quoted selection"))
	}
	if !bytes.Equal(at.PCRDigest, PCRDigest(e.PCRs)) {
		return nil, evidenceErr(postauth.ReasonPCRDigestMismatch, errors.New("tpm: reported PCR values do not match the quoted digest"))
	}
	app := &postauth.Appraisal{
		Format:         Format,
		HardwareBacked: true,
		Nonce:          slices.Clone(ch.Binder),
		KeyHash:        slices.Clone(ch.KeyHash),
		MachineID:      name,
	}
	for _, i := range at.PCRs {
		app.Measurements = append(app.Measurements, postauth.Measurement{
			Name: fmt.Sprintf("pcr/%d", i), Alg: sha256Hash, Digest: slices.Clone(e.PCRs[i]),
		})
	}
	switch {
	case e.Posture != nil:
		if err := v.checkPosture(e); err != nil {
			return nil, evidenceErr(postauth.ReasonPostureInvalid, err)
		}
		app.PostureHead = slices.Clone(e.PCRs[e.Posture.PCR])
		app.PostureLog = slices.Clone(e.Posture.Log)
	case v.reqPosture:
		return nil, evidenceErr(postauth.ReasonPostureMissing, errors.New("tpm: evidence carries no posture"))
	}
	if viol := v.pcrViolations(e.PCRs); len(viol) > 0 {
		return nil, &postauth.Error{
			Code: postauth.CodePolicyDenied, Reason: postauth.ReasonPCRPolicyDenied, Violations: viol,
			Err: errors.New("tpm: PCR values not allowed by policy"),
		}
	}
	return app, nil
}

// binderMatches reports whether extraData is the binder, or SHA-256 of a
// binder longer than 32 bytes (for TPMs whose largest digest is SHA-256).
func binderMatches(extra, binder []byte) bool {
	if len(binder) == 0 {
		return false
	}
	if subtle.ConstantTimeCompare(extra, binder) == 1 {
		return true
	}
	if len(binder) <= sha256.Size {
		return false
	}
	sum := sha256.Sum256(binder)
	return subtle.ConstantTimeCompare(extra, sum[:]) == 1
}

func (v *Verifier) checkPosture(e *Evidence) error {
	if e.Posture.PCR != v.posturePCR {
		return fmt.Errorf("tpm: posture PCR %d, want %d", e.Posture.PCR, v.posturePCR)
	}
	if _, ok := e.PCRs[e.Posture.PCR]; !ok {
		return errors.New("tpm: the posture PCR is not quoted")
	}
	// The relying party replays the log against the quoted PCR value
	// (postauth.RelyingParty.Verify).
	return nil
}

// pcrViolations names every PCR of the policy that is not quoted or holds
// a value the policy does not allow, in index order.
func (v *Verifier) pcrViolations(got map[int][]byte) []string {
	var out []string
	for _, i := range slices.Sorted(maps.Keys(v.pcrs)) {
		val, ok := got[i]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("pcr:%d not quoted", i))
		case !slices.ContainsFunc(v.pcrs[i], func(a []byte) bool { return bytes.Equal(a, val) }):
			out = append(out, fmt.Sprintf("pcr:%d value not allowed", i))
		}
	}
	return out
}
