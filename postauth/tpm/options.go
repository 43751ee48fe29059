package tpm

import (
	"maps"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"github.com/reattest/reattest/posture"
)

// AttesterOption configures an [Attester].
type AttesterOption interface{ applyAttester(*attesterConfig) }

// VerifierOption configures a [Verifier].
type VerifierOption interface{ applyVerifier(*verifierConfig) }

// RegisterOption configures a [PCRRegister].
type RegisterOption interface{ applyRegister(*registerConfig) }

// Option configures both an [Attester] and a [Verifier].
type Option interface {
	AttesterOption
	VerifierOption
}

type attesterConfig struct {
	pcrs            []int
	posture         posture.Source
	posturePCR      int
	akHandle        tpm2.TPMHandle
	endorsementAuth []byte
}

type verifierConfig struct {
	pcrPolicy      map[int][][]byte
	requirePosture bool
	posturePCR     int
}

type registerConfig struct {
	pcr int
}

type attesterOption func(*attesterConfig)

func (f attesterOption) applyAttester(c *attesterConfig) { f(c) }

type verifierOption func(*verifierConfig)

func (f verifierOption) applyVerifier(c *verifierConfig) { f(c) }

type registerOption func(*registerConfig)

func (f registerOption) applyRegister(c *registerConfig) { f(c) }

// WithPCRs sets the PCR selection (SHA-256 bank) the Attester quotes,
// indices 0 to 23; an empty selection is refused by NewAttester (unless
// the posture PCR is added). Without this option the selection is PCRs 0
// to 7 (the firmware and boot measurements). The posture PCR is added when
// [WithPosture] is set.
func WithPCRs(pcrs ...int) AttesterOption {
	p := append([]int{}, pcrs...)
	return attesterOption(func(c *attesterConfig) { c.pcrs = p })
}

// WithPosture puts the agent's posture log into every Evidence and the
// posture PCR into every quote. The Source's register must be the posture
// PCR: use a posture.Tracker over a [PCRRegister] that shares the
// Attester's *SharedTPM.
func WithPosture(src posture.Source) AttesterOption {
	return attesterOption(func(c *attesterConfig) { c.posture = src })
}

// WithAKHandle makes the Attester use the existing attestation key at the
// persistent handle h (0x81xxxxxx), which must be an ECC P-256 restricted
// signing key with fixedTPM and an empty authorization value. By default
// the Attester creates the primary key of [AKTemplate] under the
// endorsement hierarchy (the same key each time on the same TPM, since
// primary keys derive from the hierarchy seed and the template).
func WithAKHandle(h tpm2.TPMHandle) AttesterOption {
	return attesterOption(func(c *attesterConfig) { c.akHandle = h })
}

// WithEndorsementAuth sets the endorsement hierarchy's authorization value
// (empty by default on most TPMs), used only to create the AK.
func WithEndorsementAuth(auth []byte) AttesterOption {
	a := slices.Clone(auth)
	return attesterOption(func(c *attesterConfig) { c.endorsementAuth = a })
}

// WithPCRPolicy sets the verifier's expected-values policy: for each listed
// PCR index (0 to 23), the SHA-256 values it may hold. A listed PCR that
// the quote does not cover, or that holds another value, is a violation;
// all violations are reported together (CodePolicyDenied,
// pcr_policy_denied). Without it, any values pass, and the Result reports
// them as Measurements.
func WithPCRPolicy(policy map[int][][]byte) VerifierOption {
	p := maps.Clone(policy)
	return verifierOption(func(c *verifierConfig) { c.pcrPolicy = p })
}

// RequirePosture makes the Verifier reject Evidence without a posture log
// (posture_missing).
func RequirePosture() VerifierOption {
	return verifierOption(func(c *verifierConfig) { c.requirePosture = true })
}

type posturePCROption int

func (p posturePCROption) applyAttester(c *attesterConfig) { c.posturePCR = int(p) }
func (p posturePCROption) applyVerifier(c *verifierConfig) { c.posturePCR = int(p) }

// WithPosturePCR sets the posture PCR's index: the one the Attester quotes
// with the posture log, the only one the Verifier accepts as the posture
// PCR. The Attester's default is the index of the Source's PCRRegister if
// it exposes one (as *posture.Tracker does), else DefaultPosturePCR (23);
// the Verifier's default is DefaultPosturePCR.
func WithPosturePCR(pcr int) Option { return posturePCROption(pcr) }

// WithPCR sets the PCR a [PCRRegister] uses. The default is
// DefaultPosturePCR (23). It must be a PCR that TPM2_PCR_Reset may reset
// from the caller's locality (on a PC Client TPM at locality 0: PCR 16, the
// debug PCR, and 23).
func WithPCR(pcr int) RegisterOption {
	return registerOption(func(c *registerConfig) { c.pcr = pcr })
}
