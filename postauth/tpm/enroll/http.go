package enroll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/reattest/reattest/postauth/tpm"
)

// maxBody bounds request and response bodies of the HTTP binding.
const maxBody = 64 << 10

// Paths of the HTTP binding, relative to the CA's base URL.
const (
	PathChallenge = "/challenge"
	PathIssue     = "/issue"
)

// issueResponse is the body of a successful issue: the AK certificate
// chain, DER, base64 in JSON.
type issueResponse struct {
	Chain [][]byte `json:"chain"`
}

// errorResponse is the body of a refusal: a short reason, never the
// cause.
type errorResponse struct {
	Error string `json:"error"`
}

// Handler serves the CA over HTTP: POST /challenge with a JSON
// [tpm.EnrollmentRequest] answers a JSON [tpm.EnrollmentChallenge]; POST
// /issue with a JSON [tpm.EnrollmentProof] answers {"chain": [DER, ...]}.
// Bodies are at most 64 KiB. Refusals are 400 (malformed) or 403 (an
// untrusted EK, an unacceptable AK, a failed activation, a machine not
// allowed), with a JSON {"error": reason}. Mount it under a prefix with
// http.StripPrefix. Serve it over TLS: the CA's answers are not secret, but
// its clients should know which CA they enroll with.
func (ca *CA) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathChallenge, func(w http.ResponseWriter, r *http.Request) {
		var req tpm.EnrollmentRequest
		if !readJSON(w, r, &req) {
			return
		}
		ch, err := ca.Challenge(r.Context(), &req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, ch)
	})
	mux.HandleFunc("POST "+PathIssue, func(w http.ResponseWriter, r *http.Request) {
		var proof tpm.EnrollmentProof
		if !readJSON(w, r, &proof) {
			return
		}
		chain, err := ca.Issue(r.Context(), &proof)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, issueResponse{Chain: chain})
	})
	return mux
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		writeError(w, ErrBadRequest)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// refusals maps each CA error to its status and wire reason.
var refusals = []struct {
	err    error
	status int
	reason string
}{
	{ErrBadRequest, http.StatusBadRequest, "bad_request"},
	{ErrUntrustedEK, http.StatusForbidden, "untrusted_ek"},
	{ErrBadAK, http.StatusForbidden, "bad_ak"},
	{ErrActivation, http.StatusForbidden, "activation_failed"},
	{ErrMachineNotAllowed, http.StatusForbidden, "machine_not_allowed"},
}

func writeError(w http.ResponseWriter, err error) {
	status, reason := http.StatusInternalServerError, "internal"
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			status, reason = r.status, r.reason
			break
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorResponse{Error: reason})
}

// Client is a [tpm.Enroller] that talks to a CA's [CA.Handler] over HTTP.
type Client struct {
	base string
	hc   *http.Client
}

var _ tpm.Enroller = (*Client)(nil)

// NewClient returns a Client for the CA served at baseURL (the URL its
// Handler is mounted at, https in production). A nil hc means
// http.DefaultClient.
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("enroll: bad CA URL %q", baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: hc}, nil
}

// Challenge implements [tpm.Enroller].
func (c *Client) Challenge(ctx context.Context, req *tpm.EnrollmentRequest) (*tpm.EnrollmentChallenge, error) {
	var ch tpm.EnrollmentChallenge
	if err := c.post(ctx, PathChallenge, req, &ch); err != nil {
		return nil, err
	}
	return &ch, nil
}

// Issue implements [tpm.Enroller].
func (c *Client) Issue(ctx context.Context, proof *tpm.EnrollmentProof) ([][]byte, error) {
	var rsp issueResponse
	if err := c.post(ctx, PathIssue, proof, &rsp); err != nil {
		return nil, err
	}
	return rsp.Chain, nil
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	if len(b) > maxBody {
		return errors.New("enroll: CA answer too large")
	}
	if resp.StatusCode != http.StatusOK {
		var e errorResponse
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("enroll: the CA refused (%d %s)", resp.StatusCode, e.Error)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("enroll: CA answer: %w", err)
	}
	return nil
}
