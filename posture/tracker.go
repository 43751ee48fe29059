package posture

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Register is a measurement register that the posture log is extended into:
// a software register (this package), a TPM PCR or a TDX RTMR (the hardware
// Evidence packages). Extend must compute H(old || digest), where H is
// Hash(). Implementations must be safe for concurrent use.
type Register interface {
	Hash() crypto.Hash
	Extend(ctx context.Context, digest []byte) error
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

// NewSoftwareRegister returns a zeroed register for alg (SHA-256 or SHA-384).
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

// Tracker keeps an agent's measured posture: every change appends an event
// to the log and extends the register, in that order and atomically with
// respect to other changes and snapshots. Subscribers learn the new head
// after each change, so a client transport can attest again and send the
// new head as its posture hint. A Tracker is safe for concurrent use.
type Tracker struct {
	reg Register

	mu     sync.Mutex // guards log, head, state, subs, nextID
	log    *Log
	head   []byte
	state  *State
	subs   map[int]func(head []byte)
	nextID int
}

// NewTracker returns a Tracker over reg. A nil reg means a new SHA-256
// SoftwareRegister. reg must be in its initial (all-zero) state: the log
// replays from there.
func NewTracker(reg Register) (*Tracker, error) {
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

// Register is the tracker's register.
func (t *Tracker) Register() Register { return t.reg }

// SetModel records that the agent now uses model m.
func (t *Tracker) SetModel(ctx context.Context, m Model) error {
	return t.record(ctx, Event{Op: OpSetModel, Component: Component{ID: ComponentID{Name: m.Name, Version: m.Version}, Digest: &m.Digest}})
}

// EnableTool records that tool is enabled (replacing an enabled tool of the
// same name).
func (t *Tracker) EnableTool(ctx context.Context, tool Tool) error {
	return t.record(ctx, Event{Op: OpEnableTool, Component: Component{ID: ComponentID{Name: tool.Name, Version: tool.Version}, Digest: &tool.Digest}})
}

// DisableTool records that the tool called name is disabled.
func (t *Tracker) DisableTool(ctx context.Context, name string) error {
	t.mu.Lock()
	tool, ok := t.state.Tool(name)
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("posture: tool %q is not enabled", name)
	}
	return t.record(ctx, Event{Op: OpDisableTool, Component: Component{ID: ComponentID{Name: tool.Name, Version: tool.Version}, Digest: &tool.Digest}})
}

// SetTemplate records that the agent now uses prompt template tpl.
func (t *Tracker) SetTemplate(ctx context.Context, tpl Template) error {
	return t.record(ctx, Event{Op: OpSetTemplate, Component: Component{ID: ComponentID{Name: tpl.Name}, Digest: &tpl.Digest}})
}

// Grant records that permission name is granted with scopes (replacing
// earlier scopes).
func (t *Tracker) Grant(ctx context.Context, name string, scopes ...string) error {
	raw, err := encodeScopes(scopes)
	if err != nil {
		return err
	}
	return t.record(ctx, Event{Op: OpGrant, Component: Component{ID: ComponentID{Name: name}, Raw: &raw}})
}

// Revoke records that permission name is revoked.
func (t *Tracker) Revoke(ctx context.Context, name string) error {
	raw := []byte{}
	return t.record(ctx, Event{Op: OpRevoke, Component: Component{ID: ComponentID{Name: name}, Raw: &raw}})
}

// SetFlag records that configuration flag name has value.
func (t *Tracker) SetFlag(ctx context.Context, name, value string) error {
	raw := []byte(value)
	return t.record(ctx, Event{Op: OpSetFlag, Component: Component{ID: ComponentID{Name: name}, Raw: &raw}})
}

// record appends e, extends the register and notifies subscribers.
func (t *Tracker) record(ctx context.Context, e Event) error {
	enc, err := e.Encode()
	if err != nil {
		return err
	}
	t.mu.Lock()
	next := t.state.Clone()
	if err := next.apply(e); err != nil {
		t.mu.Unlock()
		return err
	}
	if t.log.Len() >= MaxEvents {
		t.mu.Unlock()
		return fmt.Errorf("posture: log longer than %d events", MaxEvents)
	}
	digest := Measure(t.log.alg, enc)
	if err := t.reg.Extend(ctx, digest); err != nil {
		t.mu.Unlock()
		return fmt.Errorf("posture: extending register: %w", err)
	}
	// The register moved: the log must follow, whatever else happens.
	_ = t.log.append(e, enc)
	t.head = Extend(t.log.alg, t.head, digest)
	t.state = next
	head := slices.Clone(t.head)
	subs := make([]func([]byte), 0, len(t.subs))
	for _, f := range t.subs {
		subs = append(subs, f)
	}
	t.mu.Unlock()
	for _, f := range subs {
		f(slices.Clone(head))
	}
	return nil
}

// Head is the current log head (posture digest).
func (t *Tracker) Head() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.head)
}

// State is a copy of the current posture.
func (t *Tracker) State() *State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state.Clone()
}

// Snapshot returns the log, its head and the state, consistently.
func (t *Tracker) Snapshot() (*Snapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	enc, err := t.log.Encode()
	if err != nil {
		return nil, err
	}
	return &Snapshot{Alg: t.log.alg, Head: slices.Clone(t.head), Log: enc, State: t.state.Clone()}, nil
}

// Subscribe calls f with the new head after every change, until the
// returned cancel function is called. f runs on the goroutine that made the
// change, after the change is complete; it must not block for long.
func (t *Tracker) Subscribe(f func(head []byte)) (cancel func()) {
	t.mu.Lock()
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
