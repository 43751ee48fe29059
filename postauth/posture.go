package postauth

import (
	"context"
	"errors"

	"github.com/reattest/reattest/posture"
)

// ErrPostureDenied is the cause (see [errors.Is]) of the error
// [AppraisePosture] returns when a posture violates the policy.
var ErrPostureDenied = errors.New("postauth: posture denied by policy")

// AppraisePosture checks the posture of a verified attestation against the
// posture policy p ([posture.Policy]). It returns nil if the posture
// passes, and otherwise an *Error:
//
//   - CodePolicyDenied, [ReasonPostureDenied], with every violation in
//     Violations ([posture.Violation.String]) and [ErrPostureDenied] as
//     cause. A Result without posture is judged as "no posture": a policy
//     with rules (or RequirePosture) denies it with the violation
//     "posture missing";
//   - CodeRequired, [ReasonNoAttestation], for a nil Result;
//   - CodeUnavailable, [ReasonPolicyInvalid], if p is nil or malformed
//     ([posture.Policy.Validate]): a broken policy never lets a request
//     through.
//
// A cancelled ctx returns its error. The posture it checks is the one the
// relying party replayed at verification ([Result.Posture]); no Evidence is
// parsed again.
func AppraisePosture(ctx context.Context, p *posture.Policy, res *Result) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p == nil {
		return NewError(CodeUnavailable, ReasonPolicyInvalid, errors.New("postauth: nil posture policy"))
	}
	if res == nil {
		return NewError(CodeRequired, ReasonNoAttestation, errors.New("postauth: no attestation result"))
	}
	vs, err := p.Evaluate(res.posture)
	if err != nil {
		return NewError(CodeUnavailable, ReasonPolicyInvalid, err)
	}
	if len(vs) == 0 {
		return nil
	}
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.String()
	}
	return &Error{Code: CodePolicyDenied, Reason: ReasonPostureDenied, Violations: names, Err: ErrPostureDenied}
}
