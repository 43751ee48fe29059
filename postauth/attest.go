package postauth

import (
	"context"
	"crypto"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Challenge is what fresh Evidence must be bound to. The Attester receives
// it from [Respond]; the Verifier receives the same values, recomputed by
// the relying party from its own view of the connection.
type Challenge struct {
	// Binder is Hash(SPKI || TLS-Exporter("Attestation", context, 32)): the
	// Evidence's freshness value (EAT eat_nonce, TPM extraData, TDX
	// REPORTDATA).
	Binder []byte
	// KeyHash is Hash(SPKI) of the authenticator's end-entity key, which
	// the Evidence must carry (key binding).
	KeyHash []byte
	// Hash is the hash function of Binder and KeyHash (the cipher suite's).
	Hash crypto.Hash
	// Context is the certificate_request_context being answered.
	Context []byte
	// Role is the attesting endpoint's role.
	Role Role
}

// Attester produces fresh Evidence bound to a Challenge. Implementations
// live in the format packages (postauth/softeat, ...).
type Attester interface {
	Attest(ctx context.Context, ch Challenge) (Evidence, error)
}

// Verifier appraises Evidence against a Challenge. It returns an Appraisal
// only if the Evidence is authentic (signed by a trusted key or platform),
// well formed and acceptable under the verifier's own policy. It must report
// the freshness value and key hash it found inside the signed Evidence:
// [Verify] compares them with the Challenge itself, so a verifier that
// forgets to check them still cannot pass unbound Evidence.
//
// A verifier that cannot reach a verdict (remote verifier down, timeout)
// must return an error with CodeUnavailable; it must never return an
// Appraisal.
type Verifier interface {
	Verify(ctx context.Context, ch Challenge, ev Evidence) (*Appraisal, error)
}

// Measurement is a measured component (draft-ietf-rats-eat-measured-component):
// an identifier and a digest.
type Measurement struct {
	Name    string
	Version string
	// Alg is the digest's hash algorithm.
	Alg    crypto.Hash
	Digest []byte
}

// Appraisal is what a Verifier extracted from Evidence it accepted. Only
// [Verify] turns it into a [Result], after its own binding checks.
type Appraisal struct {
	// Format names the Evidence format, for example "software-eat".
	Format string
	// HardwareBacked says whether a hardware root of trust signed the
	// Evidence. The software EAT format sets it to false.
	HardwareBacked bool
	// Nonce is the freshness value signed in the Evidence.
	Nonce []byte
	// KeyHash is the authenticator key hash signed in the Evidence.
	KeyHash []byte
	// MachineID identifies the attesting machine or instance (EAT ueid, TPM
	// AK name, TDX MRCONFIGID, ...). The relying party should check it
	// against the peer it meant to reach.
	MachineID []byte
	// AttestedAt is when the Evidence was produced (EAT iat). Zero means
	// unknown; Verify then uses the verification time.
	AttestedAt time.Time
	// Expiry, if set, is the latest time the appraisal may be relied on.
	Expiry time.Time
	// Measurements are platform or software measurements.
	Measurements []Measurement
	// PostureHead is the agent posture register value covered by the
	// Evidence, and PostureLog the posture log the verifier replayed to
	// reproduce it (see package posture). Both nil if the Evidence carries
	// no posture.
	PostureHead []byte
	PostureLog  []byte
}

// Result is a verified attestation. Only [Verify] (directly or through a
// [Requester]) creates one, after the authenticator, the key trust, the
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
	attestedAt     time.Time
	verifiedAt     time.Time
	expiry         time.Time
	measurements   []Measurement
	postureHead    []byte
	postureLog     []byte
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

// ValidAt reports whether the result may still be relied on at t, given a
// maximum age counted from AttestedAt (maxAge <= 0: no age limit).
func (r *Result) ValidAt(t time.Time, maxAge time.Duration) bool {
	if !r.expiry.IsZero() && !t.Before(r.expiry) {
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

// RespondOptions tune [Respond]. The zero value is valid.
type RespondOptions struct {
	// AttestationExtension is the cmw_attestation code point; 0 means
	// DefaultAttestationExtension.
	AttestationExtension uint16
	// Encoding of the CMW record (CBOR by default).
	Encoding CMWEncoding
	// Authenticate passes options to the authenticator (signature
	// schemes, Rand). Its Extensions field is ignored.
	Authenticate AuthenticateOptions
}

// Respond answers an attestation request: it computes the binder for id's
// key and req's context on this connection, asks att for Evidence bound to
// it, and returns an Exported Authenticator whose end-entity
// CertificateEntry carries the Evidence in cmw_attestation
// (draft-fossati-seat-expat). role is the local endpoint's role. The request
// must have offered cmw_attestation.
func Respond(ctx context.Context, ch *Channel, role Role, req *Request, id *Identity, att Attester, opts *RespondOptions) ([]byte, error) {
	if opts == nil {
		opts = &RespondOptions{}
	}
	if ch == nil || req == nil || id == nil || att == nil {
		return nil, errors.New("postauth: Respond needs a channel, a request, an identity and an attester")
	}
	if _, err := checkRequestRole(role, req); err != nil {
		return nil, err
	}
	extType := opts.AttestationExtension
	if extType == 0 {
		extType = DefaultAttestationExtension
	}
	if offer, ok := req.Extension(extType); !ok || len(offer) != 0 {
		return nil, ErrAttestationNotOffered
	}
	spki := id.SPKI()
	binder, err := ch.Binder(spki, req.Context)
	if err != nil {
		return nil, err
	}
	ev, err := att.Attest(ctx, Challenge{
		Binder: binder, KeyHash: ch.KeyHash(spki), Hash: ch.Hash(),
		Context: slices.Clone(req.Context), Role: role,
	})
	if err != nil {
		return nil, fmt.Errorf("postauth: attester: %w", err)
	}
	rec, err := EncodeCMW(ev, opts.Encoding)
	if err != nil {
		return nil, err
	}
	data := make([]byte, 0, 2+len(rec))
	data = append(data, byte(len(rec)>>8), byte(len(rec)))
	data = append(data, rec...)
	ao := opts.Authenticate
	ao.Extensions = []Extension{{Type: extType, Data: data}}
	return ch.Authenticate(role, req, id, &ao)
}

// Policy is what a relying party requires of an attested authenticator.
type Policy struct {
	// Verifier appraises the Evidence. Required.
	Verifier Verifier
	// Formats lists the accepted Evidence media types (parameters are
	// ignored when comparing). Nil accepts every type the Verifier accepts.
	Formats []string
	// Validate configures the authenticator check: signature schemes and
	// key trust. The zero value trusts only the TLS peer's own key.
	Validate ValidateOptions
	// AttestationExtension is the cmw_attestation code point; 0 means
	// DefaultAttestationExtension.
	AttestationExtension uint16
	// Time is the current time; nil means time.Now.
	Time func() time.Time
}

func (p *Policy) now() time.Time {
	if p.Time != nil {
		return p.Time()
	}
	return time.Now()
}

func (p *Policy) extension() uint16 {
	if p.AttestationExtension == 0 {
		return DefaultAttestationExtension
	}
	return p.AttestationExtension
}

func (p *Policy) accepts(mediaType string) bool {
	if p.Formats == nil {
		return true
	}
	base := BaseMediaType(mediaType)
	for _, f := range p.Formats {
		if BaseMediaType(f) == base {
			return true
		}
	}
	return false
}

// Verify checks an attested authenticator raw, sent by peer in answer to req
// on this connection, and returns the verified Result: the authenticator
// ([Channel.Validate]), cmw_attestation present in the end-entity entry only
// and only if req offered it, the Evidence format, the Verifier's appraisal,
// and that the Evidence's freshness value equals this connection's binder
// and its key hash the authenticator key's hash (both in constant time).
//
// Verify does not enforce single use of req's context: a [Requester] does.
func Verify(ctx context.Context, ch *Channel, peer Role, req *Request, raw []byte, p *Policy) (*Result, error) {
	if ch == nil || req == nil || p == nil || p.Verifier == nil {
		return nil, errors.New("postauth: Verify needs a channel, a request and a policy with a verifier")
	}
	a, err := ParseAuthenticator(raw)
	if err != nil {
		return nil, invalid("malformed", err)
	}
	return verifyParsed(ctx, ch, peer, req, a, p)
}

func verifyParsed(ctx context.Context, ch *Channel, peer Role, req *Request, a *Authenticator, p *Policy) (*Result, error) {
	extType := p.extension()
	if offer, ok := req.Extension(extType); !ok || len(offer) != 0 {
		return nil, invalid("attestation_not_offered", ErrAttestationNotOffered)
	}
	v, err := ch.validateParsed(peer, req, a, &p.Validate)
	if err != nil {
		return nil, err
	}
	var cmwData []byte
	for i, e := range a.Certificates {
		for _, x := range e.Extensions {
			if x.Type != extType {
				continue
			}
			if i != 0 {
				return nil, invalid("unsupported_extension", fmt.Errorf("%w: cmw_attestation outside the end-entity entry", ErrUnexpectedExtension))
			}
			cmwData = x.Data
		}
	}
	if cmwData == nil {
		return nil, &Error{Code: CodeRequired, Reason: "no_attestation", Err: ErrNoAttestation}
	}
	s := cryptobyte.String(cmwData)
	var rec cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&rec) || !s.Empty() || len(rec) == 0 {
		return nil, invalid("malformed", fmt.Errorf("%w: bad cmw_attestation", ErrMalformed))
	}
	ev, err := DecodeCMW(rec)
	if err != nil {
		return nil, invalid("unsupported_cmw", err)
	}
	if !p.accepts(ev.Type) {
		return nil, invalid("format_not_accepted", fmt.Errorf("%w: %q", ErrFormatNotAccepted, BaseMediaType(ev.Type)))
	}
	spki := v.Leaf.RawSubjectPublicKeyInfo
	binder, err := ch.Binder(spki, req.Context)
	if err != nil {
		return nil, err
	}
	keyHash := ch.KeyHash(spki)
	chal := Challenge{Binder: binder, KeyHash: keyHash, Hash: ch.Hash(), Context: slices.Clone(req.Context), Role: peer}
	app, err := p.Verifier.Verify(ctx, chal, ev)
	if err != nil {
		return nil, classifyVerifierError(ctx, err)
	}
	if app == nil {
		return nil, invalid("evidence_invalid", errNoEvidence)
	}
	if subtle.ConstantTimeCompare(app.Nonce, binder) != 1 {
		return nil, invalid("binder_mismatch", ErrBinderMismatch)
	}
	if subtle.ConstantTimeCompare(app.KeyHash, keyHash) != 1 {
		return nil, invalid("key_hash_mismatch", ErrKeyHashMismatch)
	}
	subject := v.Leaf.Subject.String()
	if v.KeyTrust == KeyTrustSamePeer && ch.peer != nil {
		// The authenticator's certificate is the peer's choice; only the
		// key was compared. The name is the one TLS verified.
		subject = ch.peer.Subject.String()
	}
	now := p.now()
	res := &Result{
		attester:       peer,
		format:         app.Format,
		mediaType:      ev.Type,
		hardwareBacked: app.HardwareBacked,
		keyTrust:       v.KeyTrust,
		keyHash:        keyHash,
		subject:        subject,
		machineID:      slices.Clone(app.MachineID),
		attestedAt:     app.AttestedAt,
		verifiedAt:     now,
		expiry:         app.Expiry,
		measurements:   slices.Clone(app.Measurements),
		postureHead:    slices.Clone(app.PostureHead),
		postureLog:     slices.Clone(app.PostureLog),
	}
	if res.attestedAt.IsZero() || res.attestedAt.After(now) {
		res.attestedAt = now
	}
	return res, nil
}

// classifyVerifierError keeps a verifier's coded error, maps context errors
// (the caller hung up: canceled; a deadline: unavailable) and treats the rest
// as invalid Evidence.
func classifyVerifierError(ctx context.Context, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled) || ctx.Err() == context.Canceled:
		return &Error{Code: CodeCanceled, Reason: "canceled", Err: err}
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded:
		return &Error{Code: CodeUnavailable, Reason: "verifier_timeout", Err: err}
	}
	return invalid("evidence_invalid", fmt.Errorf("%w: %w", ErrEvidence, err))
}
