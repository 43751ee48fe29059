package middleware

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// exchange is one request to a high-impact route on its way through the
// Guard: what every step of the decision needs.
type exchange struct {
	g       *Guard
	w       http.ResponseWriter
	r       *http.Request
	rt      *route
	st      *connState // nil while unknown, and when the connection cannot carry attestation
	binding []byte     // operation mode: the operation digest
	// start and dur time the verification of an attestation, when one was
	// presented.
	start time.Time
	dur   time.Duration
	// att names the attester of the verified or cached Result, when a
	// coordinator or an observer needs it.
	att *Attester
}

// decide runs the checks of a first pass through the Guard.
func (x *exchange) decide(next http.Handler) {
	g, r, rt := x.g, x.r, x.rt
	if r.TLS != nil && !r.TLS.HandshakeComplete { // mutation: too early
		// TLS early data can be replayed; nothing high-impact runs on it.
		x.refuse(postauth.ErrorFor(postauth.ReasonEarlyData, nil))
		return
	}
	if !g.co.admits() { // mutation: coordinator down deny
		x.refuse(postauth.ErrorFor(postauth.ReasonCoordinatorUnavailable, nil))
		return
	}
	st, err := g.connState(r)
	if err != nil {
		x.refuse(err)
		return
	}
	x.st = st
	if rt.Mode == ModeOperation {
		body, err := readBody(r, rt.MaxBody)
		if err != nil {
			reason := postauth.ReasonBadBody
			if errors.Is(err, errBodyTooLarge) {
				reason = postauth.ReasonBodyTooLarge
			}
			x.refuse(postauth.ErrorFor(reason, err))
			return
		}
		x.binding = httpbind.OperationDigest(r.Method, r.Host, requestTarget(r), body) // mutation: operation authority
	}
	if hdr := headerValue(r.Header, HeaderAttestation); hdr != "" {
		x.verify(hdr, next)
		return
	}
	reason := postauth.ReasonAttestationRequired
	if rt.Mode == ModeConnection {
		st.mu.Lock()
		if c := st.lookup(rt); c != nil {
			switch {
			case !c.res.ValidAt(g.cfg.now(), rt.MaxAge): // mutation: max age
				reason = postauth.ReasonAttestationStale
				st.drop(rt)
			case !hintMatches(headerValue(r.Header, HeaderPosture), c): // mutation: posture hint
				reason = postauth.ReasonPostureChanged
				st.drop(rt)
			default:
				x.att = c.attester()
				if why := g.co.check(r.Context(), rt, c); why != "" {
					// Revoked, invalidated by a replica, or the coordinator
					// is out of sync (coordinate.go).
					reason = why
					st.drop(rt)
					break
				}
				res := c.res
				st.mu.Unlock()
				x.pass(res, OutcomeCacheHit, next)
				return
			}
		}
		st.mu.Unlock()
	}
	x.refuse(postauth.ErrorFor(reason, nil))
}

// reenter decides a request that an outer layer of the same Guard let
// through for route p.rt: the verdict is reused, checked against what this
// route adds.
func (x *exchange) reenter(p *pass, next http.Handler) {
	rt := x.rt
	if p.rt == rt {
		next.ServeHTTP(x.w, x.r)
		return
	}
	switch {
	case p.rt.rp != rt.rp:
		x.refuse(postauth.ErrorFor(postauth.ReasonMisconfigured, fmt.Errorf(
			"middleware: route %q is nested in route %q of the same Guard with other verification settings (Verifier, Protocol): remove one of them", rt.label(x.r), p.rt.label(x.r))))
		return
	case rt.Mode == ModeOperation && !p.bound:
		x.refuse(postauth.ErrorFor(postauth.ReasonMisconfigured, fmt.Errorf(
			"middleware: operation-mode route %q is nested in connection-mode route %q of the same Guard: make both operation mode, or remove one", rt.label(x.r), p.rt.label(x.r))))
		return
	case rt.Mode == ModeConnection && !p.res.ValidAt(x.g.cfg.now(), rt.MaxAge):
		// Too old for this route: a fresh attestation (verified by the
		// outer layer, which sees the Attestation header) will do.
		if st, err := x.g.connState(x.r); err == nil {
			x.st = st
		}
		x.refuse(postauth.ErrorFor(postauth.ReasonAttestationStale, nil))
		return
	}
	ctx, cancel := context.WithTimeout(x.r.Context(), x.g.cfg.verifyTimeout)
	defer cancel()
	if err := x.appraise(ctx, p.res); err != nil {
		x.refuse(err)
		return
	}
	outcome := OutcomeCacheHit
	if p.fresh {
		outcome = OutcomeVerified
	}
	x.pass(p.res, outcome, next)
}

// verify checks the Attestation header and runs next on success.
func (x *exchange) verify(hdr string, next http.Handler) {
	g, r, rt, st := x.g, x.r, x.rt, x.st
	raw, _, err := httpbind.DecodeBytes(hdr, httpbind.MaxAttestationHeader)
	if err != nil {
		x.refuse(postauth.ErrorFor(postauth.ReasonMalformedHeader, err))
		return
	}
	st.mu.Lock()
	reqr, err := st.requester(r, g.rp)
	if rt.Mode == ModeConnection {
		// The shared challenge may be the one being answered: stop handing
		// it out.
		st.dropSharedChallenge(rt)
	}
	st.mu.Unlock()
	if err != nil {
		x.refuse(err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.verifyTimeout)
	defer cancel()
	if g.limits != nil && !g.limits.allowVerify(ctx, r) { // mutation: verify rate limit
		x.refuse(postauth.ErrorFor(postauth.ReasonRateLimited, nil))
		return
	}
	born, policy := g.co.snapshot()
	x.start = time.Now()
	res, err := reqr.VerifyWith(ctx, rt.rp, raw, x.binding) // bounded by ctx
	if err == nil {
		err = x.appraise(ctx, res)
	}
	x.dur = time.Since(x.start)
	x.att = g.attesterOf(res)
	if err != nil {
		// Other replicas drop its verdicts.
		g.co.denied(x.att, err)
		if rt.Mode == ModeConnection && postauth.CodeOf(err) == postauth.CodePolicyDenied { // mutation: denial revokes verdict
			// The peer's current state is denied: its earlier verdict must
			// not serve this route any more. (A merely invalid answer, such
			// as a late duplicate, does not revoke a valid verdict.)
			st.mu.Lock()
			st.drop(rt)
			st.mu.Unlock()
		}
		x.refuse(err)
		return
	}
	g.co.verified(x.att) // other replicas drop verdicts of its other postures
	if rt.Mode == ModeConnection {
		hint := ""
		if h := res.PostureHead(); h != nil {
			hint = httpbind.EncodeBytes(h)
		}
		st.mu.Lock()
		st.store(rt, res, hint, g.newVerdict(x.att, born, policy))
		if st.reqr == reqr && st.challenges == nil && reqr.Pending() == 0 {
			// Nothing is pending: a cache hit needs only the Result. The
			// Requester (and its channel) is rebuilt from r.TLS at the next
			// challenge; it knows no old context, so a late replay is
			// refused as unknown. This keeps an idle attested connection at
			// about half a kilobyte.
			st.reqr = nil
		}
		st.mu.Unlock()
	}
	g.logAttested(r, rt, res)
	maxAge := time.Duration(0)
	if rt.Mode == ModeConnection {
		maxAge = rt.MaxAge
	}
	x.w.Header().Set(HeaderResult, httpbind.FormatResult(maxAge, res.PostureHead()))
	x.pass(res, OutcomeVerified, next)
}

// appraise admits a verified Result for the route: not revoked (a
// coordinator's table), then the route's posture policy and Appraise hook,
// then the shared policy document's policy. ctx carries the verify
// timeout: a verdict that comes after the deadline or after the client went
// away is not a pass, and the request is answered at the deadline whatever
// a hook does afterwards. A panic in a hook is an unavailable verdict,
// never a crash of the stream. (The Verifier itself is bounded the same way
// by postauth.)
func (x *exchange) appraise(ctx context.Context, res *postauth.Result) error {
	rt, co := x.rt, x.g.co
	if err := co.admit(res); err != nil {
		return err
	}
	if err := x.appraiseHooks(ctx, res); err != nil {
		return err
	}
	return co.appraiseShared(ctx, rt, res)
}

// appraiseHooks runs the route's posture policy and Appraise hook, bounded
// by ctx.
func (x *exchange) appraiseHooks(ctx context.Context, res *postauth.Result) error {
	rt := x.rt
	if rt.Posture == nil && rt.Appraise == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- postauth.NewError(postauth.CodeUnavailable, postauth.ReasonVerifierFailed, fmt.Errorf("middleware: appraisal panicked: %v", p))
			}
		}()
		done <- rt.appraise(ctx, res)
	}()
	select {
	case err := <-done:
		// Both may be ready at once, and select picks either: a pass whose
		// context has ended, or whose deadline has passed before its timer
		// fired, is dropped here too.
		if err == nil && postauth.ContextErr(ctx) != nil {
			return contextError(ctx)
		}
		return err
	case <-ctx.Done(): // mutation: appraisal deadline
		return contextError(ctx)
	}
}

// headerValue is h.Get(key) for a key already in canonical form (the
// package's header names, TestHeaderNamesAreCanonical): the map lookup
// without CanonicalMIMEHeaderKey's scan of the key, on every protected
// request.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// contextError is the error of a verification whose context ended.
func contextError(ctx context.Context) error {
	err := postauth.ContextErr(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return postauth.NewError(postauth.CodeUnavailable, postauth.ReasonVerifierTimeout, err)
	}
	return postauth.NewError(postauth.CodeCanceled, postauth.ReasonCanceled, err)
}

// pass runs next with res in the request context.
func (x *exchange) pass(res *postauth.Result, outcome Outcome, next http.Handler) {
	x.g.observe(x, outcome, 0, "", res.Format())
	if x.st != nil {
		x.preArm()
	}
	ctx := postauth.NewContext(x.r.Context(), res)
	if x.g.nested.Load() {
		ctx = context.WithValue(ctx, passKey{}, &pass{g: x.g, rt: x.rt, res: res,
			fresh: outcome == OutcomeVerified, bound: x.binding != nil && outcome == OutcomeVerified})
	}
	next.ServeHTTP(x.w, x.r.WithContext(ctx))
}

// issue returns an encoded Attestation-Request for the route on this
// connection. Connection-mode requests are shared by concurrent requests
// until answered or half expired; operation-mode requests are bound to the
// operation, or are a template when template is set.
func (x *exchange) issue(template bool) (string, error) {
	g, st, rt := x.g, x.st, x.rt
	now := g.cfg.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	reqr, err := st.requester(x.r, g.rp)
	if err != nil {
		return "", err
	}
	if rt.Mode == ModeConnection && !template {
		if enc := st.sharedChallenge(rt, now); enc != "" {
			return enc, nil
		}
	}
	var req *postauth.Request
	switch {
	case template:
		req, err = reqr.NewTemplate()
	case rt.Mode == ModeOperation:
		req, err = reqr.NewRequest(x.binding)
	default:
		req, err = reqr.NewRequest(nil)
	}
	if err != nil {
		return "", err
	}
	b, err := req.Marshal()
	if err != nil {
		return "", err
	}
	if template {
		return httpbind.EncodeBytes(b, httpbind.ParamOp), nil
	}
	enc := httpbind.EncodeBytes(b)
	if rt.Mode == ModeConnection {
		st.setSharedChallenge(rt, enc, now.Add(g.rp.ContextTTL()/2))
	}
	return enc, nil
}

// preArm adds a fresh Attestation-Request to the response if the route
// asks for it.
func (x *exchange) preArm() {
	if !x.rt.PreArm {
		return
	}
	if enc, err := x.issue(x.rt.Mode == ModeOperation); err == nil {
		x.w.Header().Set(HeaderAttestationRequest, enc)
	}
}

var errBodyTooLarge = errors.New("middleware: request body too large")

// readBody reads the whole body (at most max bytes) and puts it back for
// the handler.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > max { // mutation: body content length
		return nil, errBodyTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > max { // mutation: body read length
		return nil, errBodyTooLarge
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// requestTarget is the request-target as the client sent it, in origin
// form (httpbind.OriginForm).
func requestTarget(r *http.Request) string {
	if r.RequestURI != "" {
		return httpbind.OriginForm(r.RequestURI)
	}
	return r.URL.RequestURI()
}

// hintMatches reports whether the client's posture hint agrees with the
// cached result. No hint means no news (max-age governs); a hint for a
// result without posture, or a different head, means the posture changed.
func hintMatches(hint string, c *cachedResult) bool {
	if hint == "" || hint == c.hint {
		return true
	}
	if c.hint == "" {
		return false
	}
	b, _, err := httpbind.DecodeBytes(hint, httpbind.MaxPostureHeader)
	return err == nil && bytes.Equal(b, c.res.PostureHead())
}
