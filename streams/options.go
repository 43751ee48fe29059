package streams

import (
	"context"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// Option configures one endpoint of an attested connection, over either
// binding (this package's TLS binding, or streams/quicstream). Options are
// applied in order; a later one wins. Nil and zero values leave the
// default.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// Unverified says what an endpoint does with application data that
// arrives before its first verdict about the peer. Neither choice ever
// delivers such data unverified.
type Unverified uint8

const (
	// Hold keeps the data (within the flow-control window of the TLS
	// binding, the stream limits of QUIC) and delivers it only once the
	// peer's attestation passed; if it fails, the data is dropped with the
	// connection. The default.
	Hold Unverified = iota
	// Refuse closes the connection (EARLY_DATA) when application data
	// arrives before the verdict. A conforming peer never sends any: it
	// waits for FrameReady.
	Refuse
)

// Defaults.
const (
	// DefaultInterval is how often a relying party asks its peer to attest
	// again.
	DefaultInterval = 5 * time.Minute
	// DefaultAnswerDeadline is how long a peer has to answer a request.
	DefaultAnswerDeadline = 10 * time.Second
	// DefaultVerifyTimeout bounds one verification (verifier and appraisal).
	DefaultVerifyTimeout = 5 * time.Second
	// SetupTimeout bounds the setup of a connection by a binding: the TLS
	// handshake of [Server] and [Client], the control stream of QUIC.
	SetupTimeout = 10 * time.Second
	// MaxQueuedRequests is how many unanswered requests of the peer an
	// endpoint queues; one more closes the connection (PROTOCOL_ERROR).
	MaxQueuedRequests = 4
)

type config struct {
	rp            *postauth.RelyingParty
	responder     *postauth.Responder
	respErr       error
	posture       posture.Source
	policy        *posture.Policy
	appraise      func(context.Context, *postauth.Result) error
	interval      time.Duration // <= 0: no periodic re-attestation
	deadline      time.Duration
	verifyTimeout time.Duration
	unverified    Unverified
	observer      func(Event)
}

func newConfig(opts []Option) config {
	c := config{
		interval:      DefaultInterval,
		deadline:      DefaultAnswerDeadline,
		verifyTimeout: DefaultVerifyTimeout,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithRelyingParty makes the endpoint require its peer's attestation,
// verified by rp (its Verifier, formats and key trust): at the start of the
// connection, then periodically, when the peer announces a posture change,
// and on demand ([Conn.Reattest]). Without it the endpoint asks for no
// attestation and its peer may send application data at once.
func WithRelyingParty(rp *postauth.RelyingParty) Option {
	return optionFunc(func(c *config) {
		if rp != nil {
			c.rp = rp
		}
	})
}

// WithAttester lets the endpoint attest when its peer asks: it answers each
// request with an Exported Authenticator signed by id that carries fresh
// Evidence from att (postauth options: [postauth.WithAttestationExtension],
// [postauth.WithSignatureSchemes], ...). Without it the endpoint declines
// every request (an empty authenticator), and a peer that requires
// attestation closes the connection. For "same peer" key trust on the
// other side, id should hold the key of the endpoint's TLS certificate
// ([postauth.IdentityFromTLS]).
func WithAttester(id *postauth.Identity, att postauth.Attester, opts ...postauth.Option) Option {
	r, err := postauth.NewResponder(id, att, opts...)
	return optionFunc(func(c *config) {
		if id == nil && att == nil {
			return
		}
		c.responder, c.respErr = r, err
	})
}

// WithResponder is [WithAttester] with a Responder made beforehand
// ([postauth.NewResponder]), as the HTTP middleware's server attestation
// uses.
func WithResponder(r *postauth.Responder) Option {
	return optionFunc(func(c *config) {
		if r != nil {
			c.responder, c.respErr = r, nil
		}
	})
}

// WithPosture makes an attesting endpoint announce every change of src
// (FramePosture), so that a peer that requires attestation re-attests it at
// once. src should be the posture the Attester reports (for example
// softeat.WithPosture with the same tracker).
func WithPosture(src posture.Source) Option {
	return optionFunc(func(c *config) {
		if src != nil {
			c.posture = src
		}
	})
}

// WithPosturePolicy appraises every verified attestation of the peer
// against p ([postauth.AppraisePosture]); a denial closes the connection
// (POLICY_DENIED).
func WithPosturePolicy(p *posture.Policy) Option {
	return optionFunc(func(c *config) {
		if p != nil {
			c.policy = p
		}
	})
}

// WithAppraise runs f on every verified attestation of the peer, after the
// posture policy. An error closes the connection: its postauth code picks
// the error code, and an error without a code is a policy denial.
func WithAppraise(f func(ctx context.Context, res *postauth.Result) error) Option {
	return optionFunc(func(c *config) {
		if f != nil {
			c.appraise = f
		}
	})
}

// WithInterval sets how often a relying party asks its peer to attest
// again ([DefaultInterval], 5 minutes). Data keeps flowing while a periodic
// request is out; the peer must answer within the answer deadline. A
// negative d turns periodic re-attestation off: the verdict then lasts
// until the peer announces a posture change, an on-demand re-attestation,
// or the verifier's expiry.
func WithInterval(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d != 0 {
			c.interval = d
		}
	})
}

// WithAnswerDeadline sets how long the peer has to answer a request
// ([DefaultAnswerDeadline], 10 seconds); a missed deadline closes the
// connection (ATTESTATION_TIMEOUT). It also bounds the local Attester.
func WithAnswerDeadline(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.deadline = d
		}
	})
}

// WithVerifyTimeout bounds one verification of the peer's answer, appraisal
// included ([DefaultVerifyTimeout], 5 seconds). A verifier that does not
// decide in time closes the connection (VERIFIER_UNAVAILABLE): never a pass.
func WithVerifyTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.verifyTimeout = d
		}
	})
}

// WithUnverified sets what the endpoint does with application data that
// arrives before its first verdict: [Hold] (the default) or [Refuse].
func WithUnverified(u Unverified) Option {
	return optionFunc(func(c *config) {
		if u == Refuse {
			c.unverified = Refuse
		}
	})
}

// WithObserver calls f with every attestation event of the connection
// (verdicts, answers, the close). f runs on the connection's goroutines,
// possibly concurrently: it must be safe for concurrent use, must not
// block, and must not call the connection. Events carry Results but never
// Evidence.
func WithObserver(f func(Event)) Option {
	return optionFunc(func(c *config) {
		if f != nil {
			c.observer = f
		}
	})
}

// EventKind is what happened on an attested connection.
type EventKind uint8

const (
	// EventVerified: the peer's attestation passed verification and
	// appraisal; Event.Result is the new verdict.
	EventVerified EventKind = iota + 1
	// EventAttested: the endpoint answered a request of its peer;
	// Event.Refused says it declined, and Event.Err why.
	EventAttested
	// EventClosed: the connection ended; Event.Err is its error.
	EventClosed
	// EventPostureChanged: the peer announced a posture change; its verdict
	// is suspended until it attests again.
	EventPostureChanged
)

func (k EventKind) String() string {
	switch k {
	case EventVerified:
		return "verified"
	case EventAttested:
		return "attested"
	case EventClosed:
		return "closed"
	case EventPostureChanged:
		return "posture-changed"
	}
	return "event"
}

// Trigger says why an endpoint asked its peer to attest.
type Trigger uint8

const (
	// TriggerStart: the connection started.
	TriggerStart Trigger = iota + 1
	// TriggerInterval: the periodic interval passed.
	TriggerInterval
	// TriggerPosture: the peer announced a posture change.
	TriggerPosture
	// TriggerDemand: the application asked ([Conn.Reattest]).
	TriggerDemand
	// TriggerExpiry: the verifier's expiry of the verdict passed.
	TriggerExpiry
)

func (t Trigger) String() string {
	switch t {
	case TriggerStart:
		return "start"
	case TriggerInterval:
		return "interval"
	case TriggerPosture:
		return "posture"
	case TriggerDemand:
		return "demand"
	case TriggerExpiry:
		return "expiry"
	}
	return "none"
}

// Event is one attestation event of a connection (see [WithObserver]).
type Event struct {
	Kind    EventKind
	Trigger Trigger          // EventVerified, EventClosed: why the peer was asked (for a close, the request under way, if any)
	Result  *postauth.Result // EventVerified: the verdict
	Refused bool             // EventAttested: the endpoint declined
	Err     error            // EventAttested: why it declined; EventClosed: the error
}
