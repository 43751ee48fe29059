package postauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/reattest/reattest/posture"
)

// RelyingParty is the verifying side: what it requires of an attested
// authenticator, and the settings of the requests it issues. Build one
// with [NewRelyingParty], then a [Requester] per connection with
// [RelyingParty.NewRequester]. A RelyingParty is immutable and safe for
// concurrent use.
type RelyingParty struct {
	verifier Verifier
	cfg      config
	formats  []string    // accepted media types (base types); nil: any
	exts     []Extension // the extensions every request offers
}

// NewRelyingParty returns a RelyingParty that appraises Evidence with v.
// Options: [WithFormats], [WithKeyTrust], [WithRoots], [WithDNSName],
// [WithSignatureSchemes] (offered and accepted), [WithAttestationExtension],
// [WithContextTTL], [WithMaxPending], [WithRand] and [WithClock].
//
// Without [WithFormats], a Verifier that implements [MediaTyper] sets the
// accepted media types; otherwise every type reaches the Verifier.
func NewRelyingParty(v Verifier, opts ...Option) (*RelyingParty, error) {
	if v == nil {
		return nil, errors.New("postauth: NewRelyingParty needs a Verifier")
	}
	rp := &RelyingParty{verifier: v, cfg: newConfig(opts)}
	formats := rp.cfg.formats
	if formats == nil {
		if mt, ok := v.(MediaTyper); ok {
			formats = mt.MediaTypes()
		}
	}
	for _, f := range formats {
		base := BaseMediaType(f)
		if base == "" {
			return nil, fmt.Errorf("postauth: bad media type %q", f)
		}
		rp.formats = append(rp.formats, base)
	}
	if formats != nil && rp.formats == nil {
		rp.formats = []string{} // an explicit empty list accepts nothing
	}
	rp.exts = []Extension{
		{Type: ExtensionSignatureAlgorithms, Data: marshalSignatureAlgorithms(rp.cfg.schemes)},
		{Type: rp.cfg.extension, Data: []byte{}},
	}
	return rp, nil
}

// Verifier is the RelyingParty's Evidence verifier.
func (rp *RelyingParty) Verifier() Verifier { return rp.verifier }

// Formats is the list of accepted Evidence media types (without
// parameters), or nil if every type reaches the Verifier.
func (rp *RelyingParty) Formats() []string { return slices.Clone(rp.formats) }

// AttestationExtension is the cmw_attestation code point the RelyingParty
// offers.
func (rp *RelyingParty) AttestationExtension() uint16 { return rp.cfg.extension }

// ContextTTL is how long a request it issues may be answered.
func (rp *RelyingParty) ContextTTL() time.Duration { return rp.cfg.contextTTL }

func (rp *RelyingParty) accepts(mediaType string) bool {
	if rp.formats == nil {
		return true
	}
	return slices.Contains(rp.formats, BaseMediaType(mediaType))
}

// Verify checks an attested authenticator raw, sent by peer in answer to
// req on the connection ch, and returns the verified Result. The checks, in
// order: the authenticator (framing, context, offered extensions, Finished,
// signature scheme, key trust, signature: [Channel.Validate]);
// cmw_attestation offered by req and present in the end-entity entry only;
// the Evidence media type; the Verifier's appraisal; that the Evidence's
// freshness value equals this connection's binder and its key hash the
// authenticator key's hash (both in constant time); and that the posture
// log, if any, replays to the attested register value.
//
// Verify does not enforce single use of req's context: a [Requester] does.
func (rp *RelyingParty) Verify(ctx context.Context, ch *Channel, peer Role, req *Request, raw []byte) (*Result, error) {
	if ch == nil || req == nil {
		return nil, errors.New("postauth: Verify needs a channel and a request")
	}
	a, err := ParseAuthenticator(raw)
	if err != nil {
		return nil, invalid(ReasonMalformed, err)
	}
	return rp.verify(ctx, ch, peer, req, a)
}

func (rp *RelyingParty) verify(ctx context.Context, ch *Channel, peer Role, req *Request, a *Authenticator) (*Result, error) {
	extType := rp.cfg.extension
	if offer, ok := req.Extension(extType); !ok || len(offer) != 0 { // mutation: attestation offered in request
		return nil, invalid(ReasonAttestationNotOffered, ErrAttestationNotOffered)
	}
	v, err := ch.validate(peer, req, a, &rp.cfg)
	if err != nil {
		return nil, err
	}
	var cmwData []byte
	for i, e := range a.Certificates {
		for _, x := range e.Extensions {
			if x.Type != extType {
				continue
			}
			if i != 0 { // mutation: cmw only in end entity
				return nil, invalid(ReasonUnsupportedExtension, fmt.Errorf("%w: cmw_attestation outside the end-entity entry", ErrUnexpectedExtension))
			}
			cmwData = x.Data
		}
	}
	if cmwData == nil {
		return nil, &Error{Code: CodeRequired, Reason: ReasonNoAttestation, Err: ErrNoAttestation}
	}
	s := cryptobyte.String(cmwData)
	var rec cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&rec) || !s.Empty() || len(rec) == 0 {
		return nil, invalid(ReasonMalformed, fmt.Errorf("%w: bad cmw_attestation", ErrMalformed))
	}
	ev, err := DecodeCMW(rec)
	if err != nil {
		return nil, invalid(ReasonUnsupportedCMW, err)
	}
	if !rp.accepts(ev.Type) { // mutation: format check
		return nil, invalid(ReasonFormatNotAccepted, fmt.Errorf("%w: %q", ErrFormatNotAccepted, BaseMediaType(ev.Type)))
	}
	spki := v.SPKI
	binder, err := ch.Binder(spki, req.Context)
	if err != nil {
		return nil, err
	}
	keyHash := ch.KeyHash(spki)
	chal := Challenge{Binder: binder, KeyHash: keyHash, Hash: ch.Hash(), Context: slices.Clone(req.Context), Role: peer}
	app, err := callBounded(ctx, func() (*Appraisal, error) { return rp.verifier.Verify(ctx, chal, ev) })
	if err != nil {
		return nil, classifyVerifierError(ctx, err)
	}
	if app == nil { // mutation: nil appraisal
		return nil, invalid(ReasonEvidenceInvalid, errNoEvidence)
	}
	if subtle.ConstantTimeCompare(app.Nonce, binder) != 1 { // mutation: postauth binder compare
		return nil, invalid(ReasonBinderMismatch, ErrBinderMismatch)
	}
	if subtle.ConstantTimeCompare(app.KeyHash, keyHash) != 1 { // mutation: postauth keyhash compare
		return nil, invalid(ReasonKeyHashMismatch, ErrKeyHashMismatch)
	}
	var st *posture.State
	switch {
	case len(app.PostureHead) == 0 && len(app.PostureLog) == 0:
	case len(app.PostureHead) == 0 || len(app.PostureLog) == 0:
		return nil, invalid(ReasonPostureInvalid, errors.New("postauth: a posture log without a register value, or the reverse"))
	default:
		if st, err = posture.Verify(app.PostureLog, app.PostureHead); err != nil { // mutation: relying party replays posture
			return nil, invalid(ReasonPostureInvalid, err)
		}
	}
	var subject string
	if v.KeyTrust == KeyTrustSamePeer && ch.peer != nil { // mutation: same-peer subject
		// The authenticator's certificate is the peer's choice; only the
		// key was compared. The name is the one TLS verified.
		subject = ch.peer.subject
	} else {
		leaf, err := v.Leaf()
		if err != nil {
			return nil, err
		}
		subject = leaf.Subject.String()
	}
	now := rp.cfg.now()
	res := &Result{
		attester:       peer,
		format:         app.Format,
		mediaType:      ev.Type,
		hardwareBacked: app.HardwareBacked,
		keyTrust:       v.KeyTrust,
		keyHash:        keyHash,
		subject:        subject,
		machineID:      slices.Clone(app.MachineID),
		attKeyID:       slices.Clone(app.AttestationKeyID),
		attestedAt:     app.AttestedAt,
		verifiedAt:     now,
		expiry:         app.Expiry,
		measurements:   slices.Clone(app.Measurements),
		postureHead:    slices.Clone(app.PostureHead),
		postureLog:     slices.Clone(app.PostureLog),
		posture:        st,
	}
	if res.attestedAt.IsZero() || res.attestedAt.After(now) {
		res.attestedAt = now
	}
	return res, nil
}

// ContextErr is ctx.Err(), except that a context whose deadline has passed
// by the clock is context.DeadlineExceeded even if its timer has not fired
// yet. A starved runtime can run timers late, and a context's Err changes
// only when its timer runs: a verdict that comes after the deadline must
// be judged by the deadline, not by the timer. Code that accepts a result
// after a bounded call (a Verifier, an appraisal hook, a remote verifier)
// checks it with ContextErr.
func ContextErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) { // mutation: deadline by the clock
		return context.DeadlineExceeded
	}
	return nil
}

// callBounded calls f (a Verifier or an Attester) so that ctx bounds it:
// when ctx ends first, callBounded returns ctx's error at once and a result
// that f returns later is dropped, so a verdict that arrives after the
// deadline or after the caller went away is never a pass, whether f honours
// ctx or not. A panic in f is an unavailable verdict (ReasonVerifierFailed)
// rather than a crash of the caller.
func callBounded[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type outcome struct {
		v   T
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				var zero T
				done <- outcome{zero, &Error{Code: CodeUnavailable, Reason: ReasonVerifierFailed, Err: fmt.Errorf("postauth: panic: %v", p)}}
			}
		}()
		v, err := f()
		done <- outcome{v, err}
	}()
	var zero T
	select {
	case o := <-done:
		// Both may be ready at once, and select picks either: a verdict
		// whose context has ended (or whose deadline has passed, its
		// timer late) is dropped here too.
		if err := ContextErr(ctx); err != nil && o.err == nil {
			return zero, err
		}
		return o.v, o.err
	case <-ctx.Done(): // mutation: verify deadline
		return zero, ctx.Err()
	}
}

// classifyVerifierError keeps a verifier's coded error, maps context errors
// (the caller hung up: canceled; a deadline: unavailable) and treats the rest
// as invalid Evidence.
func classifyVerifierError(ctx context.Context, err error) error {
	var e *Error
	if errors.As(err, &e) && e != nil && e.Code != CodeUnknown {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled) || ctx.Err() == context.Canceled:
		return &Error{Code: CodeCanceled, Reason: ReasonCanceled, Err: err}
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded:
		return &Error{Code: CodeUnavailable, Reason: ReasonVerifierTimeout, Err: err}
	}
	return invalid(ReasonEvidenceInvalid, fmt.Errorf("%w: %w", ErrEvidence, err))
}
