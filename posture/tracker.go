package posture

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Register is a measurement register that the posture log is extended into:
// a software register (this package), a TPM PCR or a TDX RTMR (the hardware
// Evidence packages). Extend must compute H(old || digest), where H is
// Hash(). Implementations must be safe for concurrent use.
type Register interface {
	// Hash is the register's hash; its initial value is Hash().Size() zero
	// bytes.
	Hash() crypto.Hash
	// Extend sets the register to H(value || digest).
	Extend(ctx context.Context, digest []byte) error
	// Read returns the register's value.
	Read(ctx context.Context) ([]byte, error)
}

// SoftwareRegister is a Register in process memory. Evidence about it is only
// as trustworthy as the process that holds it: use it with software Evidence
// for development, and a hardware register in production.
type SoftwareRegister struct {
	alg   crypto.Hash
	mu    sync.Mutex // guards value
	value []byte
}

var _ Register = (*SoftwareRegister)(nil)

// NewSoftwareRegister returns a zeroed register for alg (SHA-256, SHA-384 or
// SHA-512).
func NewSoftwareRegister(alg crypto.Hash) (*SoftwareRegister, error) {
	if AlgID(alg) == 0 {
		return nil, fmt.Errorf("posture: unsupported register hash %v", alg)
	}
	return &SoftwareRegister{alg: alg, value: make([]byte, alg.Size())}, nil
}

// Hash is the register's hash.
func (r *SoftwareRegister) Hash() crypto.Hash { return r.alg }

// Extend sets the register to H(value || digest).
func (r *SoftwareRegister) Extend(_ context.Context, digest []byte) error {
	if len(digest) != r.alg.Size() {
		return fmt.Errorf("posture: extend with %d bytes, want %d", len(digest), r.alg.Size())
	}
	r.mu.Lock()
	r.value = Extend(r.alg, r.value, digest)
	r.mu.Unlock()
	return nil
}

// Read returns the register value.
func (r *SoftwareRegister) Read(context.Context) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.value), nil
}

// Snapshot is a consistent view of a Tracker: the log and the head it
// reproduces.
type Snapshot struct {
	Alg  crypto.Hash
	Head []byte
	// Log is the encoded log ([Log.Encode]).
	Log   []byte
	State *State
}

// ErrRegisterDiverged means a register extend failed in a way that left
// the register neither at its old value nor at the value the log expects
// (or its value could not be read back). The log can no longer reproduce the
// register, so the Tracker refuses further changes and snapshots: start over
// with a fresh register.
var ErrRegisterDiverged = errors.New("posture: register and log diverged")

// readBackTimeout bounds the register read after a failed extend (the
// caller's context may be what made the extend fail).
const readBackTimeout = 10 * time.Second

// Tracker keeps an agent's measured posture: every change appends an event
// to the log and extends the register, in that order and atomically with
// respect to other changes and snapshots. Subscribers learn the new head
// after each change, so a client transport can attest again and send the
// new head as its posture hint. A Tracker is safe for concurrent use. The
// zero Tracker is usable and works like NewTracker(): a SHA-256 software
// register.
//
// The log is bounded (MaxEvents events, MaxLogLen bytes); a change that
// would overflow it is refused before the register is extended, so the
// register and the log never disagree.
type Tracker struct {
	reg Register

	mu     sync.Mutex // guards every field below
	log    *Log
	head   []byte
	state  *State
	broken error // set when the register diverged from the log
	subs   map[int]func(head []byte)
	nextID int
	queue  [][]byte // heads not yet delivered to subscribers, in change order
	busy   bool     // a goroutine is delivering the queue
}

// Source is an agent's measured posture as the attesting side reads it:
// Evidence formats take a [Snapshot], client transports send the [Head] as
// the posture hint and attest again when [Subscribe] reports a change.
// *Tracker implements it.
type Source interface {
	// Snapshot returns the log and the head it reproduces, consistently.
	Snapshot() (*Snapshot, error)
	// Head is the current register value.
	Head() []byte
	// Subscribe calls f with every new head until cancel is called.
	Subscribe(f func(head []byte)) (cancel func())
}

var _ Source = (*Tracker)(nil)

// TrackerOption configures a [Tracker].
type TrackerOption interface{ applyTracker(*trackerConfig) }

type trackerConfig struct {
	reg Register
}

type trackerOptionFunc func(*trackerConfig)

func (f trackerOptionFunc) applyTracker(c *trackerConfig) { f(c) }

// WithRegister makes the Tracker extend reg (a TPM PCR, a TDX RTMR...).
// reg must be in its initial (all-zero) state: the log replays from there.
// Nil means a new SHA-256 [SoftwareRegister], the default.
func WithRegister(reg Register) TrackerOption {
	return trackerOptionFunc(func(c *trackerConfig) {
		if reg != nil {
			c.reg = reg
		}
	})
}

// NewTracker returns a Tracker over a register: by default a new SHA-256
// [SoftwareRegister], or the one given with [WithRegister].
func NewTracker(opts ...TrackerOption) (*Tracker, error) {
	var cfg trackerConfig
	for _, o := range opts {
		if o != nil {
			o.applyTracker(&cfg)
		}
	}
	reg := cfg.reg
	if reg == nil {
		sw, err := NewSoftwareRegister(crypto.SHA256)
		if err != nil {
			return nil, err
		}
		reg = sw
	}
	l, err := NewLog(reg.Hash())
	if err != nil {
		return nil, err
	}
	head, err := reg.Read(context.Background())
	if err != nil {
		return nil, fmt.Errorf("posture: reading register: %w", err)
	}
	if len(head) != reg.Hash().Size() || slices.ContainsFunc(head, func(b byte) bool { return b != 0 }) {
		return nil, errors.New("posture: register is not in its initial state")
	}
	return &Tracker{reg: reg, log: l, head: head, state: &State{}, subs: make(map[int]func([]byte))}, nil
}

// Register is the tracker's register. Read it if you like; extending it
// directly (not through the Tracker) puts it out of step with the log, and
// every later attestation fails.
func (t *Tracker) Register() Register {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.initLocked()
	return t.reg
}

// initLocked makes the zero Tracker usable: a fresh SHA-256 software
// register and an empty log, as NewTracker() gives.
func (t *Tracker) initLocked() {
	if t.log != nil {
		return
	}
	reg, _ := NewSoftwareRegister(crypto.SHA256) // cannot fail for SHA-256
	t.reg = reg
	t.log, _ = NewLog(crypto.SHA256)
	t.head = make([]byte, crypto.SHA256.Size())
	t.state = &State{}
	t.subs = make(map[int]func([]byte))
}

// fixed returns a build function for an event that does not depend on the
// current state.
func fixed(e Event) func(*State) (Event, error) {
	return func(*State) (Event, error) { return e, nil }
}

// SetModel records that the agent now uses model m.
func (t *Tracker) SetModel(ctx context.Context, m Model) error {
	return t.record(ctx, fixed(Event{Op: OpSetModel, Component: Component{ID: ComponentID{Name: m.Name, Version: m.Version}, Digest: &m.Digest}}))
}

// EnableTool records that tool is enabled (replacing an enabled tool of the
// same name).
func (t *Tracker) EnableTool(ctx context.Context, tool Tool) error {
	return t.record(ctx, fixed(Event{Op: OpEnableTool, Component: Component{ID: ComponentID{Name: tool.Name, Version: tool.Version}, Digest: &tool.Digest}}))
}

// DisableTool records that the tool called name is disabled. The event
// carries the id and digest of the tool as it is enabled at that moment.
func (t *Tracker) DisableTool(ctx context.Context, name string) error {
	return t.record(ctx, func(st *State) (Event, error) {
		tool, ok := st.Tool(name)
		if !ok {
			return Event{}, fmt.Errorf("posture: tool %q is not enabled", name)
		}
		return Event{Op: OpDisableTool, Component: Component{ID: ComponentID{Name: tool.Name, Version: tool.Version}, Digest: &tool.Digest}}, nil
	})
}

// SetTemplate records that the agent now uses prompt template tpl.
func (t *Tracker) SetTemplate(ctx context.Context, tpl Template) error {
	return t.record(ctx, fixed(Event{Op: OpSetTemplate, Component: Component{ID: ComponentID{Name: tpl.Name}, Digest: &tpl.Digest}}))
}

// Grant records that permission name is granted with scopes (replacing
// earlier scopes).
func (t *Tracker) Grant(ctx context.Context, name string, scopes ...string) error {
	raw, err := encodeScopes(scopes)
	if err != nil {
		return err
	}
	return t.record(ctx, fixed(Event{Op: OpGrant, Component: Component{ID: ComponentID{Name: name}, Raw: &raw}}))
}

// Revoke records that permission name is revoked.
func (t *Tracker) Revoke(ctx context.Context, name string) error {
	raw := []byte{}
	return t.record(ctx, fixed(Event{Op: OpRevoke, Component: Component{ID: ComponentID{Name: name}, Raw: &raw}}))
}

// SetFlag records that configuration flag name has value.
func (t *Tracker) SetFlag(ctx context.Context, name, value string) error {
	raw := []byte(value)
	return t.record(ctx, fixed(Event{Op: OpSetFlag, Component: Component{ID: ComponentID{Name: name}, Raw: &raw}}))
}

// record builds the event from the current state, appends it, extends the
// register and notifies subscribers. Building, checking and extending all
// happen under t.mu, so the event describes the state it changes.
func (t *Tracker) record(ctx context.Context, build func(*State) (Event, error)) error {
	t.mu.Lock()
	t.initLocked()
	if err := t.extendLocked(ctx, build); err != nil {
		t.mu.Unlock()
		return err
	}
	deliver := false
	if len(t.subs) > 0 {
		t.queue = append(t.queue, slices.Clone(t.head))
		deliver = !t.busy
		t.busy = true
	}
	t.mu.Unlock()
	if deliver {
		t.deliver()
	}
	return nil
}

func (t *Tracker) extendLocked(ctx context.Context, build func(*State) (Event, error)) error {
	if t.broken != nil {
		return t.broken
	}
	e, err := build(t.state)
	if err != nil {
		return err
	}
	e = e.clone() // the caller's digest bytes stay the caller's
	enc, err := e.Encode()
	if err != nil {
		return err
	}
	next := t.state.Clone()
	if err := next.apply(e); err != nil {
		return err
	}
	if err := t.log.canAppend(len(enc)); err != nil {
		return err
	}
	digest := Measure(t.log.alg, enc)
	newHead := Extend(t.log.alg, t.head, digest)
	if err := t.reg.Extend(ctx, digest); err != nil {
		// The extend may or may not have happened (a hardware register
		// behind a timeout). Read the register to find out.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readBackTimeout)
		got, rerr := t.reg.Read(rctx)
		cancel()
		switch {
		case rerr == nil && bytes.Equal(got, t.head):
			return fmt.Errorf("posture: extending register: %w", err)
		case rerr == nil && bytes.Equal(got, newHead):
			// It did happen: the log must follow.
		default:
			t.broken = fmt.Errorf("%w: extend failed (%w) and the register holds an unknown value", ErrRegisterDiverged, err)
			return t.broken
		}
	}
	// The register moved: the log must follow. canAppend passed, so this
	// cannot fail.
	_ = t.log.append(e, enc)
	t.head = newHead
	t.state = next
	return nil
}

// deliver calls the subscribers with each queued head, in order, until the
// queue is empty. Only one goroutine delivers at a time (t.busy), so
// subscribers see heads in the order of the changes and never concurrently,
// and they may call the Tracker, even to change the posture.
func (t *Tracker) deliver() {
	done := false
	defer func() {
		if !done { // a subscriber panicked: let the next change deliver
			t.mu.Lock()
			t.busy = false
			t.mu.Unlock()
		}
	}()
	for {
		t.mu.Lock()
		if len(t.queue) == 0 {
			t.busy = false
			t.mu.Unlock()
			done = true
			return
		}
		head := t.queue[0]
		t.queue = t.queue[1:]
		ids := slices.Sorted(maps.Keys(t.subs))
		subs := make([]func([]byte), len(ids))
		for i, id := range ids {
			subs[i] = t.subs[id]
		}
		t.mu.Unlock()
		for _, f := range subs {
			f(slices.Clone(head))
		}
	}
}

// Head is the current log head (posture digest).
func (t *Tracker) Head() []byte {
	t.mu.Lock()
	t.initLocked()
	defer t.mu.Unlock()
	return slices.Clone(t.head)
}

// State is a copy of the current posture.
func (t *Tracker) State() *State {
	t.mu.Lock()
	t.initLocked()
	defer t.mu.Unlock()
	return t.state.Clone()
}

// Snapshot returns the log, its head and the state, consistently. It fails
// with [ErrRegisterDiverged] once the register and the log disagree.
func (t *Tracker) Snapshot() (*Snapshot, error) {
	t.mu.Lock()
	t.initLocked()
	defer t.mu.Unlock()
	if t.broken != nil {
		return nil, t.broken
	}
	enc, err := t.log.Encode()
	if err != nil {
		return nil, err
	}
	return &Snapshot{Alg: t.log.alg, Head: slices.Clone(t.head), Log: enc, State: t.state.Clone()}, nil
}

// Subscribe calls f with the new head after every change, until the
// returned cancel function is called. Calls come in the order of the
// changes, one at a time, on the goroutine of a change (not necessarily the
// one whose change is being reported: while one goroutine is delivering,
// changes made by others are queued for it). f may call the Tracker, but it
// should not block for long, since it holds up the notifications of later
// changes. After cancel returns, f may still be running a call that had
// started.
//
// Use Subscribe to learn that posture changed (for example to re-attest);
// read the posture hint to send from [Tracker.Head] when sending it.
func (t *Tracker) Subscribe(f func(head []byte)) (cancel func()) {
	t.mu.Lock()
	t.initLocked()
	id := t.nextID
	t.nextID++
	t.subs[id] = f
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.subs, id)
		t.mu.Unlock()
	}
}

// DigestOf returns the SHA-256 Digest of data, a helper for building items
// (for example a model's weights file or a prompt template's text).
func DigestOf(data []byte) Digest {
	sum := sha256.Sum256(data)
	return Digest{Alg: AlgSHA256, Value: sum[:]}
}
