package tpm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/reattest/reattest/postauth"
)

// Verifier checks TPM Evidence: the AK's trust (an AK certificate from an
// enrollment CA, or a pinned AK), the EK and the machine, the quote, the
// certification of the authenticator key, the PCRs, the boot event log,
// the posture and the boot-state policy (docs/tpm.md, section 6). It is
// safe for concurrent use.
type Verifier struct {
	pinned           map[string]*ecdsa.PublicKey // by AK name
	akRoots          *x509.CertPool
	ekRoots          *x509.CertPool
	ekIntermediates  *x509.CertPool
	machineIDs       [][]byte
	allowSoftwareKey bool
	requireEventLog  bool
	pcrs             map[int][][]byte
	reqPosture       bool
	posturePCR       int
	now              func() time.Time

	// Verified AK trust decisions and certified key hashes, so that an
	// agent that attests again and again with the same AK certificate and
	// the same key costs two signature verifications (quote and
	// certification), not six. Only successes are cached, each with the
	// validity window of the chains that made it.
	akCache  *boundedCache[akTrust]
	keyCache *boundedCache[[]byte]
}

// akTrust is a cached decision that an AK (with its chains) is trusted.
type akTrust struct {
	key       *ecdsa.PublicKey
	machineID []byte
	notBefore time.Time // zero for a pinned AK
	notAfter  time.Time
}

// cacheSize bounds each cache of a Verifier.
const cacheSize = 1024

var _ postauth.Verifier = (*Verifier)(nil)

// NewVerifier returns a Verifier. It needs a trust anchor for attestation
// keys: the enrollment CA roots ([WithAKRoots]) and/or pinned AKs
// ([WithPinnedAKs]). By default it requires the Evidence to certify a
// TPM-resident authenticator key ([AllowSoftwareKey] lifts it) and
// reports HardwareBacked only with a boot-state policy ([WithPCRPolicy]).
//
// Options: [WithAKRoots], [WithPinnedAKs], [WithEKRoots],
// [WithEKIntermediates], [WithMachineIDs], [AllowSoftwareKey],
// [WithPCRPolicy], [RequireEventLog], [RequirePosture], [WithPosturePCR],
// [WithClock].
func NewVerifier(opts ...VerifierOption) (*Verifier, error) {
	cfg := verifierConfig{now: time.Now}
	for _, o := range opts {
		if o != nil {
			o.applyVerifier(&cfg)
		}
	}
	if len(cfg.akRoots) == 0 && len(cfg.pinned) == 0 {
		return nil, errors.New("tpm: no trusted attestation keys: give enrollment CA roots (tpm.WithAKRoots) or pinned AKs (tpm.WithPinnedAKs)")
	}
	if len(cfg.ekRoots) > 0 && len(cfg.akRoots) == 0 {
		return nil, errors.New("tpm: tpm.WithEKRoots needs tpm.WithAKRoots: only an AK certificate binds an AK to an EK")
	}
	v := &Verifier{
		pinned:           make(map[string]*ecdsa.PublicKey, len(cfg.pinned)),
		allowSoftwareKey: cfg.allowSoftwareKey,
		requireEventLog:  cfg.requireEventLog,
		reqPosture:       cfg.requirePosture,
		posturePCR:       cfg.posturePCR,
		now:              cfg.now,
		akCache:          newBoundedCache[akTrust](cacheSize),
		keyCache:         newBoundedCache[[]byte](cacheSize),
	}
	if v.posturePCR == 0 {
		v.posturePCR = DefaultPosturePCR
	}
	if v.posturePCR < 0 || v.posturePCR >= NumPCRs {
		return nil, fmt.Errorf("tpm: posture PCR %d out of range", v.posturePCR)
	}
	for i, raw := range cfg.pinned {
		key, name, err := parseAK(raw)
		if err != nil {
			return nil, fmt.Errorf("tpm: trusted AK %d: %w", i, err)
		}
		v.pinned[string(name)] = key
	}
	pool := func(what string, certs []*x509.Certificate) (*x509.CertPool, error) {
		if len(certs) == 0 {
			return nil, nil
		}
		p := x509.NewCertPool()
		for _, c := range certs {
			if c == nil {
				return nil, fmt.Errorf("tpm: nil %s certificate", what)
			}
			p.AddCert(c)
		}
		return p, nil
	}
	var err error
	if v.akRoots, err = pool("enrollment CA root", cfg.akRoots); err != nil {
		return nil, err
	}
	if v.ekRoots, err = pool("EK root", cfg.ekRoots); err != nil {
		return nil, err
	}
	if v.ekIntermediates, err = pool("EK intermediate", cfg.ekIntermediates); err != nil {
		return nil, err
	}
	for _, id := range cfg.machineIDs {
		if len(id) != sha256.Size && len(id) != 2+sha256.Size {
			return nil, fmt.Errorf("tpm: machine identifier of %d bytes", len(id))
		}
		v.machineIDs = append(v.machineIDs, id)
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

// keyID is the attestation key identifier of an AK: the first 16 bytes of
// SHA-256 over its DER SubjectPublicKeyInfo (postauth.Appraisal's
// AttestationKeyID; the same form as a software EAT kid). nil if the key
// does not marshal (it was parsed from a TPM public area, so it does).
func keyID(ak *ecdsa.PublicKey) []byte {
	spki, err := x509.MarshalPKIXPublicKey(ak)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(spki)
	return sum[:16]
}

// evidenceErr is a CodeInvalid error with a wire-safe reason.
func evidenceErr(reason postauth.Reason, cause error) error {
	return postauth.NewError(postauth.CodeInvalid, reason, cause)
}

// Verify checks the Evidence in the order of docs/tpm.md (section 6): the
// media type; the encoding and bounds; the AK (its certificate chain to an
// enrollment CA root, or a pinned AK); the EK certificate ([WithEKRoots]);
// the machine ([WithMachineIDs]); the quote's signature, form and binder;
// the certification of the authenticator key (signature by the same AK,
// binder, certified name = name of the key public area, the key's
// attributes); the PCR selection and digest; the event log; the posture;
// then the policies (a TPM-resident key, the PCR policy).
//
// The Appraisal reports what the Evidence carries: Nonce is the quote's
// extraData (the binder; for the hashed form, see docs/tpm.md section 4,
// the binder it commits to); KeyHash is Hash(SPKI) of the certified key's
// public area, so that the relying party's comparison with the
// authenticator key is the check that the authenticator key is the
// TPM-resident key (without a certification, AllowSoftwareKey only, the
// binder implies the key hash); MachineID is the machine identifier of
// the AK certificate (or a pinned AK's name); HardwareBacked is true only
// with a boot-state policy ([WithPCRPolicy]).
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

	// The attestation key and the machine.
	key, machineID, reason, err := v.attester(e)
	if err != nil {
		return nil, evidenceErr(reason, err)
	}
	if v.machineIDs != nil && !slices.ContainsFunc(v.machineIDs, func(id []byte) bool { return bytes.Equal(id, machineID) }) { // mutation: tpm machine pin
		return nil, evidenceErr(postauth.ReasonUnknownMachine, errors.New("tpm: machine not allowed"))
	}

	// The quote.
	if err := verifyAttestSignature(key, e.Quote, e.Signature); err != nil { // mutation: tpm quote signature
		return nil, evidenceErr(postauth.ReasonBadEvidenceSignature, fmt.Errorf("tpm: quote: %w", err))
	}
	at, err := ParseAttest(e.Quote)
	if err != nil {
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, err)
	}
	if !binderMatches(at.ExtraData, ch.Binder) { // mutation: tpm quote binder
		return nil, evidenceErr(postauth.ReasonBinderMismatch, postauth.ErrBinderMismatch)
	}
	nonce := at.ExtraData
	if hashedBinder(at.ExtraData, ch.Binder) {
		nonce = ch.Binder // the value extraData commits to (docs/tpm.md, section 4)
	}
	app := &postauth.Appraisal{
		Format:           Format,
		Nonce:            slices.Clone(nonce),
		KeyHash:          slices.Clone(ch.KeyHash), // implied by the binder; replaced by the certified key's hash below
		MachineID:        slices.Clone(machineID),  // the cache keeps its own
		AttestationKeyID: keyID(key),
	}

	// The authenticator key.
	if c := e.Certification; c != nil {
		kh, reason, err := v.checkCertification(ch, key, c)
		if err != nil {
			return nil, evidenceErr(reason, err)
		}
		app.KeyHash = kh // mutation: tpm certified key hash
	}

	// The PCRs.
	if !slices.Equal(at.PCRs, slices.Sorted(maps.Keys(e.PCRs))) {
		return nil, evidenceErr(postauth.ReasonPCRSelectionMismatch, errors.New("tpm: reported PCRs differ from the quoted selection"))
	}
	if !bytes.Equal(at.PCRDigest, PCRDigest(e.PCRs)) {
		return nil, evidenceErr(postauth.ReasonPCRDigestMismatch, errors.New("tpm: reported PCR values do not match the quoted digest"))
	}
	for _, i := range at.PCRs {
		app.Measurements = append(app.Measurements, postauth.Measurement{
			Name: fmt.Sprintf("pcr/%d", i), Alg: sha256Hash, Digest: slices.Clone(e.PCRs[i]),
		})
	}
	switch {
	case e.EventLog != nil:
		events, err := checkEventLog(e.EventLog, e.PCRs)
		if err != nil {
			return nil, evidenceErr(postauth.ReasonEventLogInvalid, err)
		}
		for _, ev := range events {
			app.Measurements = append(app.Measurements, postauth.Measurement{
				Name: fmt.Sprintf("pcr/%d/event/%#x", ev.PCR, ev.Type), Alg: sha256Hash, Digest: ev.Digest,
			})
		}
	case v.requireEventLog:
		return nil, evidenceErr(postauth.ReasonEventLogInvalid, errors.New("tpm: evidence carries no event log"))
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

	// The policies: reported only for Evidence valid in every other
	// respect.
	if e.Certification == nil && !v.allowSoftwareKey { // mutation: tpm key residency
		return nil, postauth.NewError(postauth.CodePolicyDenied, postauth.ReasonKeyNotResident,
			errors.New("tpm: the evidence does not certify a TPM-resident authenticator key"))
	}
	if viol := v.pcrViolations(e.PCRs); len(viol) > 0 { // mutation: tpm pcr policy
		return nil, &postauth.Error{
			Code: postauth.CodePolicyDenied, Reason: postauth.ReasonPCRPolicyDenied, Violations: viol,
			Err: errors.New("tpm: PCR values not allowed by policy"),
		}
	}
	app.HardwareBacked = v.pcrs != nil // mutation: tpm hardware-backed needs a boot policy
	return app, nil
}

// attester decides whether the Evidence's AK is trusted, and its EK
// certificate if the verifier checks EKs, and returns the AK's key and the
// machine identifier. A decision made before for the same AK public area
// and chains is reused while the chains are valid.
func (v *Verifier) attester(e *Evidence) (*ecdsa.PublicKey, []byte, postauth.Reason, error) {
	h := sha256.New()
	for _, b := range append(append([][]byte{e.AK}, e.AKChain...), append([][]byte{nil}, e.EKChain...)...) {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		h.Write(b)
	}
	ck := [32]byte(h.Sum(nil))
	now := v.now()
	if t, ok := v.akCache.get(ck); ok && (t.notBefore.IsZero() || (!now.Before(t.notBefore) && !now.After(t.notAfter))) {
		return t.key, t.machineID, "", nil
	}
	t, err := v.trustAK(e, now)
	if err != nil {
		return nil, nil, postauth.ReasonUntrustedAttester, err
	}
	if v.ekRoots != nil {
		notBefore, notAfter, err := v.checkEK(e, t.machineID, now)
		if err != nil {
			return nil, nil, postauth.ReasonEKInvalid, err
		}
		t.notBefore, t.notAfter = later(t.notBefore, notBefore), earlier(t.notAfter, notAfter)
	}
	v.akCache.put(ck, *t)
	return t.key, t.machineID, "", nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// trustAK decides whether the Evidence's AK is trusted and returns its key
// and the machine identifier: with an AK certificate chain, the chain must
// verify to an enrollment CA root; without one, the AK must be pinned.
func (v *Verifier) trustAK(e *Evidence, now time.Time) (*akTrust, error) {
	key, name, err := parseAK(e.AK)
	if err != nil {
		return nil, err
	}
	if e.AKChain != nil {
		if v.akRoots == nil {
			return nil, errors.New("tpm: an AK certificate, but no enrollment CA roots configured")
		}
		id, err := verifyAKChain(e.AKChain, v.akRoots, now, key, name)
		if err != nil {
			return nil, err
		}
		return &akTrust{key: key, machineID: id.machineID, notBefore: id.notBefore, notAfter: id.notAfter}, nil
	}
	pinned, ok := v.pinned[string(name)]
	if !ok {
		return nil, errors.New("tpm: attestation key not trusted (no AK certificate, not pinned)")
	}
	return &akTrust{key: pinned, machineID: name}, nil
}

// checkEK checks the EK certificate chain of the Evidence against the
// manufacturer roots, and that its key is the EK the AK certificate names.
// It returns the validity window of the verified EK chain.
func (v *Verifier) checkEK(e *Evidence, machineID []byte, now time.Time) (time.Time, time.Time, error) {
	var zero time.Time
	if e.EKChain == nil {
		return zero, zero, errors.New("tpm: evidence carries no EK certificate")
	}
	if e.AKChain == nil {
		return zero, zero, errors.New("tpm: a pinned AK is bound to no EK")
	}
	cert, notBefore, notAfter, err := verifyEKChain(e.EKChain, v.ekRoots, v.ekIntermediates, now)
	if err != nil {
		return zero, zero, err
	}
	id, err := MachineID(cert.PublicKey)
	if err != nil {
		return zero, zero, err
	}
	if !bytes.Equal(id, machineID) { // mutation: tpm ek binding
		return zero, zero, errors.New("tpm: the AK certificate was issued for another EK")
	}
	return notBefore, notAfter, nil
}

// checkCertification checks the AK's certification of the authenticator
// key and returns the key's hash (Hash(SPKI) with the Challenge's hash).
func (v *Verifier) checkCertification(ch postauth.Challenge, ak *ecdsa.PublicKey, c *Certification) ([]byte, postauth.Reason, error) {
	// The same AK as the quote: one TPM made both.
	if err := verifyAttestSignature(ak, c.Attest, c.Signature); err != nil { // mutation: tpm certify signature
		return nil, postauth.ReasonBadEvidenceSignature, fmt.Errorf("tpm: certification: %w", err)
	}
	at, err := ParseCertification(c.Attest)
	if err != nil {
		return nil, postauth.ReasonEvidenceInvalid, err
	}
	if !binderMatches(at.ExtraData, ch.Binder) { // mutation: tpm certify binder
		return nil, postauth.ReasonBinderMismatch, fmt.Errorf("tpm: certification: %w", postauth.ErrBinderMismatch)
	}
	name := objectName(c.Key)
	ck := sha256.Sum256(append(slices.Clone(name), byte(ch.Hash)))
	kh, ok := v.keyCache.get(ck)
	if !ok {
		pub, _, err := parseKeyPublic(c.Key)
		if err != nil {
			return nil, postauth.ReasonKeyCertificationInvalid, err
		}
		if kh, err = keyHash(ch.Hash, pub); err != nil {
			return nil, postauth.ReasonEvidenceInvalid, err
		}
		v.keyCache.put(ck, kh)
	}
	if !bytes.Equal(at.CertifiedName, name) { // mutation: tpm certified name
		return nil, postauth.ReasonKeyCertificationInvalid, errors.New("tpm: the certification is for another key")
	}
	return slices.Clone(kh), "", nil
}

// verifyAttestSignature verifies an ECDSA P-256 / SHA-256 TPMT_SIGNATURE
// over a TPMS_ATTEST.
func verifyAttestSignature(key *ecdsa.PublicKey, attest, sig []byte) error {
	r, s, err := ecdsaSignature(sig)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(attest)
	if !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)) {
		return errors.New("tpm: signature invalid")
	}
	return nil
}

// binderMatches reports whether extraData is the binder, or SHA-256 of a
// binder longer than 32 bytes (for TPMs whose largest digest is SHA-256).
func binderMatches(extra, binder []byte) bool {
	if len(binder) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(extra, binder) == 1 || hashedBinder(extra, binder)
}

// hashedBinder reports whether extraData is SHA-256 of a binder longer
// than 32 bytes.
func hashedBinder(extra, binder []byte) bool {
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

// boundedCache is a map of at most max entries; when full, an arbitrary
// entry makes room. It is safe for concurrent use.
type boundedCache[V any] struct {
	mu  sync.Mutex
	m   map[[32]byte]V
	max int
}

func newBoundedCache[V any](max int) *boundedCache[V] {
	return &boundedCache[V]{m: make(map[[32]byte]V), max: max}
}

func (c *boundedCache[V]) get(k [32]byte) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *boundedCache[V]) put(k [32]byte, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
}
