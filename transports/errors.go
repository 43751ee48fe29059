package transports

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// Errors.
var (
	// ErrBodyNotReplayable: the server demanded attestation and the request
	// body cannot be sent again (no GetBody). The request was sent once and
	// not retried.
	ErrBodyNotReplayable = errors.New("transports: attestation challenge, but the request body cannot be replayed (set Request.GetBody)")
	// ErrNoAttester: the server demanded attestation and no attester is
	// configured.
	ErrNoAttester = errors.New("transports: attestation challenge, but no attester is configured")
	// ErrServerNotAttested: the server could not be attested; the request
	// was not sent.
	ErrServerNotAttested = errors.New("transports: server attestation failed; request not sent")
	// ErrClosed: the Transport is closed.
	ErrClosed = errors.New("transports: transport closed")
	// ErrNotConfigured: the Transport was not made by NewTransport.
	ErrNotConfigured = errors.New("transports: use NewTransport to create a Transport")
)

// RefusalError is a refusal of a high-impact request by a reattest server,
// decoded from its application/problem+json body (docs/protocol.md,
// section 5.2). Get one with [ResponseError]. Its Unwrap gives a
// *postauth.Error, so [postauth.CodeOf] and [postauth.ReasonOf] work on it.
type RefusalError struct {
	// Status is the HTTP status (401, 403, 425, 503...).
	Status int
	// Reason is the server's reason (postauth reason tokens).
	Reason postauth.Reason
	// Violations names the failed posture items of a policy denial.
	Violations []string
	// ProblemType and Title are the problem's type URI and title.
	ProblemType string
	Title       string
}

func (e *RefusalError) Error() string {
	return httpbind.RefusalMessage("transports: server refused the request", e.Status, e.Reason, e.Violations)
}

// Unwrap returns the refusal as a *postauth.Error with the reason's code
// (or, for a reason this version does not know, the status's).
func (e *RefusalError) Unwrap() error {
	return httpbind.RefusalError(e.Status, e.Reason, e.Violations)
}

// maxProblemBody bounds the problem body ResponseError reads.
const maxProblemBody = 64 << 10

// ResponseError returns the refusal resp carries, as a *RefusalError, if
// resp is a reattest refusal (a 4xx or 5xx response with a problem+json
// body whose type is a reattest problem type, or, from a JSON-RPC gateway
// such as package middleware/mcpattest, an application/json JSON-RPC error
// response, or batch of them, whose error data has such a type), and nil
// otherwise. A RoundTripper must return responses whatever their status,
// so the Transport hands refusals to the application as responses; this
// decodes them. It reads at most 64 KiB of the body and puts back what it
// read, so resp stays readable.
func ResponseError(resp *http.Response) error {
	if resp == nil || resp.StatusCode < 400 || resp.Body == nil {
		return nil
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || (mt != "application/problem+json" && mt != "application/json") {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxProblemBody))
	resp.Body = readCloser{io.MultiReader(bytes.NewReader(data), resp.Body), resp.Body}
	if err != nil {
		return nil
	}
	var p problem
	if mt == "application/json" {
		p, err = jsonRPCProblem(data)
	} else {
		err = json.Unmarshal(data, &p)
	}
	if err != nil || !strings.HasPrefix(p.Type, httpbind.ProblemTypePrefix) {
		return nil
	}
	return &RefusalError{Status: resp.StatusCode, Reason: p.Reason, Violations: p.Violations, ProblemType: p.Type, Title: p.Title}
}

// problem is what a refusal's body says.
type problem struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Reason     postauth.Reason `json:"reason"`
	Violations []string        `json:"violations"`
}

// jsonRPCProblem reads the problem of a JSON-RPC error response (the first
// of a batch): the error's data, with the error's message as the title.
func jsonRPCProblem(data []byte) (problem, error) {
	type rpcError struct {
		Error struct {
			Message string  `json:"message"`
			Data    problem `json:"data"`
		} `json:"error"`
	}
	var one rpcError
	if b := bytes.TrimSpace(data); len(b) > 0 && b[0] == '[' {
		var batch []rpcError
		if err := json.Unmarshal(b, &batch); err != nil || len(batch) == 0 {
			return problem{}, errors.New("not a JSON-RPC error batch")
		}
		one = batch[0]
	} else if err := json.Unmarshal(data, &one); err != nil {
		return problem{}, err
	}
	p := one.Error.Data
	p.Title = one.Error.Message
	return p, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
