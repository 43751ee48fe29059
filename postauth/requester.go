package postauth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Context layout (docs/protocol.md, "certificate_request_context"): every
// context starts with NonceLen unpredictable bytes that identify it among
// the pending requests of a connection.
const (
	// NonceLen is the length of the random prefix of every context.
	NonceLen = 16
	// connectionContextLen is the length of a connection-mode context: all
	// random.
	connectionContextLen = 32
	// MaxBindingLen bounds an operation binding appended to the nonce.
	MaxBindingLen = MaxContextLen - NonceLen
)

// consumedMemory is how many consumed context nonces a Requester remembers
// to report reuse clearly. Reuse is refused either way.
const consumedMemory = 16

type pendingRequest struct {
	context  []byte // nonce || suffix; just the nonce for a template
	bound    bool   // the context ends with an operation binding
	template bool   // the answerer appends the operation binding
	expires  time.Time
}

// Requester is the relying party's side of attestation on one connection:
// it issues authenticator requests and verifies the answers. Contexts are
// unpredictable (a random nonce), single use (consumed by the first answer,
// valid or not), expire after the RelyingParty's context lifetime, and at
// most its maximum of pending requests are kept, so a flood of unanswered
// requests costs bounded memory. A Requester is safe for concurrent use
// (HTTP/2 streams share one).
type Requester struct {
	ch      *Channel
	rp      *RelyingParty
	peer    Role
	reqType HandshakeType

	mu       sync.Mutex // guards pending, consumed, next
	pending  []pendingRequest
	consumed [consumedMemory][NonceLen]byte
	next     int
}

// NewRequester returns a Requester for attestations by peer (the role of
// the endpoint that will answer) on ch. A server asks RoleClient (it sends
// CertificateRequests); a client asks RoleServer (ClientCertificateRequests).
func (rp *RelyingParty) NewRequester(ch *Channel, peer Role) (*Requester, error) {
	if ch == nil {
		return nil, errors.New("postauth: nil channel")
	}
	r := &Requester{ch: ch, rp: rp, peer: peer}
	switch peer {
	case RoleClient:
		r.reqType = TypeCertificateRequest
	case RoleServer:
		r.reqType = TypeClientCertificateRequest
	default:
		return nil, fmt.Errorf("postauth: invalid peer role %d", peer)
	}
	return r, nil
}

// Channel is the connection the Requester works on.
func (r *Requester) Channel() *Channel { return r.ch }

// NewRequest issues a request. With a nil binding the context is 32 random
// bytes (connection freshness). With a binding, the context is
// 16 random bytes || binding, so the authenticator signs the binding (for
// example a digest of the operation it authorises) and [Requester.Verify]
// checks it against the binding of the request that carries the answer.
func (r *Requester) NewRequest(binding []byte) (*Request, error) {
	if len(binding) > MaxBindingLen || (binding != nil && len(binding) == 0) {
		return nil, fmt.Errorf("postauth: binding must be 1 to %d bytes (nil for none)", MaxBindingLen)
	}
	n := connectionContextLen
	if binding != nil {
		n = NonceLen
	}
	ctx := make([]byte, n, n+len(binding))
	if _, err := io.ReadFull(r.rp.cfg.rand, ctx); err != nil {
		return nil, fmt.Errorf("postauth: reading randomness: %w", err)
	}
	ctx = append(ctx, binding...)
	return r.issue(pendingRequest{context: ctx, bound: binding != nil})
}

// NewTemplate issues a request whose context is a bare 16-byte nonce that
// the answerer completes by appending the binding of the operation it is
// about to perform (pre-armed operation freshness; docs/protocol.md). The
// answer is verified with [Requester.Verify] and that operation's binding.
func (r *Requester) NewTemplate() (*Request, error) {
	ctx := make([]byte, NonceLen)
	if _, err := io.ReadFull(r.rp.cfg.rand, ctx); err != nil {
		return nil, fmt.Errorf("postauth: reading randomness: %w", err)
	}
	return r.issue(pendingRequest{context: ctx, bound: true, template: true})
}

func (r *Requester) issue(p pendingRequest) (*Request, error) {
	p.expires = r.rp.cfg.now().Add(r.rp.cfg.contextTTL)
	r.mu.Lock()
	r.dropExpiredLocked()
	if max := r.rp.cfg.maxPending; len(r.pending) >= max {
		r.pending = append(r.pending[:0], r.pending[len(r.pending)-max+1:]...)
	}
	r.pending = append(r.pending, p)
	r.mu.Unlock()
	return &Request{Type: r.reqType, Context: p.context, Extensions: r.rp.exts}, nil
}

func (r *Requester) dropExpiredLocked() {
	now := r.rp.cfg.now()
	kept := r.pending[:0]
	for _, p := range r.pending {
		if now.Before(p.expires) {
			kept = append(kept, p)
		}
	}
	clear(r.pending[len(kept):])
	r.pending = kept
}

// Pending is the number of issued requests not yet answered or expired.
func (r *Requester) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropExpiredLocked()
	return len(r.pending)
}

// take removes and returns the pending request whose nonce starts ctx.
func (r *Requester) take(ctx []byte) (pendingRequest, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(ctx) >= NonceLen {
		for i, p := range r.pending {
			if bytes.Equal(p.context[:NonceLen], ctx[:NonceLen]) {
				r.pending = slices.Delete(r.pending, i, i+1) // mutation: single use
				if len(r.pending) == 0 {
					r.pending = nil // do not keep answered requests alive
				}
				copy(r.consumed[r.next][:], ctx[:NonceLen])
				r.next = (r.next + 1) % consumedMemory
				return p, nil
			}
		}
		for _, c := range r.consumed {
			if bytes.Equal(c[:], ctx[:NonceLen]) {
				return pendingRequest{}, invalid(ReasonContextReused, ErrContextReused)
			}
		}
	}
	return pendingRequest{}, invalid(ReasonUnknownContext, ErrUnknownContext)
}

// Verify checks raw, the peer's answer to one of our pending requests,
// under binding (nil for connection freshness; the operation's binding
// otherwise), with the RelyingParty that made the Requester, and returns the
// verified Result. The request is consumed whatever the outcome, so a
// context is never accepted twice.
func (r *Requester) Verify(ctx context.Context, raw, binding []byte) (*Result, error) {
	return r.VerifyWith(ctx, r.rp, raw, binding)
}

// VerifyWith is [Requester.Verify] with another RelyingParty's verifier,
// formats and key trust, for relying parties whose requirements differ by
// operation (the HTTP middleware's routes) while the connection's requests
// are shared. The request settings (context lifetime, offered extensions)
// stay those of the Requester's own RelyingParty.
func (r *Requester) VerifyWith(ctx context.Context, rp *RelyingParty, raw, binding []byte) (*Result, error) {
	if rp == nil {
		rp = r.rp
	}
	a, err := ParseAuthenticator(raw)
	if err != nil {
		return nil, invalid(ReasonMalformed, err)
	}
	if a.Empty() {
		return nil, r.refusal(a)
	}
	pr, err := r.take(a.Context)
	if err != nil {
		return nil, err
	}
	if !r.rp.cfg.now().Before(pr.expires) { // mutation: context expiry
		return nil, &Error{Code: CodeStale, Reason: ReasonContextExpired, Err: ErrContextExpired}
	}
	want := pr.context
	switch {
	case pr.template:
		if binding == nil {
			return nil, invalid(ReasonContextMismatch, fmt.Errorf("%w: template answered without a binding", ErrContextMismatch))
		}
		want = append(want[:NonceLen:NonceLen], binding...)
	case binding == nil:
		if pr.bound {
			return nil, invalid(ReasonContextMismatch, fmt.Errorf("%w: operation context used without an operation", ErrContextMismatch))
		}
	case !pr.bound:
		return nil, invalid(ReasonContextMismatch, fmt.Errorf("%w: connection context used for an operation", ErrContextMismatch))
	default:
		if !bytes.Equal(want[NonceLen:], binding) { // mutation: operation binding
			return nil, invalid(ReasonOperationMismatch, ErrOperationMismatch)
		}
	}
	if !bytes.Equal(a.Context, want) {
		if binding != nil {
			return nil, invalid(ReasonOperationMismatch, ErrOperationMismatch)
		}
		return nil, invalid(ReasonContextMismatch, ErrContextMismatch)
	}
	req := &Request{Type: r.reqType, Context: want, Extensions: r.rp.exts}
	return rp.verify(ctx, r.ch, r.peer, req, a)
}

// refusal matches an empty authenticator against the pending requests (it
// carries no context, only a MAC over one) and consumes the one it answers.
func (r *Requester) refusal(a *Authenticator) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, p := range r.pending {
		req := &Request{Type: r.reqType, Context: p.context, Extensions: r.rp.exts}
		reqBytes, err := req.Marshal()
		if err != nil {
			continue
		}
		mac, err := r.ch.refusalMAC(r.peer, reqBytes, p.context)
		if err != nil {
			return err
		}
		if hmac.Equal(mac, a.Finished) {
			r.pending = append(r.pending[:i], r.pending[i+1:]...)
			return errRefused()
		}
	}
	return invalid(ReasonBadFinished, ErrBadFinished)
}
