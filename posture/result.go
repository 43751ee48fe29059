package posture

import (
	"errors"
	"fmt"

	"github.com/reattest/reattest/postauth"
)

// ErrNoPosture means an attestation Result carries no posture: the Evidence
// had no posture claim.
var ErrNoPosture = errors.New("posture: the attestation result carries no posture")

// FromResult returns the posture covered by a verified attestation: it
// replays res's posture log and checks that the log reproduces the posture
// register value the Evidence covers ([Verify]). It returns [ErrNoPosture]
// if the Evidence carried no posture.
//
// It takes only a [postauth.Result], which only verification produces, so
// the State it returns always comes from Evidence that passed the
// authenticator, binding and Verifier checks. The Verifier has already
// replayed the log; FromResult does it again so that the State never rests
// on a verifier's word alone.
func FromResult(res *postauth.Result) (*State, error) {
	if res == nil {
		return nil, errors.New("posture: nil attestation result")
	}
	head, log := res.PostureHead(), res.PostureLog()
	switch {
	case len(head) == 0 && len(log) == 0:
		return nil, ErrNoPosture
	case len(head) == 0 || len(log) == 0:
		return nil, errors.New("posture: attestation result has a posture log without a register value, or the reverse")
	}
	st, err := Verify(log, head)
	if err != nil {
		return nil, fmt.Errorf("posture: replaying the attested log: %w", err)
	}
	return st, nil
}
