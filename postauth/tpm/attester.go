package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// AKTemplate returns the template of the attestation key the Attester creates:
// an ECC P-256 restricted signing key (fixedTPM, fixedParent,
// sensitiveDataOrigin, userWithAuth, restricted, sign) with the ECDSA
// SHA-256 scheme and name algorithm SHA-256, and an all-zero unique field.
// It is the template of go-tpm-tools' AKTemplateECC, so on one TPM both
// derive the same primary key under the endorsement hierarchy.
func AKTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			Restricted:          true,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
			Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		}),
	}
}

// maxAttempts bounds how often Attest reads and quotes the PCRs when they
// change in between (or the posture changes while it quotes).
const maxAttempts = 4

// Errors of the Attester.
var (
	// ErrClosed is returned by an Attester after Close.
	ErrClosed = errors.New("tpm: attester closed")
	// ErrPCRsChanged means the PCRs changed between reading them and
	// quoting them in every attempt: something else extends them.
	ErrPCRsChanged = errors.New("tpm: PCRs changed while they were quoted")
	// ErrPostureMismatch means the posture PCR does not hold the value the
	// posture log reproduces: something else extended or reset it.
	ErrPostureMismatch = errors.New("tpm: the posture PCR does not match the posture log")
)

// Attester produces TPM 2.0 Evidence. Attest quotes the configured PCRs
// with the Challenge's binder as qualifying data, signed by the attestation
// key (AK), certifies the authenticator key ([WithCertifiedKey]) with the
// same binder, and adds the AK certificate chain once [Attester.Enroll] or
// [Attester.SetAKCertificate] set it. It is safe for concurrent use: TPM
// commands are serialized through its *SharedTPM.
type Attester struct {
	tpm        *SharedTPM
	ak         tpm2.TPMHandle
	akName     tpm2.TPM2BName
	akPub      []byte // TPMT_PUBLIC, as the TPM returned it
	transient  bool   // the AK was created by NewAttester: Close flushes it
	pcrs       []int  // ascending
	posture    posture.Source
	posturePCR int
	maxData    int  // largest TPM2B_DATA the TPM accepts (TPM_PT_MAX_DIGEST)
	akNull     bool // the AK's scheme is NULL: commands name ECDSA/SHA-256
	key        *Key // the certified authenticator key, or nil
	eventLog   []byte
	includeEK  bool
	ekCert     []byte // with includeEK: the EK certificate read by NewAttester
	closed     atomic.Bool

	chains atomic.Pointer[chains] // AK (and EK) certificate chains, set by Enroll or SetAKCertificate
}

// chains are the certificate chains the Evidence carries.
type chains struct {
	ak        [][]byte
	ek        [][]byte
	machineID []byte
}

var _ postauth.Attester = (*Attester)(nil)

// NewAttester loads or creates the attestation key on the TPM behind t and
// returns an Attester. t is not closed by the Attester; Close flushes a
// created AK. If a PCRRegister (posture) uses the same TPM, pass both the
// same *SharedTPM (see [Share]); the same holds for a certified [Key].
// Options: [WithPCRs], [WithPosture], [WithPosturePCR], [WithAKHandle],
// [WithEndorsementAuth], [WithCertifiedKey], [WithEventLog],
// [IncludeEKCertificate].
//
// The Evidence carries an AK certificate once [Attester.Enroll] (or
// [Attester.SetAKCertificate]) has run; before that, only a verifier that
// pins the AK ([WithPinnedAKs]) accepts it.
func NewAttester(ctx context.Context, t transport.TPM, opts ...AttesterOption) (*Attester, error) {
	if t == nil {
		return nil, errors.New("tpm: nil transport")
	}
	var cfg attesterConfig
	for _, o := range opts {
		if o != nil {
			o.applyAttester(&cfg)
		}
	}
	a := &Attester{tpm: Share(t), posture: cfg.posture, key: cfg.key, includeEK: cfg.includeEK}
	if cfg.key != nil && cfg.key.tpm != a.tpm {
		return nil, errors.New("tpm: the certified Key uses another lock: give the Attester and the Key the same *tpm.SharedTPM (tpm.Share)")
	}
	if cfg.eventLog != nil {
		if len(cfg.eventLog) == 0 || len(cfg.eventLog) > MaxEventLogLen {
			return nil, fmt.Errorf("tpm: event log of %d bytes (at most %d)", len(cfg.eventLog), MaxEventLogLen)
		}
		if _, err := ParseEventLog(cfg.eventLog); err != nil {
			return nil, err
		}
		a.eventLog = slices.Clone(cfg.eventLog)
	}
	pcrs := cfg.pcrs
	if pcrs == nil {
		pcrs = []int{0, 1, 2, 3, 4, 5, 6, 7}
	}
	if cfg.posture != nil {
		pcr := cfg.posturePCR
		if rs, ok := cfg.posture.(interface{ Register() posture.Register }); ok {
			if reg, ok := rs.Register().(*PCRRegister); ok {
				if reg.tpm != a.tpm {
					return nil, errors.New("tpm: the posture PCRRegister uses another lock: give the Attester and the PCRRegister the same *tpm.SharedTPM (tpm.Share)")
				}
				if pcr == 0 {
					pcr = reg.pcr
				} else if pcr != reg.pcr {
					return nil, fmt.Errorf("tpm: posture PCR %d but the posture register is PCR %d", pcr, reg.pcr)
				}
			}
		}
		if pcr == 0 {
			pcr = DefaultPosturePCR
		}
		a.posturePCR = pcr
		pcrs = append(slices.Clone(pcrs), pcr)
	}
	for _, p := range pcrs {
		if p < 0 || p >= NumPCRs {
			return nil, fmt.Errorf("tpm: PCR index %d out of range", p)
		}
	}
	slices.Sort(pcrs)
	a.pcrs = slices.Compact(pcrs)
	if len(a.pcrs) == 0 {
		return nil, errors.New("tpm: empty PCR selection")
	}
	err := a.tpm.do(ctx, func(t transport.TPM) error {
		var err error
		if a.maxData, err = maxDigest(t); err != nil {
			return err
		}
		if a.includeEK {
			if a.ekCert, _, err = readEKCert(t, ekConfig{}); err != nil {
				return err
			}
		}
		if cfg.akHandle != 0 {
			return a.loadAK(t, cfg.akHandle)
		}
		return a.createAK(t, cfg.endorsementAuth)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// maxDigest returns TPM_PT_MAX_DIGEST, the size of the largest digest the
// TPM supports, which is also the largest TPM2B_DATA (qualifying data).
func maxDigest(t transport.TPM) (int, error) {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTMaxDigest), PropertyCount: 1}.Execute(t)
	if err != nil {
		return 0, fmt.Errorf("tpm: reading TPM_PT_MAX_DIGEST: %w", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, fmt.Errorf("tpm: reading TPM_PT_MAX_DIGEST: %w", err)
	}
	for _, p := range props.TPMProperty {
		if p.Property == tpm2.TPMPTMaxDigest {
			if p.Value < sha256.Size {
				return 0, errors.New("tpm: the TPM does not support SHA-256")
			}
			return int(p.Value), nil
		}
	}
	return 0, errors.New("tpm: the TPM did not report TPM_PT_MAX_DIGEST")
}

func (a *Attester) createAK(t transport.TPM, auth []byte) error {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(auth)},
		InPublic:      tpm2.New2B(AKTemplate()),
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("tpm: creating the attestation key: %w", err)
	}
	a.ak, a.akName, a.akPub, a.transient = rsp.ObjectHandle, rsp.Name, slices.Clone(rsp.OutPublic.Bytes()), true
	if _, _, err := parseAK(a.akPub); err != nil {
		_, _ = tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(t)
		return err
	}
	a.akNull = akSchemeIsNull(a.akPub)
	return nil
}

func (a *Attester) loadAK(t transport.TPM, h tpm2.TPMHandle) error {
	rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t)
	if err != nil {
		return fmt.Errorf("tpm: reading the attestation key %#x: %w", uint32(h), err)
	}
	a.ak, a.akName, a.akPub = h, rsp.Name, slices.Clone(rsp.OutPublic.Bytes())
	_, _, err = parseAK(a.akPub)
	a.akNull = akSchemeIsNull(a.akPub)
	return err
}

// AKPublic returns the attestation key's public area (TPMT_PUBLIC bytes):
// what a relying party pins in [NewVerifier].
func (a *Attester) AKPublic() []byte { return slices.Clone(a.akPub) }

// AKName returns the attestation key's TPM name (0x000B || SHA-256 of the
// public area): the MachineID the Verifier reports.
func (a *Attester) AKName() []byte { return slices.Clone(a.akName.Buffer) }

// PCRs returns the quoted PCR selection, ascending.
func (a *Attester) PCRs() []int { return slices.Clone(a.pcrs) }

// Close flushes the attestation key if NewAttester created it. It does not
// close the transport. Attest fails with ErrClosed afterwards.
func (a *Attester) Close() error {
	return a.tpm.do(context.Background(), func(t transport.TPM) error {
		if a.closed.Swap(true) || !a.transient {
			return nil
		}
		if _, err := (tpm2.FlushContext{FlushHandle: a.ak}).Execute(t); err != nil {
			return fmt.Errorf("tpm: flushing the attestation key: %w", err)
		}
		return nil
	})
}

func (a *Attester) snapshot() (*posture.Snapshot, error) {
	s, err := a.posture.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("tpm: posture: %w", err)
	}
	if s.Alg != crypto.SHA256 {
		return nil, errors.New("tpm: the posture log must use SHA-256 (the PCR bank)")
	}
	return s, nil
}

// Attest quotes the PCR selection with the binder as qualifying data
// (SHA-256 of the binder if the binder is longer than the TPM's largest
// digest, see docs/tpm.md) and returns the Evidence: the quote, its
// signature, the AK public area, the PCR values and, if configured, the
// certification of the authenticator key, the AK (and EK) certificate
// chain, the event log and the posture log. The PCR values are read in the same locked sequence as the
// quote and checked against the quote's PCR digest, and the posture log
// against the posture PCR; if either changed meanwhile, Attest tries again
// (a few times). It honours ctx while waiting for and talking to the TPM.
func (a *Attester) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	if err := ctx.Err(); err != nil {
		return postauth.Evidence{}, err
	}
	if len(ch.Binder) == 0 || len(ch.Binder) > MaxBinderLen {
		return postauth.Evidence{}, fmt.Errorf("tpm: binder of %d bytes", len(ch.Binder))
	}
	qd := qualifyingData(ch.Binder, a.maxData)
	sel := make([]uint, len(a.pcrs))
	for i, p := range a.pcrs {
		sel[i] = uint(p)
	}
	lastErr := ErrPCRsChanged
	for range maxAttempts {
		var before *posture.Snapshot
		if a.posture != nil {
			var err error
			if before, err = a.snapshot(); err != nil {
				return postauth.Evidence{}, err
			}
		}
		var values map[int][]byte
		var rsp *tpm2.QuoteResponse
		var cert *Certification
		err := a.tpm.do(ctx, func(t transport.TPM) error {
			if a.closed.Load() {
				return ErrClosed
			}
			var err error
			if values, err = readPCRs(t, a.pcrs); err != nil {
				return err
			}
			rsp, err = tpm2.Quote{
				SignHandle:     tpm2.AuthHandle{Handle: a.ak, Name: a.akName, Auth: tpm2.PasswordAuth(nil)},
				QualifyingData: tpm2.TPM2BData{Buffer: qd},
				InScheme:       ecdsaScheme,
				PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
					{Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(sel...)},
				}},
			}.Execute(t)
			if err != nil {
				return fmt.Errorf("tpm: quote: %w", err)
			}
			if a.key != nil {
				if cert, err = a.certify(t, qd); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return postauth.Evidence{}, err
		}
		quote := slices.Clone(rsp.Quoted.Bytes())
		at, err := ParseAttest(quote)
		if err != nil {
			return postauth.Evidence{}, fmt.Errorf("tpm: the TPM returned an unusable quote: %w", err)
		}
		if !bytes.Equal(at.ExtraData, qd) || !slices.Equal(at.PCRs, a.pcrs) {
			return postauth.Evidence{}, errors.New("tpm: the TPM quoted other data than requested")
		}
		if !bytes.Equal(at.PCRDigest, PCRDigest(values)) {
			lastErr = ErrPCRsChanged
			continue
		}
		ev := &Evidence{Quote: quote, Signature: tpm2.Marshal(rsp.Signature), AK: a.akPub, PCRs: values,
			Certification: cert, EventLog: a.eventLog}
		if c := a.chains.Load(); c != nil {
			ev.AKChain, ev.EKChain = c.ak, c.ek
		}
		if a.posture != nil {
			snap := before
			if !bytes.Equal(values[a.posturePCR], snap.Head) {
				// The posture may have changed after the snapshot: the
				// quote may cover the newer log.
				if snap, err = a.snapshot(); err != nil {
					return postauth.Evidence{}, err
				}
				if !bytes.Equal(values[a.posturePCR], snap.Head) {
					lastErr = ErrPostureMismatch
					continue
				}
			}
			ev.Posture = &PostureLog{PCR: a.posturePCR, Log: snap.Log}
		}
		b, err := ev.Marshal()
		if err != nil {
			return postauth.Evidence{}, err
		}
		return postauth.Evidence{Type: MediaType, Value: b}, nil
	}
	return postauth.Evidence{}, lastErr
}

// ecdsaScheme is the signature scheme of quotes and certifications.
var ecdsaScheme = tpm2.TPMTSigScheme{
	Scheme:  tpm2.TPMAlgECDSA,
	Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
}

// certify runs TPM2_Certify of the authenticator key by the AK, with the
// qualifying data qd (the binder), and checks what the TPM returned.
func (a *Attester) certify(t transport.TPM, qd []byte) (*Certification, error) {
	if a.key.closed.Load() {
		return nil, errors.New("tpm: the certified key is closed")
	}
	// An AK with a scheme of its own takes the NULL scheme here (swtpm
	// refuses a scheme that repeats the key's, TPM_RC_SCHEME).
	scheme := tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull}
	if a.akNull {
		scheme = ecdsaScheme
	}
	rsp, err := tpm2.Certify{
		ObjectHandle:   a.key.authHandle(),
		SignHandle:     tpm2.AuthHandle{Handle: a.ak, Name: a.akName, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: qd},
		InScheme:       scheme,
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: certify: %w", err)
	}
	c := &Certification{Attest: slices.Clone(rsp.CertifyInfo.Bytes()), Signature: tpm2.Marshal(rsp.Signature), Key: slices.Clone(a.key.pubArea)}
	at, err := ParseCertification(c.Attest)
	if err != nil {
		return nil, fmt.Errorf("tpm: the TPM returned an unusable certification: %w", err)
	}
	if !bytes.Equal(at.ExtraData, qd) || !bytes.Equal(at.CertifiedName, objectName(c.Key)) {
		return nil, errors.New("tpm: the TPM certified other data than requested")
	}
	return c, nil
}

// parseAK parses a TPMT_PUBLIC that must be an attestation key this
// profile accepts: ECC P-256, name algorithm SHA-256, restricted signing
// (not decrypting), fixedTPM, scheme ECDSA with SHA-256 (or NULL), and
// nothing after the structure. It returns the public key and the TPM name.
func parseAK(raw []byte) (*ecdsa.PublicKey, []byte, error) {
	if len(raw) == 0 || len(raw) > MaxAKLen {
		return nil, nil, errors.New("tpm: AK public area size out of range")
	}
	pub, err := unmarshalSigningPublic(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: AK public area: %w", err)
	}
	attrs := pub.ObjectAttributes
	if pub.Type != tpm2.TPMAlgECC || pub.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, nil, errors.New("tpm: the AK must be an ECC key with name algorithm SHA-256")
	}
	if !attrs.Restricted || !attrs.SignEncrypt || attrs.Decrypt || !attrs.FixedTPM {
		return nil, nil, errors.New("tpm: the AK must be a fixedTPM restricted signing key")
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: AK parameters: %w", err)
	}
	switch parms.Scheme.Scheme {
	case tpm2.TPMAlgNull:
	case tpm2.TPMAlgECDSA:
		d, err := parms.Scheme.Details.ECDSA()
		if err != nil || d.HashAlg != tpm2.TPMAlgSHA256 {
			return nil, nil, errors.New("tpm: the AK scheme must be ECDSA with SHA-256")
		}
	default:
		return nil, nil, errors.New("tpm: the AK scheme must be ECDSA with SHA-256")
	}
	key, err := eccPublic(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: AK: %w", err)
	}
	return key, objectName(raw), nil
}

// akSchemeIsNull reports whether the AK public area (already accepted by
// parseAK) has the NULL scheme: commands then name ECDSA/SHA-256.
func akSchemeIsNull(raw []byte) bool {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](raw)
	if err != nil {
		return false
	}
	parms, err := pub.Parameters.ECCDetail()
	return err == nil && parms.Scheme.Scheme == tpm2.TPMAlgNull
}

// objectName is the TPM name of an object with name algorithm SHA-256:
// TPM_ALG_SHA256 (2 bytes) || SHA-256(TPMT_PUBLIC).
func objectName(raw []byte) []byte {
	sum := sha256.Sum256(raw)
	return append([]byte{0x00, 0x0B}, sum[:]...)
}
