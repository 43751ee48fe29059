package ear

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/reattest/reattest/postauth"
)

// Bounds of what the client reads from a verifier.
const (
	maxSessionBody   = 256 << 10
	maxDiscoveryBody = 64 << 10
	maxErrorBody     = 4 << 10
	deleteTimeout    = 2 * time.Second
)

// Client-side sentinel causes.
var (
	// ErrVerifierUnavailable: the verifier could not be reached or
	// answered with an error status.
	ErrVerifierUnavailable = errors.New("ear: remote verifier unavailable")
	// ErrVerifierAnswer: the verifier's answer is unusable.
	ErrVerifierAnswer = errors.New("ear: unusable answer from the remote verifier")
	// errClientSide marks a 4xx answer: no verdict, but not a verifier
	// failure for the circuit breaker.
	errClientSide = errors.New("ear: the verifier refused the request")
)

// apiClient speaks the Veraison challenge-response API v1 to one verifier.
type apiClient struct {
	base       *url.URL
	newSession *url.URL
	wellKnown  *url.URL
	sessions   string // path prefix of session resources
	hc         *http.Client
	timeout    time.Duration
	poll       time.Duration
	sem        chan struct{}
	br         *breaker
	deletes    sync.WaitGroup
	deleteSem  chan struct{}

	keysMu       sync.Mutex // guards keys
	keys         []*ecdsa.PublicKey
	trustOnFirst bool
}

func newAPIClient(baseURL string, c *clientConfig) (*apiClient, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("ear: verifier base URL %q: want http(s)://host[:port][/prefix]", trunc(baseURL))
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	hc := c.httpClient
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	// Never follow redirects: a verifier that redirects is misconfigured,
	// and following would send Evidence wherever it points.
	hcCopy := *hc
	hcCopy.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &apiClient{
		base:         u,
		newSession:   u.JoinPath(NewSessionPath),
		wellKnown:    u.JoinPath(WellKnownPath),
		sessions:     u.Path + SessionPath,
		hc:           &hcCopy,
		timeout:      c.timeout,
		poll:         c.pollInterval,
		sem:          make(chan struct{}, c.maxInFlight),
		deleteSem:    make(chan struct{}, c.maxInFlight),
		br:           &breaker{threshold: c.breakerThreshold, cooldown: c.breakerCooldown, now: c.now},
		keys:         c.keys,
		trustOnFirst: c.trustOnFirst,
	}, nil
}

func unavailable(reason postauth.Reason, cause error) *postauth.Error {
	return postauth.NewError(postauth.CodeUnavailable, reason, cause)
}

func answerErr(format string, args ...any) *postauth.Error {
	return unavailable(postauth.ReasonVerifierError, fmt.Errorf("%w: %s", ErrVerifierAnswer, fmt.Sprintf(format, args...)))
}

// guard runs f under the circuit breaker, the in-flight limit and the
// timeout. A failure of the caller's own context is returned as is (a
// caller that hung up is no verifier failure); the timeout, and an answer
// that arrives after it, are verifier_timeout.
//
// postauth already bounds every Verifier and Attester call by the
// caller's context (a verdict after the caller's deadline is dropped
// there). The timeout here is the verifier's own, usually shorter than the
// caller's deadline, and it also drives the circuit breaker's accounting,
// so its late-answer check is not redundant: an HTTP client that ignores
// the context (a custom transport) could otherwise complete after it.
func (c *apiClient) guard(ctx context.Context, f func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ok, wait := c.br.allow()
	if !ok {
		e := unavailable(postauth.ReasonVerifierCircuitOpen, fmt.Errorf("%w: circuit breaker open", ErrVerifierUnavailable))
		e.RetryAfter = wait
		return e
	}
	select {
	case c.sem <- struct{}{}:
	default:
		c.br.cancel() // nothing was tried: count neither way
		e := unavailable(postauth.ReasonVerifierBusy, fmt.Errorf("%w: too many requests in flight", ErrVerifierUnavailable))
		e.RetryAfter = time.Second
		return e
	}
	defer func() { <-c.sem }()
	tctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := f(tctx)
	if err == nil && postauth.ContextErr(tctx) != nil { // mutation: background late answer
		err = postauth.ContextErr(tctx)
	}
	if err != nil && postauth.ContextErr(ctx) != nil {
		c.br.cancel() // the caller went away: not the verifier's fault
		return postauth.ContextErr(ctx)
	}
	if err != nil && postauth.ContextErr(tctx) != nil {
		err = unavailable(postauth.ReasonVerifierTimeout, fmt.Errorf("%w: no answer within %v", ErrVerifierUnavailable, c.timeout))
	}
	c.br.done(err == nil || errors.Is(err, errClientSide))
	return err
}

// verifierKeys returns the pinned EAR keys, fetching the key once from the
// well-known endpoint if trust on first fetch is on.
func (c *apiClient) verifierKeys(ctx context.Context) ([]*ecdsa.PublicKey, error) {
	c.keysMu.Lock()
	defer c.keysMu.Unlock()
	if len(c.keys) > 0 || !c.trustOnFirst {
		return c.keys, nil
	}
	var key *ecdsa.PublicKey
	err := c.guard(ctx, func(ctx context.Context) error {
		var err error
		key, err = c.discover(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.keys = []*ecdsa.PublicKey{key}
	return c.keys, nil
}

// discover fetches the EAR verification key from the well-known endpoint.
func (c *apiClient) discover(ctx context.Context) (*ecdsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.wellKnown.String(), http.NoBody)
	if err != nil {
		return nil, unavailable(postauth.ReasonVerifierUnavailable, err)
	}
	req.Header.Set("Accept", DiscoveryMediaType+", application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, unavailable(postauth.ReasonVerifierUnavailable, fmt.Errorf("%w: %v", ErrVerifierUnavailable, err))
	}
	defer res.Body.Close()
	if err := statusErr(res, http.StatusOK); err != nil {
		return nil, err
	}
	body, err := readBody(res, maxDiscoveryBody)
	if err != nil {
		return nil, err
	}
	fields, err := jsonObject(body)
	if err != nil {
		return nil, answerErr("discovery document: %v", err)
	}
	raw, ok := fields["ear-verification-key"]
	if !ok {
		return nil, answerErr("discovery document has no ear-verification-key")
	}
	key, err := ParseJWK(raw)
	if err != nil {
		return nil, answerErr("discovery key: %v", err)
	}
	return key, nil
}

// sessionBody is the challenge-response session resource.
type sessionBody struct {
	Status string   `json:"status"`
	Nonce  string   `json:"nonce"`
	Expiry string   `json:"expiry"`
	Accept []string `json:"accept"`
	Result *string  `json:"result"`
}

// appraise runs one challenge-response exchange: a session with nonce,
// the Evidence (with the authenticator key's SPKI if spki is not nil),
// polling while the verifier is processing, and returns the EAR. The
// session is deleted afterwards, in the background. It must run under
// guard.
func (c *apiClient) appraise(ctx context.Context, nonce []byte, ev postauth.Evidence, spki []byte) ([]byte, error) {
	sessionURL, err := c.openSession(ctx, nonce)
	if err != nil {
		return nil, err
	}
	defer c.deleteSession(sessionURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sessionURL, bytes.NewReader(ev.Value))
	if err != nil {
		return nil, unavailable(postauth.ReasonVerifierUnavailable, err)
	}
	req.Header.Set("Content-Type", ev.Type)
	req.Header.Set("Accept", SessionMediaType)
	if spki != nil {
		req.Header.Set(HeaderAuthenticatorKey, byteSequence(spki))
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, unavailable(postauth.ReasonVerifierUnavailable, fmt.Errorf("%w: %v", ErrVerifierUnavailable, err))
	}
	s, code, err := c.readSession(res, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return nil, err
	}
	for code == http.StatusAccepted || s.Status == StateProcessing {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(c.poll):
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, sessionURL, http.NoBody)
		if err != nil {
			return nil, unavailable(postauth.ReasonVerifierUnavailable, err)
		}
		req.Header.Set("Accept", SessionMediaType)
		res, err := c.hc.Do(req)
		if err != nil {
			return nil, unavailable(postauth.ReasonVerifierUnavailable, fmt.Errorf("%w: %v", ErrVerifierUnavailable, err))
		}
		if s, code, err = c.readSession(res, http.StatusOK); err != nil {
			return nil, err
		}
	}
	if err := checkNonce(s, nonce); err != nil {
		return nil, err
	}
	switch {
	case s.Status == StateFailed:
		return nil, unavailable(postauth.ReasonVerifierUnavailable, fmt.Errorf("%w: session failed", ErrVerifierUnavailable))
	case s.Status != StateComplete:
		return nil, answerErr("session status %q", trunc(s.Status))
	case s.Result == nil || len(*s.Result) == 0 || len(*s.Result) > MaxTokenLen:
		return nil, answerErr("no usable result in the complete session")
	}
	return []byte(*s.Result), nil
}

// openSession creates a session with nonce and returns its URL, which
// must be a session resource of the same verifier.
func (c *apiClient) openSession(ctx context.Context, nonce []byte) (string, error) {
	u := *c.newSession
	u.RawQuery = url.Values{"nonce": {base64.URLEncoding.EncodeToString(nonce)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), http.NoBody)
	if err != nil {
		return "", unavailable(postauth.ReasonVerifierUnavailable, err)
	}
	req.Header.Set("Accept", SessionMediaType)
	res, err := c.hc.Do(req)
	if err != nil {
		return "", unavailable(postauth.ReasonVerifierUnavailable, fmt.Errorf("%w: %v", ErrVerifierUnavailable, err))
	}
	loc := res.Header.Get("Location")
	s, _, err := c.readSession(res, http.StatusCreated)
	if err != nil {
		return "", err
	}
	if s.Status != StateWaiting {
		return "", answerErr("new session status %q", trunc(s.Status))
	}
	if err := checkNonce(s, nonce); err != nil {
		return "", err
	}
	return c.sessionURL(loc)
}

// sessionURL resolves a Location against the newSession URL and accepts
// only a session resource of the same verifier (same scheme, host and
// path prefix): a verifier cannot send the client, or the Evidence,
// elsewhere.
func (c *apiClient) sessionURL(loc string) (string, error) {
	if loc == "" || len(loc) > 2048 {
		return "", answerErr("no usable Location")
	}
	l, err := url.Parse(loc)
	if err != nil {
		return "", answerErr("bad Location")
	}
	u := c.newSession.ResolveReference(l)
	id, ok := strings.CutPrefix(u.Path, c.sessions)
	if u.Scheme != c.base.Scheme || u.Host != c.base.Host || !ok || id == "" || strings.Contains(id, "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil { // mutation: background session same origin
		return "", answerErr("Location outside the verifier's session resources")
	}
	return u.String(), nil
}

// deleteSession deletes a session in the background (best effort, bounded:
// at most as many pending deletes as in-flight requests).
func (c *apiClient) deleteSession(sessionURL string) {
	select {
	case c.deleteSem <- struct{}{}:
	default:
		return // the session will expire on its own
	}
	c.deletes.Add(1)
	go func() {
		defer c.deletes.Done()
		defer func() { <-c.deleteSem }()
		ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, sessionURL, http.NoBody)
		if err != nil {
			return
		}
		if res, err := c.hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxErrorBody))
			res.Body.Close()
		}
	}()
}

// close waits for the background deletes.
func (c *apiClient) close() { c.deletes.Wait() }

// readSession checks the status code and the media type and decodes a
// session resource.
func (c *apiClient) readSession(res *http.Response, want ...int) (*sessionBody, int, error) {
	defer res.Body.Close()
	if err := statusErr(res, want...); err != nil {
		return nil, 0, err
	}
	if mt, _, err := mime.ParseMediaType(res.Header.Get("Content-Type")); err != nil || mt != SessionMediaType {
		return nil, 0, answerErr("session media type %q", trunc(res.Header.Get("Content-Type")))
	}
	body, err := readBody(res, maxSessionBody)
	if err != nil {
		return nil, 0, err
	}
	s, err := decodeSession(body)
	if err != nil {
		return nil, 0, answerErr("session: %v", err)
	}
	return s, res.StatusCode, nil
}

// decodeSession decodes a session resource strictly enough: one JSON
// object, no duplicate members, the fields this client reads well typed.
func decodeSession(body []byte) (*sessionBody, error) {
	if _, err := jsonObject(body); err != nil {
		return nil, err
	}
	var s sessionBody
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// checkNonce compares the session's nonce with the one sent. Veraison has
// written it in standard and in URL-safe base64; both are accepted.
func checkNonce(s *sessionBody, nonce []byte) error {
	got, err := decodeAnyBase64(s.Nonce)
	if err != nil || !equal(got, nonce) { // mutation: background session nonce echo
		return answerErr("the session's nonce is not the one sent")
	}
	return nil
}

func decodeAnyBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// byteSequence encodes b as an RFC 9651 byte sequence (":base64:"), the
// form of the Reattest-Authenticator-Key header.
func byteSequence(b []byte) string {
	return ":" + base64.StdEncoding.EncodeToString(b) + ":"
}

// statusErr maps an unexpected status: 5xx is an unavailable verifier,
// 4xx a refusal (no verdict, but no verifier failure for the circuit
// breaker), anything else an unusable answer.
func statusErr(res *http.Response, want ...int) error {
	for _, w := range want {
		if res.StatusCode == w {
			return nil
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxErrorBody))
	switch {
	case res.StatusCode >= 500:
		return unavailable(postauth.ReasonVerifierUnavailable, fmt.Errorf("%w: status %d", ErrVerifierUnavailable, res.StatusCode))
	case res.StatusCode >= 400:
		return unavailable(postauth.ReasonVerifierError, fmt.Errorf("%w: status %d: %w", ErrVerifierAnswer, res.StatusCode, errClientSide))
	}
	return answerErr("unexpected status %d", res.StatusCode)
}

// readBody reads at most max bytes; more is an unusable answer.
func readBody(res *http.Response, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(res.Body, max+1))
	if err != nil {
		return nil, unavailable(postauth.ReasonVerifierUnavailable, fmt.Errorf("%w: reading the answer: %v", ErrVerifierUnavailable, err))
	}
	if int64(len(b)) > max {
		return nil, answerErr("answer larger than %d bytes", max)
	}
	return b, nil
}
