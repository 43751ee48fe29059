package postauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Responder is the attesting side: it answers attestation requests with an
// Exported Authenticator signed by its [Identity] whose end-entity
// CertificateEntry carries fresh Evidence from its [Attester] in
// cmw_attestation (draft-fossati-seat-expat). A Responder is immutable and
// safe for concurrent use.
type Responder struct {
	id  *Identity
	att Attester
	cfg config
}

// NewResponder returns a Responder that signs with id and attests with att.
// Options: [WithAttestationExtension], [WithCMWEncoding],
// [WithSignatureSchemes] (the schemes it signs with, in order of
// preference) and [WithRand].
func NewResponder(id *Identity, att Attester, opts ...Option) (*Responder, error) {
	if id == nil || att == nil {
		return nil, errors.New("postauth: NewResponder needs an identity and an attester")
	}
	return &Responder{id: id, att: att, cfg: newConfig(opts)}, nil
}

// Identity is the identity the Responder signs with.
func (r *Responder) Identity() *Identity { return r.id }

// Respond answers req on the connection ch, where the local endpoint has
// role: it computes the binder for its key and req's context, asks its
// Attester for Evidence bound to it, and returns the authenticator. It
// refuses a request of the wrong type for the role (a reflected request)
// and one that did not offer cmw_attestation ([ErrAttestationNotOffered]).
// ctx bounds the Attester: Respond returns when ctx ends, whatever the
// Attester does.
// To decline instead, send [Channel.Refuse]'s empty authenticator.
func (r *Responder) Respond(ctx context.Context, ch *Channel, role Role, req *Request) ([]byte, error) {
	if ch == nil || req == nil {
		return nil, errors.New("postauth: Respond needs a channel and a request")
	}
	if _, err := checkRequestRole(role, req); err != nil {
		return nil, err
	}
	if offer, ok := req.Extension(r.cfg.extension); !ok || len(offer) != 0 {
		return nil, ErrAttestationNotOffered
	}
	spki := r.id.SPKI()
	binder, err := ch.Binder(spki, req.Context)
	if err != nil {
		return nil, err
	}
	chal := Challenge{Binder: binder, KeyHash: ch.KeyHash(spki), Hash: ch.Hash(), Context: slices.Clone(req.Context), Role: role}
	ev, err := callBounded(ctx, func() (Evidence, error) { return r.att.Attest(ctx, chal) })
	if err != nil {
		return nil, fmt.Errorf("postauth: attester: %w", err)
	}
	rec, err := EncodeCMW(ev, r.cfg.encoding)
	if err != nil {
		return nil, err
	}
	data := make([]byte, 0, 2+len(rec))
	data = append(data, byte(len(rec)>>8), byte(len(rec)))
	data = append(data, rec...)
	return ch.authenticate(role, req, r.id, []Extension{{Type: r.cfg.extension, Data: data}}, &r.cfg)
}
