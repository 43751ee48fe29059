package httpbind_test

import (
	"testing"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// A client maps a refusal to the reason's code, and a reason it does not
// know to the code its status implies: never to a pass, never more lenient
// than the status says.
func TestRefusalError(t *testing.T) {
	for _, tc := range []struct {
		status int
		reason postauth.Reason
		want   postauth.Code
	}{
		{403, postauth.ReasonPostureDenied, postauth.CodePolicyDenied},
		{401, postauth.ReasonAttestationStale, postauth.CodeStale},
		{403, "a_future_reason", postauth.CodePolicyDenied},
		{503, "a_future_reason", postauth.CodeUnavailable},
		{500, "a_future_reason", postauth.CodeUnavailable},
		{401, "a_future_reason", postauth.CodeInvalid},
		{429, "", postauth.CodeInvalid},
	} {
		err := httpbind.RefusalError(tc.status, tc.reason, []string{"tool:shell forbidden"})
		if err.Code != tc.want || err.Reason != tc.reason || len(err.Violations) != 1 {
			t.Errorf("%d %q: got %+v, want code %v", tc.status, tc.reason, err, tc.want)
		}
	}
	got := httpbind.RefusalMessage("x: refused", 403, postauth.ReasonPostureDenied, []string{"tool:shell forbidden", "flag:fips_mode want \"on\" got \"off\""})
	if want := `x: refused: 403 (posture_denied): tool:shell forbidden; flag:fips_mode want "on" got "off"`; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}
