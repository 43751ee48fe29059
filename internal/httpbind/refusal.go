package httpbind

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/reattest/reattest/postauth"
)

// RefusalMessage is the text of a refusal as a client reports it: who
// refused, the status, the reason and the posture violations.
func RefusalMessage(prefix string, status int, reason postauth.Reason, violations []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d", prefix, status)
	if reason != "" {
		fmt.Fprintf(&b, " (%s)", reason)
	}
	if len(violations) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(violations, "; "))
	}
	return b.String()
}

// RefusalError is a refusal a client received as a *postauth.Error: the
// reason's code, or for a reason this version does not know, the code its
// status implies (403 a denial, 500 and 503 no verdict, anything else
// invalid).
func RefusalError(status int, reason postauth.Reason, violations []string) *postauth.Error {
	code := reason.Code()
	if code == postauth.CodeUnknown {
		switch status {
		case http.StatusForbidden:
			code = postauth.CodePolicyDenied
		case http.StatusServiceUnavailable, http.StatusInternalServerError:
			code = postauth.CodeUnavailable
		default:
			code = postauth.CodeInvalid
		}
	}
	return &postauth.Error{Code: code, Reason: reason, Violations: violations}
}
