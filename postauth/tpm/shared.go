package tpm

import (
	"context"
	"errors"

	"github.com/google/go-tpm/tpm2/transport"
)

// SharedTPM serializes the commands sent to one TPM. A TPM runs one command
// at a time, and most transports (the simulator, a /dev/tpmrm0 handle) must
// not be used by several goroutines at once. Every [Attester] and
// [PCRRegister] wraps its transport in a SharedTPM; when several of them use
// the same TPM, wrap the transport once with [Share] and pass the same
// *SharedTPM to each of them (NewAttester refuses a posture PCRRegister that
// holds another lock). A SharedTPM is safe for concurrent use.
//
// Context handling: a caller waiting for the TPM gives up when its context
// ends. A command already sent cannot be taken back: when the context ends
// while the TPM runs it, the caller returns at once with the context's
// error, and the TPM stays locked until the command completes, so the next
// command never overlaps it. The abandoned command's result is lost (a
// [posture.Tracker] reads its register back to learn whether an abandoned
// extend happened).
type SharedTPM struct {
	t   transport.TPM
	sem chan struct{} // holds a token while a command sequence runs
}

var _ transport.TPM = (*SharedTPM)(nil)

// Share returns a SharedTPM over t. If t already is a *SharedTPM, Share
// returns it.
func Share(t transport.TPM) *SharedTPM {
	if l, ok := t.(*SharedTPM); ok {
		return l
	}
	return &SharedTPM{t: t, sem: make(chan struct{}, 1)}
}

// Send sends one command, waiting for any command sequence in progress. It
// implements [transport.TPM], so code outside this package can share the
// TPM through the same lock.
func (l *SharedTPM) Send(cmd []byte) ([]byte, error) {
	l.sem <- struct{}{}
	defer func() { <-l.sem }()
	return l.t.Send(cmd)
}

// errAbandoned is returned for a command sent through a session after an
// earlier command of the session was abandoned.
var errAbandoned = errors.New("tpm: an earlier command of this sequence was abandoned")

// do runs f with exclusive use of the TPM: no other command reaches the
// TPM between f's commands. The transport f receives honours ctx.
func (l *SharedTPM) do(ctx context.Context, f func(t transport.TPM) error) error {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	s := &session{l: l, ctx: ctx}
	defer s.end()
	return f(s)
}

// session is a transport.TPM view of a SharedTPM held by one sequence.
type session struct {
	l       *SharedTPM
	ctx     context.Context
	running chan struct{} // closed when an abandoned command completes
}

func (s *session) Send(cmd []byte) ([]byte, error) {
	if s.running != nil {
		return nil, errAbandoned
	}
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	if s.ctx.Done() == nil {
		return s.l.t.Send(cmd)
	}
	done := make(chan struct{})
	var rsp []byte
	var err error
	go func() {
		rsp, err = s.l.t.Send(cmd)
		close(done)
	}()
	select {
	case <-done:
		return rsp, err
	case <-s.ctx.Done():
		s.running = done
		return nil, s.ctx.Err()
	}
}

// end releases the TPM, after the abandoned command if there is one.
func (s *session) end() {
	if s.running == nil {
		<-s.l.sem
		return
	}
	go func() {
		<-s.running
		<-s.l.sem
	}()
}
