package middleware

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// Problem is the application/problem+json body (RFC 9457) of a refused
// request. Reason and Violations are wire-safe: they name checks and posture
// items, never Evidence or internal errors.
type Problem struct {
	// Type is the problem type URI (see [ProblemType]).
	Type string `json:"type"`
	// Title is a short human-readable summary.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Reason is the machine-readable reason (docs/protocol.md, section 7).
	Reason postauth.Reason `json:"reason,omitempty"`
	// Violations lists the failed posture items of a policy denial.
	Violations []string `json:"violations,omitempty"`
}

// ProblemType returns the problem type URI for slug (for example
// "policy-denied"), as used in [Problem.Type].
func ProblemType(slug string) string { return httpbind.ProblemTypePrefix + slug }

// refuse answers a request that attestation stopped, as the decision table
// says for err's code and reason (internal/httpbind): status, challenge
// (with a fresh Attestation-Request when the connection can carry one),
// Retry-After, problem body, log level and observer outcome.
func (x *exchange) refuse(err error) {
	var pe *postauth.Error
	if !errors.As(err, &pe) || pe == nil {
		pe = &postauth.Error{Code: postauth.CodeOf(err), Err: err}
	}
	ans := httpbind.Decide(pe.Code, pe.Reason)
	h := x.w.Header()
	if ans.Challenge != "" {
		ch := httpbind.Challenge{Error: ans.Challenge}
		if ans.NewRequest && x.st != nil {
			enc, ierr := x.issue(false)
			if ierr == nil {
				h.Set(HeaderAttestationRequest, enc)
				ch.Mode = x.rt.Mode.String()
				if x.rt.Mode == ModeConnection {
					ch.MaxAge = int(x.rt.MaxAge / time.Second)
				}
			} else {
				// No request can be issued on this connection: answer as
				// for a connection that cannot carry attestation.
				pe = &postauth.Error{Code: postauth.CodeOf(ierr), Reason: postauth.ReasonOf(ierr), Err: errors.Join(err, ierr)}
				ans = httpbind.Decide(pe.Code, pe.Reason)
				ch = httpbind.Challenge{Error: ans.Challenge}
			}
		}
		if ch.Error != "" {
			h.Set("WWW-Authenticate", ch.Format())
		}
	}
	if ans.Status == http.StatusServiceUnavailable || ans.Status == http.StatusTooManyRequests {
		h.Set("Retry-After", strconv.Itoa(int((x.g.cfg.retryAfter+time.Second-1)/time.Second)))
	}
	x.g.logRefusal(x, ans, pe)
	x.g.observe(x, ans.Outcome, ans.Status, pe.Reason, "")
	if x.rt.ErrorHandler != nil {
		x.rt.ErrorHandler(x.w, x.r, ans.Status, pe)
		return
	}
	if x.g.cfg.errorHandler != nil {
		x.g.cfg.errorHandler(x.w, x.r, ans.Status, pe)
		return
	}
	writeProblem(x.w, Problem{
		Type: ProblemType(ans.Problem), Title: ans.Title, Status: ans.Status,
		Reason: pe.Reason, Violations: pe.Violations,
	})
}

func writeProblem(w http.ResponseWriter, p Problem) {
	body, _ := json.Marshal(p)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(p.Status)
	w.Write(body)
}

func (g *Guard) logRefusal(x *exchange, ans httpbind.Answer, pe *postauth.Error) {
	if g.cfg.log == nil {
		return
	}
	level := ans.Level
	if x.r.Context().Err() != nil && level < slog.LevelError {
		level = slog.LevelDebug // the client hung up: not an attack
	}
	if !g.cfg.log.Enabled(x.r.Context(), level) {
		return
	}
	msg := "reattest: request refused"
	if ans.Outcome == OutcomeChallenged {
		msg = "reattest: challenge"
	}
	attrs := []slog.Attr{
		slog.String("route", x.rt.label(x.r)), slog.Int("status", ans.Status),
		slog.String("code", pe.Code.String()), slog.String("remote", x.r.RemoteAddr),
	}
	if pe.Reason != "" {
		attrs = append(attrs, slog.String("reason", string(pe.Reason)))
	}
	if len(pe.Violations) > 0 {
		attrs = append(attrs, slog.Any("violations", pe.Violations))
	}
	if pe.Err != nil {
		// Internal causes go to the log only (never on the wire); they
		// name checks, not Evidence.
		attrs = append(attrs, slog.String("cause", pe.Err.Error()))
	}
	g.cfg.log.LogAttrs(x.r.Context(), level, msg, attrs...)
}

func (g *Guard) logAttested(r *http.Request, rt *route, res *postauth.Result) {
	if g.cfg.log == nil {
		return
	}
	g.cfg.log.LogAttrs(r.Context(), slog.LevelInfo, "reattest: attested",
		slog.String("route", rt.label(r)), slog.String("mode", rt.Mode.String()),
		slog.String("format", res.Format()), slog.String("subject", res.Subject()),
		slog.String("remote", r.RemoteAddr))
}
