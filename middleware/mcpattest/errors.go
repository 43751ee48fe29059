package mcpattest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// JSON-RPC error codes of a refused MCP request (implementation-defined
// server errors, JSON-RPC 2.0 section 5.1), one per kind of HTTP answer of
// the decision table (docs/protocol.md, section 7). The error's data is an
// [ErrorData] naming the reason and the posture violations.
const (
	// CodeAttestationRequired (HTTP 401): attestation is missing, stale or
	// failed a check. The 401 carries a challenge, which a reattest
	// transport answers itself: an MCP client sees this code only when its
	// transport cannot attest, or when the attested retry failed.
	CodeAttestationRequired int64 = -32050
	// CodeAttestationDenied (HTTP 403): the attestation was valid and the
	// policy denied it; ErrorData.Violations names the failed posture
	// items.
	CodeAttestationDenied int64 = -32051
	// CodeAttestationUnavailable (HTTP 503, with Retry-After): no verdict
	// could be reached now (verifier down or slow). MCP SDK v1.8.0 clients
	// do not read the body of a 503 and report "Service Unavailable".
	CodeAttestationUnavailable int64 = -32052
	// CodeNotAttestable (HTTP 400, 413, 425): the request cannot be
	// attested as sent: a body without a single JSON-RPC reading, a target
	// that cannot be read, a body over the limit, TLS early data.
	CodeNotAttestable int64 = -32053
	// CodeMisconfigured (HTTP 500): the gateway's configuration cannot
	// decide the request.
	CodeMisconfigured int64 = -32054
)

// CodeFor returns the JSON-RPC error code of a refusal with HTTP status.
func CodeFor(status int) int64 {
	switch status {
	case http.StatusUnauthorized:
		return CodeAttestationRequired
	case http.StatusForbidden:
		return CodeAttestationDenied
	case http.StatusServiceUnavailable:
		return CodeAttestationUnavailable
	case http.StatusInternalServerError:
		return CodeMisconfigured
	}
	return CodeNotAttestable
}

// ErrorData is the data of the JSON-RPC error of a refusal. Like the
// problem body of the HTTP binding it names checks and posture items,
// never Evidence or internal errors.
type ErrorData struct {
	// Type is the problem type URI of the HTTP binding
	// ("tag:github.com,2026:reattest/problem/policy-denied"); its prefix
	// marks a reattest refusal.
	Type string `json:"type"`
	// Status is the HTTP status of the refusal.
	Status int `json:"status"`
	// Reason is the reason token (docs/protocol.md, section 7).
	Reason postauth.Reason `json:"reason,omitempty"`
	// Violations lists the failed posture items of a policy denial, for
	// example "tool:mcp:workstation/shell.exec not allowed".
	Violations []string `json:"violations,omitempty"`
	// Rule names the rule that refused the request ("mcp tools/call
	// payments.*"); empty when the body could not be classified.
	Rule string `json:"rule,omitempty"`
}

// response is a JSON-RPC error response.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   wireError       `json:"error"`
}

type wireError struct {
	Code    int64     `json:"code"`
	Message string    `json:"message"`
	Data    ErrorData `json:"data"`
}

// refusalBody is the JSON-RPC answer to a refused body: one error response
// for each call (request with an id) of the body, in an array if the body
// was a batch; a body without calls (notifications only) gets one error
// response with id null.
func refusalBody(ans httpbind.Answer, status int, pe *postauth.Error, ids []json.RawMessage, batch bool, rule string) []byte {
	e := wireError{
		Code:    CodeFor(status),
		Message: errorMessage(ans.Title, pe),
		Data: ErrorData{Type: httpbind.ProblemTypePrefix + ans.Problem, Status: status,
			Reason: pe.Reason, Violations: pe.Violations, Rule: rule},
	}
	if len(ids) == 0 {
		ids = []json.RawMessage{json.RawMessage("null")}
		batch = false
	}
	out := make([]response, len(ids))
	for i, id := range ids {
		out[i] = response{JSONRPC: "2.0", ID: id, Error: e}
	}
	var b []byte
	if batch {
		b, _ = json.Marshal(out) // ids are valid JSON (the body was): cannot fail
	} else {
		b, _ = json.Marshal(out[0])
	}
	return b
}

// errorMessage is the error message: the problem title, the reason and the
// violations.
func errorMessage(title string, pe *postauth.Error) string {
	var b strings.Builder
	b.WriteString(title)
	if pe.Reason != "" {
		fmt.Fprintf(&b, " (%s)", pe.Reason)
	}
	if len(pe.Violations) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(pe.Violations, "; "))
	}
	return b.String()
}

// writeRefusal answers a refused request with status (0: the decision
// table's for err; the headers already set stay: challenge, Retry-After)
// and its JSON-RPC errors.
func writeRefusal(w http.ResponseWriter, status int, err error, c *classification, rule string) {
	var pe *postauth.Error
	if !errors.As(err, &pe) || pe == nil {
		pe = &postauth.Error{Code: postauth.CodeOf(err), Err: err}
	}
	ans := httpbind.Decide(pe.Code, pe.Reason)
	if status == 0 {
		status = ans.Status
	}
	var ids []json.RawMessage
	batch := false
	if c != nil {
		ids, batch = c.ids, c.batch
	}
	body := refusalBody(ans, status, pe, ids, batch, rule)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// Refusal is a gateway's refusal of an MCP request, as the agent's MCP
// client receives it: a JSON-RPC error with a reattest [ErrorData]. Get one
// from the error of a call with [RefusalOf]. Its Unwrap gives a
// *postauth.Error, so [postauth.CodeOf] and [postauth.ReasonOf] work on it.
type Refusal struct {
	// Code and Message are the JSON-RPC error's.
	Code    int64
	Message string
	ErrorData
}

func (e *Refusal) Error() string {
	return httpbind.RefusalMessage("mcpattest: the gateway refused the request", e.Status, e.Reason, e.Violations)
}

// Unwrap returns the refusal as a *postauth.Error with the reason's code
// (or, for a reason this version does not know, the status's).
func (e *Refusal) Unwrap() error {
	return httpbind.RefusalError(e.Status, e.Reason, e.Violations)
}

// RefusalOf returns the reattest refusal that err (the error of an MCP
// client call, such as ClientSession.CallTool's) carries, if any: a
// JSON-RPC error whose data is a reattest [ErrorData].
func RefusalOf(err error) (*Refusal, bool) {
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || len(werr.Data) == 0 {
		return nil, false
	}
	var d ErrorData
	if json.Unmarshal(werr.Data, &d) != nil || !strings.HasPrefix(d.Type, httpbind.ProblemTypePrefix) {
		return nil, false
	}
	return &Refusal{Code: werr.Code, Message: werr.Message, ErrorData: d}, true
}
