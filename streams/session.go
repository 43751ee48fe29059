package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/postauth"
)

// FrameWriter sends one frame on a connection's control channel. Calls may
// come from several goroutines; the binding serializes them.
type FrameWriter interface {
	WriteFrame(t FrameType, payload []byte) error
}

// errNotRequired is returned by Reattest on an endpoint that requires no
// attestation of its peer.
var errNotRequired = errors.New("streams: this endpoint requires no attestation of its peer (WithRelyingParty)")

// Session is the attestation state machine of one attested connection
// (docs/protocol.md section 10): it asks the peer for attestations (at the
// start, periodically, on a posture announcement, on demand), enforces the
// answer deadline, verifies and appraises the answers, answers the peer's
// requests, and tells the binding when application data may be delivered
// and sent. Any failure ends the session and, through the binding, the
// connection, with an error code.
//
// Applications use a binding ([Conn] in this package, quicstream.Conn over
// QUIC), which makes the Session. A binding for another transport makes
// one with [NewSession], feeds it every control frame the peer sends
// ([Session.HandleFrame]), gates application data on [Session.CanDeliver]
// and [Session.CanSend], and tears the transport down when the Session
// calls its abort function. A Session is safe for concurrent use.
type Session struct {
	role  postauth.Role
	ch    *postauth.Channel
	cfg   config
	w     FrameWriter
	abort func(error)
	reqr  *postauth.Requester // nil: the peer's attestation is not required

	ctx    context.Context // ends with the session
	cancel context.CancelFunc
	done   chan struct{}

	requests   chan *postauth.Request // the peer's requests, for the control goroutine
	postureSig chan struct{}          // our posture changed

	sendOK    atomic.Bool // application data may be sent
	deliverOK atomic.Bool // application data may be delivered

	mu          sync.Mutex    // guards every field below
	changed     chan struct{} // closed and replaced at every change of state
	started     bool
	verified    bool // a first verdict passed
	suspended   bool // the peer announced a posture change not yet attested
	peerReady   bool // the peer sent FrameReady
	drain       bool // closed in order by the peer while delivery was allowed
	closed      error
	result      *postauth.Result
	flight      *flight // our unanswered request, if any
	again       Trigger // another exchange is due after the flight
	notices     uint64  // posture announcements of the peer, counted
	timer       *time.Timer
	unsubscribe func()
}

// flight is one request of ours and its answer.
type flight struct {
	trigger  Trigger
	notices  uint64 // the peer's announcements when the request was issued
	answered bool
	deadline *time.Timer
	finished bool
	done     chan struct{}
	res      *postauth.Result
	err      error
}

// NewSession returns the Session of a connection whose TLS 1.3 exporter ch
// gives, where the local endpoint has role. w sends control frames; abort
// is called once, with the session's error, when the session ends: it must
// close the transport (sending the error code to the peer if the error is
// a local *CloseError). Call [Session.Start] once the binding reads the
// peer's frames.
func NewSession(ch *postauth.Channel, role postauth.Role, w FrameWriter, abort func(error), opts ...Option) (*Session, error) {
	if ch == nil || w == nil || abort == nil {
		return nil, errors.New("streams: NewSession needs a channel, a frame writer and an abort function")
	}
	if role != postauth.RoleClient && role != postauth.RoleServer {
		return nil, fmt.Errorf("streams: invalid role %v", role)
	}
	cfg := newConfig(opts)
	if cfg.respErr != nil {
		return nil, cfg.respErr
	}
	s := &Session{
		role: role, ch: ch, cfg: cfg, w: w, abort: abort,
		done:       make(chan struct{}),
		requests:   make(chan *postauth.Request, MaxQueuedRequests),
		postureSig: make(chan struct{}, 1),
		changed:    make(chan struct{}),
	}
	if cfg.rp != nil {
		peer := postauth.RoleServer
		if role == postauth.RoleServer {
			peer = postauth.RoleClient
		}
		r, err := cfg.rp.NewRequester(ch, peer)
		if err != nil {
			return nil, err
		}
		s.reqr = r
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.Lock()
	s.updateLocked()
	s.mu.Unlock()
	return s, nil
}

// Start begins the protocol: an endpoint that requires attestation sends
// its first request, one that does not sends FrameReady; an attesting
// endpoint starts answering requests and announcing posture changes.
func (s *Session) Start() {
	s.mu.Lock()
	if s.started || s.closed != nil {
		s.mu.Unlock()
		return
	}
	s.started = true
	s.mu.Unlock()
	go s.control()
	if s.cfg.posture != nil && s.cfg.responder != nil {
		unsub := s.cfg.posture.Subscribe(func([]byte) {
			select {
			case s.postureSig <- struct{}{}:
			default: // one announcement is pending: it will carry the newest head
			}
		})
		s.mu.Lock()
		if s.closed == nil {
			s.unsubscribe, unsub = unsub, nil
		}
		s.mu.Unlock()
		if unsub != nil {
			unsub()
		}
	}
	if s.reqr != nil {
		s.exchange(TriggerStart)
	} else {
		s.send(FrameReady, nil)
	}
}

// Role is the local endpoint's TLS role.
func (s *Session) Role() postauth.Role { return s.role }

// Channel is the connection's attestation channel.
func (s *Session) Channel() *postauth.Channel { return s.ch }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is the error the session ended with (a *CloseError, or the
// transport's error), or nil while it runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Changed returns a channel that is closed at the next change of the
// session's state (a verdict, a suspension, FrameReady, the end). Take it
// before checking the state, then wait on it.
func (s *Session) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// CanDeliver reports whether application data from the peer may be handed
// to the application now: the session runs and, if the peer's attestation
// is required, it passed and no posture announcement is pending.
func (s *Session) CanDeliver() bool { return s.deliverOK.Load() }

// CanSend reports whether application data may be sent to the peer now:
// as CanDeliver, and the peer sent FrameReady.
func (s *Session) CanSend() bool { return s.sendOK.Load() }

// Verified reports whether the first verdict about the peer passed (always
// true for an endpoint that requires no attestation), even if the session
// has ended since.
func (s *Session) Verified() bool {
	if s.reqr == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.verified
}

// Unverified is the endpoint's choice for data that arrives before its
// first verdict.
func (s *Session) Unverified() Unverified { return s.cfg.unverified }

// Drainable reports whether the peer closed the connection in order
// (NoError) while delivery was allowed: data received before the close may
// still be delivered.
func (s *Session) Drainable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drain
}

// WaitDeliver waits until CanDeliver, the session ends (its error), or ctx
// ends (ctx's error).
func (s *Session) WaitDeliver(ctx context.Context) error {
	return s.wait(ctx.Done(), ctx.Err, s.deliverOK.Load)
}

// WaitSend waits until CanSend, the session ends, or ctx ends.
func (s *Session) WaitSend(ctx context.Context) error {
	return s.wait(ctx.Done(), ctx.Err, s.sendOK.Load)
}

func (s *Session) wait(cancel <-chan struct{}, cause func() error, ok func() bool) error {
	for {
		ch := s.Changed()
		if err := s.Err(); err != nil {
			return err
		}
		if ok() {
			return nil
		}
		select {
		case <-ch:
		case <-cancel:
			return cause()
		}
	}
}

// Result is the current verdict about the peer: the latest verified and
// appraised Result, or nil before the first one, while a posture change
// the peer announced is not attested yet, once the session failed, and on
// an endpoint that requires no attestation. After an orderly close
// (NoError) it stays the last verdict, under which the data received was
// sent.
func (s *Session) Result() *postauth.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.suspended {
		return nil
	}
	if s.closed != nil {
		var ce *CloseError
		if !errors.As(s.closed, &ce) || ce.Code != NoError {
			return nil
		}
	}
	return s.result
}

// Reattest asks the peer to attest now, waits for the verdict and returns
// it. A failed attestation ends the session (and the connection); its
// error is returned. Reattest waits for an exchange already under way and
// then starts a new one, so the Result it returns was requested after the
// call.
func (s *Session) Reattest(ctx context.Context) (*postauth.Result, error) {
	if s.reqr == nil {
		return nil, errNotRequired
	}
	for {
		s.mu.Lock()
		if s.closed != nil {
			err := s.closed
			s.mu.Unlock()
			return nil, err
		}
		f := s.flight
		s.mu.Unlock()
		if f == nil {
			break
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := s.exchange(TriggerDemand)
	if f == nil {
		return nil, s.Err()
	}
	select {
	case <-f.done:
		return f.res, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// HandleFrame processes one control frame from the peer (every type but
// FrameData and FrameWindow, which belong to the TLS binding). A frame
// that is not allowed ends the session; HandleFrame then returns its
// error.
func (s *Session) HandleFrame(t FrameType, payload []byte) error {
	switch t {
	case FrameRequest:
		s.onRequest(payload)
	case FrameAuthenticator:
		s.onAuthenticator(payload)
	case FrameReady:
		s.mu.Lock()
		s.peerReady = true
		s.updateLocked()
		s.mu.Unlock()
	case FramePosture:
		s.onPosture()
	case FrameClose:
		code, reason, err := ParseClose(payload)
		if err != nil {
			s.Fail(postauth.ErrorFor(postauth.ReasonProtocolViolation, err))
		} else {
			s.end(remoteCloseError(code, reason))
		}
	default:
		s.Fail(postauth.ErrorFor(postauth.ReasonProtocolViolation, fmt.Errorf("streams: unexpected %v frame", t)))
	}
	return s.Err()
}

func (s *Session) onRequest(payload []byte) {
	req, err := postauth.ParseRequest(payload)
	if err != nil {
		s.Fail(postauth.ErrorFor(postauth.ReasonProtocolViolation, err))
		return
	}
	if r, err := req.Responder(); err != nil || r != s.role {
		// A request of the type we send ourselves: a reflection.
		s.Fail(postauth.ErrorFor(postauth.ReasonWrongRequestType, postauth.ErrWrongRequestType))
		return
	}
	// Only this goroutine (the binding's reader) sends on s.requests.
	if len(s.requests) == cap(s.requests) { // mutation: request queue bound
		s.Fail(postauth.ErrorFor(postauth.ReasonProtocolViolation, fmt.Errorf("streams: more than %d unanswered requests", MaxQueuedRequests)))
		return
	}
	s.requests <- req
}

func (s *Session) onAuthenticator(payload []byte) {
	s.mu.Lock()
	f := s.flight
	if s.closed != nil {
		s.mu.Unlock()
		return
	}
	if s.reqr == nil || f == nil || f.answered {
		s.mu.Unlock()
		s.Fail(postauth.ErrorFor(postauth.ReasonProtocolViolation, errors.New("streams: an authenticator for no request")))
		return
	}
	f.answered = true
	f.deadline.Stop()
	s.mu.Unlock()
	raw := append([]byte(nil), payload...) // the binding may reuse payload
	go s.verify(f, raw)
}

func (s *Session) onPosture() {
	if s.reqr == nil {
		return // we do not appraise the peer: nothing to check again
	}
	s.mu.Lock()
	if s.closed != nil {
		s.mu.Unlock()
		return
	}
	s.notices++
	s.suspended = true // mutation: posture notice suspends
	s.updateLocked()
	s.mu.Unlock()
	s.observe(Event{Kind: EventPostureChanged})
	s.exchange(TriggerPosture) // mutation: posture notice re-attests
}

// exchange sends a new request to the peer, or, if one is already
// unanswered, schedules another after it. It returns the flight that will
// carry the verdict (nil if the session ended).
func (s *Session) exchange(tr Trigger) *flight {
	s.mu.Lock()
	if s.closed != nil {
		s.mu.Unlock()
		return nil
	}
	if f := s.flight; f != nil {
		if s.again == 0 || tr == TriggerPosture {
			s.again = tr
		}
		s.mu.Unlock()
		return f
	}
	req, err := s.reqr.NewRequest(nil)
	if err != nil {
		s.mu.Unlock()
		s.Fail(err)
		return nil
	}
	f := &flight{trigger: tr, notices: s.notices, done: make(chan struct{})}
	f.deadline = time.AfterFunc(s.cfg.deadline, func() { s.expire(f) })
	s.flight = f
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.mu.Unlock()
	raw, err := req.Marshal()
	if err != nil {
		s.Fail(err)
		return f
	}
	s.send(FrameRequest, raw)
	return f
}

// expire runs when f's answer deadline passes.
func (s *Session) expire(f *flight) {
	s.mu.Lock()
	late := s.flight == f && !f.answered
	s.mu.Unlock()
	if late { // mutation: answer deadline
		s.Fail(postauth.ErrorFor(postauth.ReasonAnswerTimeout, fmt.Errorf("streams: no answer within %v", s.cfg.deadline)))
	}
}

// verify checks the answer to f and applies the verdict.
func (s *Session) verify(f *flight, raw []byte) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.verifyTimeout)
	res, err := s.reqr.Verify(ctx, raw, nil)
	if err == nil {
		err = s.appraise(ctx, res)
	}
	cancel()
	if err != nil { // mutation: stream verdict failure closes
		s.Fail(err)
		return
	}
	s.mu.Lock()
	if s.closed != nil {
		s.mu.Unlock()
		return
	}
	s.result = res
	s.flight = nil
	first := !s.verified
	s.verified = true
	again := s.again
	s.again = 0
	if f.notices == s.notices {
		// The request left after the peer's last announcement: the
		// Evidence covers the posture it announced.
		s.suspended = false
	} else {
		again = TriggerPosture
	}
	if again == 0 {
		s.scheduleLocked(res)
	}
	f.res, f.finished = res, true
	close(f.done)
	s.updateLocked()
	s.mu.Unlock()
	s.observe(Event{Kind: EventVerified, Trigger: f.trigger, Result: res})
	if first {
		s.send(FrameReady, nil)
	}
	if again != 0 {
		s.exchange(again)
	}
}

// appraise applies the posture policy and the appraisal hook.
func (s *Session) appraise(ctx context.Context, res *postauth.Result) error {
	if s.cfg.policy != nil {
		if err := postauth.AppraisePosture(ctx, s.cfg.policy, res); err != nil { // mutation: stream posture policy
			return err
		}
	}
	if s.cfg.appraise != nil {
		if err := s.cfg.appraise(ctx, res); err != nil {
			if postauth.CodeOf(err) == postauth.CodeUnknown {
				return postauth.ErrorFor(postauth.ReasonPolicyDenied, err)
			}
			return err
		}
	}
	return nil
}

// scheduleLocked arms the next periodic request, or an earlier one at the
// verifier's expiry of res.
func (s *Session) scheduleLocked(res *postauth.Result) {
	d, tr := s.cfg.interval, TriggerInterval
	if res != nil && !res.Expiry().IsZero() {
		if e := time.Until(res.Expiry()); d <= 0 || e < d {
			d, tr = max(e, 0), TriggerExpiry
		}
	}
	if d <= 0 && tr == TriggerInterval {
		return
	}
	s.timer = time.AfterFunc(d, func() {
		if tr == TriggerExpiry {
			// The verdict is no longer valid: hold data until a new one.
			s.mu.Lock()
			s.suspended = true
			s.updateLocked()
			s.mu.Unlock()
		}
		s.exchange(tr)
	})
}

// control answers the peer's requests and announces posture changes, one
// at a time.
func (s *Session) control() {
	for {
		select {
		case <-s.done:
			return
		case req := <-s.requests:
			s.answer(req)
		case <-s.postureSig:
			s.send(FramePosture, s.cfg.posture.Head())
		}
	}
}

// answer answers one request of the peer: with fresh Evidence if we
// attest, otherwise (or if the Attester fails) with an authenticated
// refusal.
func (s *Session) answer(req *postauth.Request) {
	var raw []byte
	var err error
	if s.cfg.responder != nil {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.deadline)
		raw, err = s.cfg.responder.Respond(ctx, s.ch, s.role, req)
		cancel()
	} else {
		err = errors.New("streams: this endpoint does not attest (WithAttester)")
	}
	refused := err != nil
	if refused {
		if raw, err = s.ch.Refuse(s.role, req); err != nil {
			s.Fail(postauth.ErrorFor(postauth.ReasonProtocolViolation, err))
			return
		}
	}
	if s.send(FrameAuthenticator, raw) {
		s.observe(Event{Kind: EventAttested, Refused: refused, Err: err})
	}
}

// send writes one control frame; a failure ends the session. Nothing is
// sent once the session has ended: the session's error is set before its
// context is canceled, so an answer cut short by the end (an Attester
// whose context was canceled) is never sent as a refusal ahead of the
// binding's close.
func (s *Session) send(t FrameType, payload []byte) bool {
	if s.Err() != nil {
		return false
	}
	if err := s.w.WriteFrame(t, payload); err != nil {
		s.end(err)
		return false
	}
	return true
}

// Fail ends the session because of err (an attestation failure, a protocol
// violation): the binding closes the connection with the error code of err
// ([CodeFor]). It returns the session's error.
func (s *Session) Fail(err error) error {
	s.end(closeErrorFor(err))
	return s.Err()
}

// Close ends the session in order (NoError).
func (s *Session) Close() error {
	s.end(&CloseError{Code: NoError})
	return nil
}

// CloseRemote ends the session because the peer closed the connection
// with code and reason (for bindings whose transport carries them, such as
// QUIC's CONNECTION_CLOSE).
func (s *Session) CloseRemote(code ErrorCode, reason string) {
	s.end(RemoteError(code, reason))
}

// Abort ends the session because the transport failed (err is kept as the
// session's error and not sent anywhere).
func (s *Session) Abort(err error) {
	if err == nil {
		err = errors.New("streams: transport closed")
	}
	s.end(err)
}

func (s *Session) end(err error) {
	s.mu.Lock()
	if s.closed != nil {
		s.mu.Unlock()
		return
	}
	var ce *CloseError
	if errors.As(err, &ce) && ce.Remote && ce.Code == NoError {
		s.drain = s.deliverOK.Load()
	}
	s.closed = err
	if s.timer != nil {
		s.timer.Stop()
	}
	var tr Trigger
	if f := s.flight; f != nil {
		tr = f.trigger
	}
	if f := s.flight; f != nil && !f.finished {
		f.deadline.Stop()
		f.err, f.finished = err, true
		close(f.done)
	}
	s.updateLocked()
	unsub := s.unsubscribe
	s.unsubscribe = nil
	close(s.done)
	s.mu.Unlock()
	s.cancel()
	if unsub != nil {
		unsub()
	}
	s.observe(Event{Kind: EventClosed, Trigger: tr, Err: err})
	s.abort(err)
}

// updateLocked recomputes the gates and wakes every waiter.
func (s *Session) updateLocked() {
	deliver := s.closed == nil && (s.reqr == nil || (s.verified && !s.suspended))
	s.deliverOK.Store(deliver)
	s.sendOK.Store(deliver && s.peerReady)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Session) observe(e Event) {
	if s.cfg.observer != nil {
		s.cfg.observer(e)
	}
}
