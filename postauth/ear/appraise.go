package ear

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// More sentinel causes.
var (
	// ErrStale: the EAR is too old, expired, or from the future.
	ErrStale = errors.New("ear: EAR is not fresh")
	// ErrDenied: a submodule fails the appraisal policy.
	ErrDenied = errors.New("ear: denied by the appraisal policy")
	// ErrNoKeyAttestation: the passport attests no key.
	ErrNoKeyAttestation = errors.New("ear: no key attestation")
	// ErrLocalBinding: the Evidence's own freshness value or key hash,
	// checked locally, is not this connection's.
	ErrLocalBinding = errors.New("ear: the Evidence is not bound to this connection (local check)")
)

// appraiser verifies and appraises EARs; shared by both models.
type appraiser struct {
	policy *compiledPolicy
	now    func() time.Time
	skew   time.Duration
}

func newAppraiser(c *appraisalConfig) (*appraiser, error) {
	p, err := c.policy.compile()
	if err != nil {
		return nil, err
	}
	return &appraiser{policy: p, now: c.now, skew: c.skew}, nil
}

func invalid(reason postauth.Reason, cause error) error {
	return postauth.NewError(postauth.CodeInvalid, reason, cause)
}

// verifyToken checks the JWS (ES256 only) against keys, decodes the
// claims and checks the profile.
func (a *appraiser) verifyToken(token []byte, keys []*ecdsa.PublicKey) (*claims, error) {
	t, err := parseJWS(token)
	if err != nil {
		return nil, invalid(postauth.ReasonEARInvalid, err)
	}
	if err := t.verifyES256(keys); err != nil {
		return nil, invalid(postauth.ReasonEARSignatureInvalid, err)
	}
	c, err := decodeClaims(t.payload)
	if err != nil {
		return nil, invalid(postauth.ReasonEARInvalid, err)
	}
	if c.profile != Profile { // mutation: ear profile
		return nil, invalid(postauth.ReasonEARInvalid, fmt.Errorf("%w: eat_profile %q", ErrMalformed, trunc(c.profile)))
	}
	return c, nil
}

// fresh checks iat (not in the future beyond the skew, not older than the
// policy's max age) and exp.
func (a *appraiser) fresh(c *claims) error {
	now := a.now()
	switch {
	case c.issuedAt.After(now.Add(a.skew)):
		return postauth.NewError(postauth.CodeStale, postauth.ReasonEARStale, fmt.Errorf("%w: iat in the future", ErrStale))
	case now.Sub(c.issuedAt) > a.policy.maxAge: // mutation: ear max age
		return postauth.NewError(postauth.CodeStale, postauth.ReasonEARStale, fmt.Errorf("%w: older than %v", ErrStale, a.policy.maxAge))
	case !c.expiry.IsZero() && !now.Before(c.expiry): // mutation: ear exp
		return postauth.NewError(postauth.CodeStale, postauth.ReasonEARStale, fmt.Errorf("%w: exp passed", ErrStale))
	}
	return nil
}

// deny applies the policy to every submodule.
func (a *appraiser) deny(c *claims) error {
	if v := a.policy.violations(c); len(v) > 0 {
		return &postauth.Error{Code: postauth.CodePolicyDenied, Reason: postauth.ReasonEARPolicyDenied, Violations: v, Err: ErrDenied}
	}
	return nil
}

// report builds the Appraisal of a verified EAR (without Nonce and
// KeyHash, which the callers fill in): HardwareBacked from the trust
// vectors, and the reattest annotations. The posture head and log are
// reported as the EAR carries them; the relying party replays the log.
func (a *appraiser) report(c *claims, ann annotations) (*postauth.Appraisal, error) {
	app := &postauth.Appraisal{
		Format:           Format,
		HardwareBacked:   hardwareBacked(c),
		MachineID:        slices.Clone(ann.machineID),
		AttestationKeyID: slices.Clone(ann.attKeyID),
		AttestedAt:       c.issuedAt,
		Expiry:           c.issuedAt.Add(a.policy.maxAge),
	}
	if !ann.attestedAt.IsZero() && ann.attestedAt.Before(c.issuedAt) {
		app.AttestedAt = ann.attestedAt
	}
	if !c.expiry.IsZero() && c.expiry.Before(app.Expiry) {
		app.Expiry = c.expiry
	}
	if ann.postureHead != nil {
		// The relying party replays the log against the head, once
		// (postauth.RelyingParty.Verify). The annotations were decoded
		// strictly: a known digest algorithm and size, and a log.
		app.PostureHead = slices.Clone(ann.postureHead.Value)
		app.PostureLog = slices.Clone(ann.postureLog)
	}
	return app, nil
}

// hardwareBacked is true iff every submodule's trust vector has a hardware
// claim in the affirming tier (2..31 or -32..-2): the verifier says a
// genuine hardware root of trust produced the Evidence.
func hardwareBacked(c *claims) bool {
	for _, s := range c.submods {
		v, ok := s.trustVector[ClaimHardware]
		if !ok || TierOf(v) != StatusAffirming { // mutation: ear hardware backed
			return false
		}
	}
	return len(c.submods) > 0
}

// hashOf hashes data with the challenge's hash.
func hashOf(h crypto.Hash, data []byte) ([]byte, error) {
	if !h.Available() || (h != crypto.SHA256 && h != crypto.SHA384 && h != crypto.SHA512) {
		return nil, fmt.Errorf("ear: unsupported challenge hash %v", h)
	}
	d := h.New()
	d.Write(data)
	return d.Sum(nil), nil
}

// annotatedKeyHash returns the annotation's key hash if it uses hash h.
func annotatedKeyHash(ann annotations, h crypto.Hash) []byte {
	if ann.keyHash == nil || posture.AlgHash(ann.keyHash.Alg) != h {
		return nil
	}
	return ann.keyHash.Value
}

func equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
