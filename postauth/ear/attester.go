package ear

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"github.com/reattest/reattest/postauth"
)

// Attester is the passport model's attester: it wraps an Attester of a
// concrete Evidence format (softeat, tpm, ...), gets Evidence bound to the
// binder from it, has a verifier service appraise that Evidence in a
// session whose nonce is the binder, and returns the verifier's EAR in its
// place: media type MediaType, Kind postauth.KindAttestationResult (CMW
// indicator 8, Attestation Results). The relying party sees the EAR, never
// the Evidence (privacy: it learns the verdict, not the platform's
// measurements). It is safe for concurrent use; call Close when done to
// wait for background session deletes.
type Attester struct {
	inner postauth.Attester
	spki  []byte
	c     *apiClient
}

var (
	_ postauth.Attester = (*Attester)(nil)
	_ io.Closer         = (*Attester)(nil)
)

// NewAttester returns a passport Attester over inner, for the verifier
// service at baseURL. authKey is the public key of the authenticator (the
// key of the postauth.Identity that answers): the verifier puts it in the
// EAR's key attestation once the Evidence vouches for it, and the relying
// party compares it with the key that signed the authenticator.
//
// With WithVerifierKeys, the Attester checks each EAR's signature and
// nonce before sending it (a misbehaving verifier is then caught here
// rather than at the relying party); without, it checks the nonce only.
func NewAttester(inner postauth.Attester, baseURL string, authKey crypto.PublicKey, opts ...AttesterOption) (*Attester, error) {
	if inner == nil {
		return nil, errors.New("ear: nil inner attester")
	}
	cfg, err := newAttesterConfig(opts)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(authKey)
	if err != nil {
		return nil, fmt.Errorf("ear: authenticator key: %w", err)
	}
	c, err := newAPIClient(baseURL, &cfg.clientConfig)
	if err != nil {
		return nil, err
	}
	return &Attester{inner: inner, spki: spki, c: c}, nil
}

// Close waits for the background deletes of finished sessions.
func (a *Attester) Close() error {
	a.c.close()
	return nil
}

// Attest gets Evidence for ch from the inner Attester and exchanges it for
// an EAR with the verifier service (session nonce = ch.Binder, the
// authenticator key in the Reattest-Authenticator-Key header). It fails if
// the authenticator key is not the one the Challenge's key hash names, if
// the verifier cannot be reached in time or answers garbage, or if the EAR
// is not bound to ch.Binder.
func (a *Attester) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	kh, err := hashOf(ch.Hash, a.spki)
	if err != nil {
		return postauth.Evidence{}, err
	}
	if !equal(kh, ch.KeyHash) {
		return postauth.Evidence{}, errors.New("ear: the configured authenticator key is not the key being attested")
	}
	ev, err := a.inner.Attest(ctx, ch)
	if err != nil {
		return postauth.Evidence{}, err
	}
	keys, err := a.c.verifierKeys(ctx)
	if err != nil {
		return postauth.Evidence{}, err
	}
	var token []byte
	err = a.c.guard(ctx, func(ctx context.Context) error {
		var err error
		if token, err = a.c.appraise(ctx, ch.Binder, ev, a.spki); err != nil {
			return err
		}
		var nonce []byte
		if len(keys) > 0 {
			t, err := parseJWS(token)
			if err != nil {
				return answerErr("%v", err)
			}
			if err := t.verifyES256(keys); err != nil {
				return answerErr("%v", err)
			}
			c, err := decodeClaims(t.payload)
			if err != nil {
				return answerErr("%v", err)
			}
			nonce = c.nonce
		} else if nonce, err = unverifiedNonce(token); err != nil {
			return answerErr("%v", err)
		}
		if !equal(nonce, ch.Binder) {
			return answerErr("the EAR is not bound to the binder")
		}
		return nil
	})
	if err != nil {
		return postauth.Evidence{}, err
	}
	return postauth.Evidence{Type: MediaType, Value: token, Kind: postauth.KindAttestationResult}, nil
}

// unverifiedNonce decodes an EAR's eat_nonce without checking anything
// else (a sanity check; the relying party verifies).
func unverifiedNonce(token []byte) ([]byte, error) {
	t, err := parseJWS(token)
	if err != nil {
		return nil, err
	}
	c, err := decodeClaims(t.payload)
	if err != nil {
		return nil, err
	}
	return c.nonce, nil
}
