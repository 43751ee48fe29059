package transports

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// do sends req, answering one challenge.
func (c *conn) do(req *http.Request) (*http.Response, error) {
	t := c.t
	mayAttest := t.mayAttest(req) // mutation: attest allow-list
	hint := ""
	if mayAttest {
		hint = t.currentHint()
	}
	sentAt := t.cfg.now()
	rk := routeKey{req.URL.Host, req.Method, req.URL.Path}
	sentEpoch := c.epoch(rk)
	first := req.Clone(req.Context())
	if hint != "" {
		first.Header.Set(httpbind.HeaderPosture, hint)
	}
	proactive := ""
	if mayAttest {
		proactive = c.proactiveAttestation(first, hint)
	}
	resp, err := c.roundTrip(first)
	if err != nil {
		return nil, err
	}
	c.harvest(resp, proactive != "", hint, sentAt)
	if proactive != "" && resp.StatusCode != http.StatusUnauthorized {
		t.emitAttested(req, resp, proactive, "", true, sentAt)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}
	chal, ok := httpbind.ParseChallenge(resp.Header.Values("WWW-Authenticate"))
	encReq := resp.Header.Get(httpbind.HeaderAttestationRequest)
	if !ok || encReq == "" {
		return resp, nil // not ours, or nothing to answer: the caller sees the 401
	}
	t.emit(Activity{Kind: ActivityChallenged, Method: req.Method, URL: req.URL.String(), Mode: chal.Mode, Reason: chal.Error})
	if t.responder == nil {
		drain(resp)
		return nil, ErrNoAttester
	}
	if !mayAttest {
		return resp, nil // this server may not receive Evidence
	}
	t.learn(req, chal.Mode)
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		drain(resp)
		return nil, ErrBodyNotReplayable
	}
	drain(resp) // frees an HTTP/1.1 connection for the retry

	if chal.Mode == httpbind.ModeOperation {
		return c.answerAndRetry(req, encReq, hint, chal, sentAt)
	}
	// Share one attestation among concurrent challenged requests.
	ride, f, err := c.joinOrLead(req.Context(), encReq, rk, sentEpoch)
	if err != nil {
		return nil, err
	}
	if !ride {
		resp, err := c.answerAndRetry(req, encReq, hint, chal, sentAt)
		c.land(f, encReq, rk, resp, err)
		return resp, err
	}
	retry, err := c.retryRequest(req, hint, nil)
	if err != nil {
		return nil, err
	}
	resp, err = c.roundTrip(retry)
	if err != nil {
		return nil, err
	}
	c.harvest(resp, false, hint, sentAt)
	a := Activity{Kind: ActivityShared, Outcome: OutcomeAccepted, Method: req.Method, URL: req.URL.String(), Mode: chal.Mode, Status: resp.StatusCode}
	if refused(resp) {
		a.Outcome, a.Reason = OutcomeRefused, reasonOf(resp)
	}
	t.emit(a)
	return resp, nil
}

// answerAndRetry answers the encoded request and sends req again with it.
func (c *conn) answerAndRetry(req *http.Request, encReq string, hint string, chal httpbind.Challenge, sentAt time.Time) (*http.Response, error) {
	t := c.t
	start := t.cfg.now()
	fail := func(err error) (*http.Response, error) {
		t.emit(Activity{Kind: ActivityAttested, Outcome: OutcomeFailed, Method: req.Method, URL: req.URL.String(), Mode: chal.Mode, Err: err, Duration: t.cfg.now().Sub(start)})
		return nil, err
	}
	raw, params, err := httpbind.DecodeBytes(encReq, httpbind.MaxRequestHeader)
	if err != nil {
		return fail(fmt.Errorf("transports: bad Attestation-Request: %w", err))
	}
	template := slices.Contains(params, httpbind.ParamOp)
	var body []byte
	if template || chal.Mode == httpbind.ModeOperation {
		if body, err = readReplayable(req); err != nil {
			return fail(err)
		}
	}
	answer, err := c.answer(req, raw, template, body)
	if err != nil {
		return fail(err)
	}
	retry, err := c.retryRequest(req, hint, answer)
	if err != nil {
		return fail(err)
	}
	resp, err := c.roundTrip(retry)
	if err != nil {
		return fail(err)
	}
	c.harvest(resp, true, hint, sentAt)
	t.emitAttested(req, resp, chal.Mode, chal.Error, false, start)
	return resp, nil
}

// emitAttested reports an attested request and how the server took it.
func (t *Transport) emitAttested(req *http.Request, resp *http.Response, mode string, challenge postauth.Reason, proactive bool, start time.Time) {
	if t.cfg.observe == nil {
		return
	}
	a := Activity{Kind: ActivityAttested, Outcome: OutcomeAccepted, Method: req.Method, URL: req.URL.String(),
		Mode: mode, Reason: challenge, Status: resp.StatusCode, Proactive: proactive, Duration: t.cfg.now().Sub(start)}
	if refused(resp) {
		a.Outcome, a.Reason = OutcomeRefused, reasonOf(resp)
	}
	t.emit(a)
}

// refused reports whether the server refused an attested request: a
// status that only attestation gives (a new challenge, a denial, no
// verdict, early data).
func refused(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusServiceUnavailable, http.StatusTooEarly:
		return true
	}
	return false
}

// reasonOf is the reason of a refusal, from its problem body (which stays
// readable).
func reasonOf(resp *http.Response) postauth.Reason {
	if e, ok := ResponseError(resp).(*RefusalError); ok {
		return e.Reason
	}
	return ""
}

// answer makes an attested authenticator for an encoded request received
// on this connection. For an operation template, the context is completed
// with req's operation digest.
func (c *conn) answer(req *http.Request, raw []byte, template bool, body []byte) ([]byte, error) {
	if c.ch == nil {
		return nil, c.chErr
	}
	areq, err := postauth.ParseRequest(raw)
	if err != nil {
		return nil, fmt.Errorf("transports: bad Attestation-Request: %w", err)
	}
	if template {
		areq.Context = append(areq.Context, httpbind.OperationDigest(req.Method, authority(req), req.URL.RequestURI(), body)...)
	}
	out, err := c.t.responder.Respond(req.Context(), c.ch, postauth.RoleClient, areq)
	if err != nil {
		return nil, fmt.Errorf("transports: attesting: %w", err)
	}
	return out, nil
}

// retryRequest clones req with a fresh body and, if answer is set, the
// Attestation header.
func (c *conn) retryRequest(req *http.Request, hint string, answer []byte) (*http.Request, error) {
	r := req.Clone(req.Context())
	if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
		b, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("transports: replaying body: %w", err)
		}
		r.Body = b
	}
	if hint != "" {
		r.Header.Set(httpbind.HeaderPosture, hint)
	}
	if answer != nil {
		r.Header.Set(httpbind.HeaderAttestation, httpbind.EncodeBytes(answer))
	}
	return r, nil
}

// readReplayable returns the body of req without consuming req.Body.
func readReplayable(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	if req.GetBody == nil {
		return nil, ErrBodyNotReplayable
	}
	rc, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// drain reads a little of resp's body and closes it, so an HTTP/1.1
// connection can carry the next request.
func drain(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

// authority is the authority a request is sent with: the Host override, or
// the URL's host.
func authority(req *http.Request) string {
	if req.Host != "" {
		return req.Host
	}
	return req.URL.Host
}
