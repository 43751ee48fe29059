package postauth

import (
	"context"
	"slices"
	"time"

	"github.com/reattest/reattest/posture"
)

// Result is a verified attestation. Only [RelyingParty.Verify] (directly
// or through a [Requester]) creates one, after the authenticator, the key trust, the
// Evidence binding and the Verifier all passed; its fields are unexported
// so that nothing else can forge one. A Result is immutable.
type Result struct {
	attester       Role
	format         string
	mediaType      string
	hardwareBacked bool
	keyTrust       KeyTrust
	keyHash        []byte
	subject        string
	machineID      []byte
	attKeyID       []byte
	attestedAt     time.Time
	verifiedAt     time.Time
	expiry         time.Time
	measurements   []Measurement
	postureHead    []byte
	postureLog     []byte
	posture        *posture.State // replayed from postureLog; nil without posture
}

// Attester is the role of the endpoint that attested.
func (r *Result) Attester() Role { return r.attester }

// Format is the Evidence format name reported by the verifier.
func (r *Result) Format() string { return r.format }

// MediaType is the CMW media type of the Evidence.
func (r *Result) MediaType() string { return r.mediaType }

// HardwareBacked reports whether a hardware root of trust signed the Evidence.
func (r *Result) HardwareBacked() bool { return r.hardwareBacked }

// KeyTrust is the mode by which the authenticator key was trusted.
func (r *Result) KeyTrust() KeyTrust { return r.keyTrust }

// KeyHash is Hash(SPKI) of the authenticator key the Evidence vouches for.
func (r *Result) KeyHash() []byte { return slices.Clone(r.keyHash) }

// Subject names the attester: with KeyTrustSamePeer, the subject of the
// TLS peer certificate (which TLS verified and whose key the authenticator
// used); otherwise the authenticator certificate's subject (verified
// against Roots with KeyTrustChain, chosen by the peer with
// KeyTrustAttestedKeyOnly).
func (r *Result) Subject() string { return r.subject }

// MachineID is the attester's machine or instance identifier, if any.
func (r *Result) MachineID() []byte { return slices.Clone(r.machineID) }

// AttestationKeyID identifies the key that signed the Evidence (see
// [Appraisal.AttestationKeyID]), nil if the format has none.
func (r *Result) AttestationKeyID() []byte { return slices.Clone(r.attKeyID) }

// AttestedAt is when the Evidence was produced.
func (r *Result) AttestedAt() time.Time { return r.attestedAt }

// VerifiedAt is when the relying party verified it.
func (r *Result) VerifiedAt() time.Time { return r.verifiedAt }

// Expiry is the verifier's expiry for the appraisal (zero: none; the relying
// party's max-age governs).
func (r *Result) Expiry() time.Time { return r.expiry }

// Measurements are the measurements the verifier reported.
func (r *Result) Measurements() []Measurement { return slices.Clone(r.measurements) }

// PostureHead is the verified posture register value, or nil.
func (r *Result) PostureHead() []byte { return slices.Clone(r.postureHead) }

// PostureLog is the verified posture log (package posture decodes it), or nil.
func (r *Result) PostureLog() []byte { return slices.Clone(r.postureLog) }

// Posture returns a copy of the agent posture the Evidence covers: the
// state the relying party obtained by replaying the posture log against
// the attested register value at verification. It is nil if the Evidence
// carried no posture.
func (r *Result) Posture() *posture.State {
	if r.posture == nil {
		return nil
	}
	return r.posture.Clone()
}

// ValidAt reports whether the result may still be relied on at t: before
// the verifier's Expiry (if any) and, with maxAge > 0, no older than maxAge
// counted from AttestedAt.
func (r *Result) ValidAt(t time.Time, maxAge time.Duration) bool {
	if !r.expiry.IsZero() && !t.Before(r.expiry) { // mutation: verifier expiry
		return false
	}
	if maxAge > 0 && t.Sub(r.attestedAt) > maxAge {
		return false
	}
	return true
}

type resultKey struct{}

// NewContext returns a copy of ctx carrying res. The HTTP middleware uses it
// to hand the verified Result to handlers.
func NewContext(ctx context.Context, res *Result) context.Context {
	return context.WithValue(ctx, resultKey{}, res)
}

// FromContext returns the Result stored by [NewContext], if any. A handler
// behind the reattest middleware on a high-impact route always finds one.
func FromContext(ctx context.Context) (*Result, bool) {
	res, ok := ctx.Value(resultKey{}).(*Result)
	return res, ok && res != nil
}
