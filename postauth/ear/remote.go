package ear

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/reattest/reattest/postauth"
)

// RemoteVerifier is the background-check model: a [postauth.Verifier]
// that forwards Evidence to a remote verifier service over the Veraison
// challenge-response API v1, with the connection's binder as the session
// nonce, and appraises the EAR it gets back. It never trusts the remote
// verdict alone for freshness: Evidence is accepted only for media types
// with a local binding checker (WithLocalBinding), which reads the
// Evidence's own freshness value and key hash before anything is sent,
// unless the caller opted in to WithInsecureRemoteBinding.
//
// It fails closed: a verifier that is down, slow (past the timeout, even
// if it answers later), returns garbage or an error status gives
// CodeUnavailable, never an Appraisal. It is safe for concurrent use; call
// Close when done to wait for background session deletes.
type RemoteVerifier struct {
	c        *apiClient
	a        *appraiser
	bindings map[string]BindingFunc
	insecure map[string]bool
}

var (
	_ postauth.Verifier = (*RemoteVerifier)(nil)
	_ io.Closer         = (*RemoteVerifier)(nil)
)

// NewRemoteVerifier returns a background-check verifier for the verifier
// service at baseURL (for example "https://verifier.example:8443"; the API
// paths are appended). It needs pinned EAR keys (WithVerifierKeys) or the
// explicit WithTrustOnFirstFetch, and at least one accepted media type
// (WithLocalBinding, WithInsecureRemoteBinding).
func NewRemoteVerifier(baseURL string, opts ...RemoteOption) (*RemoteVerifier, error) {
	cfg, err := newRemoteConfig(opts)
	if err != nil {
		return nil, err
	}
	v := &RemoteVerifier{bindings: cfg.bindings, insecure: cfg.insecure}
	if v.c, err = newAPIClient(baseURL, &cfg.clientConfig); err != nil {
		return nil, err
	}
	if v.a, err = newAppraiser(&cfg.appraisalConfig); err != nil {
		return nil, err
	}
	return v, nil
}

// MediaTypes returns the accepted Evidence media types: those with a local
// binding checker and those accepted without one, sorted.
func (v *RemoteVerifier) MediaTypes() []string {
	var out []string
	for t := range v.bindings {
		out = append(out, t)
	}
	for t := range v.insecure {
		if v.bindings[t] == nil {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// Close waits for the background deletes of finished sessions.
func (v *RemoteVerifier) Close() error {
	v.c.close()
	return nil
}

// Verify appraises Evidence remotely, in this order (docs/verification.md):
//
//  1. the media type has a local binding checker (or was accepted without
//     one): format_not_accepted;
//  2. the local check, on the Evidence's own bytes: its freshness value is
//     the Challenge's binder (binder_mismatch, [ErrLocalBinding]) and its
//     key hash, if the format carries one, the Challenge's key hash
//     (key_hash_mismatch). Nothing is sent before this passes;
//  3. the EAR verification key: pinned, or fetched once (trust on first
//     fetch);
//  4. the exchange, under the circuit breaker, the in-flight limit and the
//     timeout: a session with nonce = the binder, the Evidence, polling
//     while processing. Down, slow, garbage, error statuses: CodeUnavailable
//     (verifier_unavailable, verifier_timeout, verifier_error, verifier_busy,
//     verifier_circuit_open);
//  5. the EAR: signature, profile, eat_nonce = the binder, freshness, and a
//     reattest.key-hash annotation (if any) equal to the local key hash.
//     Failures are the verifier's: CodeUnavailable, verifier_error;
//  6. the policy on every submodule: ear_policy_denied (CodePolicyDenied).
//
// It reports Nonce and KeyHash as the local checker found them (with no
// checker, the EAR's eat_nonce and its key hash annotation or attested
// key), Format from the reattest.format annotation (else the submodule
// name), and the rest as the passport Verifier does.
func (v *RemoteVerifier) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	base := baseType(ev.Type)
	bind := v.bindings[base]
	if bind == nil && !v.insecure[base] {
		return nil, invalid(postauth.ReasonFormatNotAccepted, fmt.Errorf("ear: no local binding checker for %q", trunc(ev.Type)))
	}
	var localNonce, localKeyHash []byte
	if bind != nil {
		n, kh, err := bind(ch, ev)
		if err != nil {
			var pe *postauth.Error
			if errors.As(err, &pe) {
				return nil, err
			}
			return nil, invalid(postauth.ReasonEvidenceInvalid, fmt.Errorf("%w: %w", postauth.ErrEvidence, err))
		}
		if !equal(n, ch.Binder) { // mutation: background local binding
			return nil, invalid(postauth.ReasonBinderMismatch, fmt.Errorf("%w: %w", ErrLocalBinding, postauth.ErrBinderMismatch))
		}
		if kh != nil && !equal(kh, ch.KeyHash) { // mutation: background local key hash
			return nil, invalid(postauth.ReasonKeyHashMismatch, fmt.Errorf("%w: %w", ErrLocalBinding, postauth.ErrKeyHashMismatch))
		}
		localNonce, localKeyHash = n, kh
	}
	keys, err := v.c.verifierKeys(ctx)
	if err != nil {
		return nil, err
	}
	var c *claims
	err = v.c.guard(ctx, func(ctx context.Context) error {
		token, err := v.c.appraise(ctx, ch.Binder, ev, nil)
		if err != nil {
			return err
		}
		if c, err = v.a.verifyToken(token, keys); err != nil {
			return unavailable(postauth.ReasonVerifierError, fmt.Errorf("%w: %w", ErrVerifierAnswer, err))
		}
		if !equal(c.nonce, ch.Binder) { // mutation: background eat_nonce
			return answerErr("the EAR's eat_nonce is not the nonce sent")
		}
		if err := v.a.fresh(c); err != nil {
			return unavailable(postauth.ReasonVerifierError, fmt.Errorf("%w: %w", ErrVerifierAnswer, err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ann, err := c.annotated()
	if err != nil {
		return nil, answerErr("%v", err)
	}
	eKeyHash := annotatedKeyHash(ann, ch.Hash)
	if ak, err := c.keyAttestation(); err == nil && ak != nil && eKeyHash == nil {
		eKeyHash, _ = hashOf(ch.Hash, ak)
	}
	keyHash, nonce := localKeyHash, localNonce
	switch {
	case bind == nil:
		keyHash, nonce = eKeyHash, c.nonce
	case localKeyHash == nil:
		keyHash = eKeyHash // a format without a key hash: the verifier's word
	case eKeyHash != nil && !equal(eKeyHash, localKeyHash):
		return nil, answerErr("the EAR vouches for another key than the Evidence")
	}
	app, err := v.a.report(c, ann)
	if err != nil {
		return nil, unavailable(postauth.ReasonVerifierError, fmt.Errorf("%w: %w", ErrVerifierAnswer, err))
	}
	if err := v.a.deny(c); err != nil {
		return nil, err
	}
	app.Format = ann.format
	if app.Format == "" {
		app.Format = c.submods[0].name
	}
	app.Nonce = slices.Clone(nonce)
	app.KeyHash = slices.Clone(keyHash)
	return app, nil
}
