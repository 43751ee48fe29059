package httpbind

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/reattest/reattest/postauth"
)

// TestDocsListEveryReason: docs/protocol.md section 7 lists every reason
// with the code, status, challenge, problem type and outcome of the code's
// tables, and nothing else.
func TestDocsListEveryReason(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	start, end := strings.Index(s, "\n## 7. "), strings.Index(s, "\n## 8. ")
	if start < 0 || end < start {
		t.Fatal("docs/protocol.md: section 7 not found")
	}
	seen := map[postauth.Reason]bool{}
	for _, line := range strings.Split(s[start:end], "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 7 || !strings.HasPrefix(cells[0], "`") {
			continue
		}
		r := postauth.Reason(strings.Trim(cells[0], "`"))
		seen[r] = true
		if !r.Known() {
			t.Errorf("docs list %q, which postauth does not define", r)
			continue
		}
		a, ok := AnswerFor(r)
		if !ok {
			t.Errorf("%s: no row in the decision table", r)
			continue
		}
		challenge := "-"
		if a.Challenge != "" {
			challenge = "`" + string(a.Challenge) + "`"
			if !a.NewRequest {
				challenge += " (no request)"
			}
		}
		want := []string{r.Code().String(), strconv.Itoa(a.Status), challenge, "`" + a.Problem + "`", string(a.Outcome)}
		for i, w := range want {
			if cells[i+1] != w {
				t.Errorf("%s: docs say %q, the code says %q", r, cells[i+1], w)
			}
		}
	}
	for _, r := range postauth.Reasons() {
		if !seen[r] {
			t.Errorf("docs/protocol.md section 7 does not list %q", r)
		}
		if _, ok := AnswerFor(r); !ok {
			t.Errorf("%s: no row in the decision table", r)
		}
	}
}

// A reason with a stronger code than its own (an appraisal hook that
// reports a listed reason as unavailable) is answered by the code: never
// more leniently.
func TestDecideCodeWins(t *testing.T) {
	for _, tc := range []struct {
		code   postauth.Code
		reason postauth.Reason
		status int
	}{
		{postauth.CodeInvalid, postauth.ReasonBinderMismatch, 401},
		{postauth.CodeUnavailable, postauth.ReasonBinderMismatch, 503},
		{postauth.CodePolicyDenied, "my_format_denied", 403},
		{postauth.CodeUnknown, "", 401},
		{postauth.CodeCanceled, postauth.ReasonConnectionClosed, 503},
	} {
		if got := Decide(tc.code, tc.reason).Status; got != tc.status {
			t.Errorf("Decide(%v, %q) = %d, want %d", tc.code, tc.reason, got, tc.status)
		}
	}
}
