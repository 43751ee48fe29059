package tpm

import (
	"crypto/x509"
	"maps"
	"slices"
	"time"

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
	key             *Key
	eventLog        []byte
	includeEK       bool
}

type verifierConfig struct {
	pcrPolicy        map[int][][]byte
	requirePosture   bool
	posturePCR       int
	pinned           [][]byte
	akRoots          []*x509.Certificate
	ekRoots          []*x509.Certificate
	ekIntermediates  []*x509.Certificate
	machineIDs       [][]byte
	allowSoftwareKey bool
	requireEventLog  bool
	now              func() time.Time
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

// WithCertifiedKey makes the Attester certify k, the authenticator key,
// in every Evidence: TPM2_Certify by the AK with the binder as qualifying
// data, and k's public area. k must use the Attester's *SharedTPM; the
// Attester does not close it. Without
// it the Evidence says nothing about where the authenticator key lives, and
// a Verifier refuses it unless [AllowSoftwareKey] is set.
func WithCertifiedKey(k *Key) AttesterOption {
	return attesterOption(func(c *attesterConfig) { c.key = k })
}

// WithEventLog puts the TCG boot event log (crypto-agile format, at most
// MaxEventLogLen bytes, for example the contents of
// /sys/kernel/security/tpm0/binary_bios_measurements) in every Evidence, so
// that the Verifier can replay it to the quoted PCRs. NewAttester refuses
// a log that does not parse. By default no log is sent.
func WithEventLog(log []byte) AttesterOption {
	l := slices.Clone(log)
	return attesterOption(func(c *attesterConfig) { c.eventLog = l })
}

// IncludeEKCertificate makes [Attester.Enroll] keep the EK certificate it
// read, and the Evidence carry it, for verifiers that check it themselves
// ([WithEKRoots]). By default the Evidence carries no EK certificate (it
// identifies the machine to every relying party).
func IncludeEKCertificate() AttesterOption {
	return attesterOption(func(c *attesterConfig) { c.includeEK = true })
}

// WithPinnedAKs makes the Verifier trust quotes signed by these attestation
// keys, each given as its public area (TPMT_PUBLIC bytes,
// [Attester.AKPublic]), without an AK certificate. It is the trust model
// of earlier versions, kept for compatibility: the relying party must have
// learned each AK from an enrolment it trusts. Keys are matched by TPM
// name, so the whole public area, attributes included, is pinned; the
// Appraisal's MachineID is then the AK's TPM name.
func WithPinnedAKs(aks ...[]byte) VerifierOption {
	p := make([][]byte, len(aks))
	for i, ak := range aks {
		p[i] = slices.Clone(ak)
	}
	return verifierOption(func(c *verifierConfig) { c.pinned = append(c.pinned, p...) })
}

// WithAKRoots makes the Verifier trust attestation keys whose AK
// certificate, carried in the Evidence, chains to one of these enrollment
// CA roots (package enroll's CA issues them after credential activation
// against the TPM's EK). The Appraisal's MachineID is then the machine
// identifier the certificate names ([MachineID] of the EK).
func WithAKRoots(roots ...*x509.Certificate) VerifierOption {
	r := slices.Clone(roots)
	return verifierOption(func(c *verifierConfig) { c.akRoots = append(c.akRoots, r...) })
}

// WithEKRoots makes the Verifier require the EK certificate in the
// Evidence ([IncludeEKCertificate]), check that it chains to one of these
// TPM manufacturer roots (with [WithEKIntermediates]), and that its key is
// the EK the AK certificate was issued for (ek_invalid otherwise). It
// needs [WithAKRoots]: the EK is a decryption key and proves nothing about
// an AK by itself; the enrollment CA bound the AK to it by credential
// activation.
func WithEKRoots(roots ...*x509.Certificate) VerifierOption {
	r := slices.Clone(roots)
	return verifierOption(func(c *verifierConfig) { c.ekRoots = append(c.ekRoots, r...) })
}

// WithEKIntermediates adds intermediate CA certificates for EK
// certificate chains.
func WithEKIntermediates(certs ...*x509.Certificate) VerifierOption {
	r := slices.Clone(certs)
	return verifierOption(func(c *verifierConfig) { c.ekIntermediates = append(c.ekIntermediates, r...) })
}

// WithMachineIDs makes the Verifier accept Evidence only from these
// machines (unknown_machine otherwise): machine identifiers as the
// Appraisal reports them (32 bytes, [MachineID] of the EK, with AK
// certificates; 34 bytes, the AK's TPM name, with pinned AKs). By default
// every machine with a trusted AK is accepted.
func WithMachineIDs(ids ...[]byte) VerifierOption {
	p := make([][]byte, len(ids))
	for i, id := range ids {
		p[i] = slices.Clone(id)
	}
	return verifierOption(func(c *verifierConfig) { c.machineIDs = append(c.machineIDs, p...) })
}

// AllowSoftwareKey makes the Verifier accept Evidence that does not
// certify the authenticator key (no TPM2_Certify): the key may then live
// in software, and the Appraisal's KeyHash is implied by the binder (see
// docs/tpm.md). By default such Evidence is refused (key_not_resident,
// CodePolicyDenied).
func AllowSoftwareKey() VerifierOption {
	return verifierOption(func(c *verifierConfig) { c.allowSoftwareKey = true })
}

// RequireEventLog makes the Verifier refuse Evidence without a boot event
// log (event_log_invalid). With or without it, a log that the Evidence
// carries must replay to the quoted PCRs.
func RequireEventLog() VerifierOption {
	return verifierOption(func(c *verifierConfig) { c.requireEventLog = true })
}

// WithClock sets the Verifier's clock, used for the validity of AK and EK
// certificates. The default is time.Now.
func WithClock(now func() time.Time) VerifierOption {
	return verifierOption(func(c *verifierConfig) {
		if now != nil {
			c.now = now
		}
	})
}

// WithPCRPolicy sets the verifier's expected-values policy: for each listed
// PCR index (0 to 23), the SHA-256 values it may hold. A listed PCR that
// the quote does not cover, or that holds another value, is a violation;
// all violations are reported together (CodePolicyDenied,
// pcr_policy_denied). It is the boot-state policy: only with it does the
// Appraisal report HardwareBacked, since a quote of a platform whose state
// nobody appraised proves where the keys are, not what runs. Without it,
// any values pass, and the Result reports them as Measurements.
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
