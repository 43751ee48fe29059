package tpm

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// slowTPM is a transport whose commands block until released, and which
// reports overlapping commands.
type slowTPM struct {
	started chan []byte
	release chan struct{}
	busy    chan struct{} // holds a token while a command runs
	overlap chan struct{} // closed on an overlapping command
}

func newSlowTPM() *slowTPM {
	return &slowTPM{started: make(chan []byte, 8), release: make(chan struct{}), busy: make(chan struct{}, 1), overlap: make(chan struct{})}
}

func (s *slowTPM) Send(cmd []byte) ([]byte, error) {
	select {
	case s.busy <- struct{}{}:
	default:
		close(s.overlap)
		return nil, errors.New("overlapping command")
	}
	defer func() { <-s.busy }()
	s.started <- cmd
	<-s.release
	return append([]byte("rsp:"), cmd...), nil
}

func TestShareIdempotent(t *testing.T) {
	l := Share(newSlowTPM())
	if Share(l) != l {
		t.Fatal("Share wrapped a *SharedTPM again")
	}
}

// TestSharedAbandon: a caller whose context ends while the TPM runs its
// command returns at once; the TPM stays locked until the command is done,
// so the next command does not overlap it.
func TestSharedAbandon(t *testing.T) {
	s := newSlowTPM()
	l := Share(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.do(ctx, func(t transport.TPM) error {
			if _, err := t.Send([]byte("a")); err == nil {
				return errors.New("abandoned command returned no error")
			}
			// The session refuses to send more once a command was abandoned.
			if _, err := t.Send([]byte("b")); !errors.Is(err, errAbandoned) {
				return err
			}
			return context.Canceled
		})
	}()
	<-s.started // "a" runs
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("do: %v", err)
	}
	// The next command waits for "a".
	next := make(chan error, 1)
	go func() {
		_, err := l.Send([]byte("c"))
		next <- err
	}()
	select {
	case err := <-next:
		t.Fatalf("Send ran while the abandoned command held the TPM: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.release <- struct{}{} // "a" completes
	if got := <-s.started; string(got) != "c" {
		t.Fatalf("next command %q", got)
	}
	s.release <- struct{}{}
	if err := <-next; err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.overlap:
		t.Fatal("commands overlapped")
	default:
	}
}

// TestSharedWait: a caller waiting for a busy TPM gives up with its context.
func TestSharedWait(t *testing.T) {
	s := newSlowTPM()
	l := Share(s)
	go l.Send([]byte("a"))
	<-s.started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := l.do(ctx, func(transport.TPM) error { return errors.New("ran while the TPM was busy") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	s.release <- struct{}{}
	// Without a deadline the session sends synchronously.
	if err := l.do(context.Background(), func(t transport.TPM) error {
		go func() { <-s.started; s.release <- struct{}{} }()
		rsp, err := t.Send([]byte("b"))
		if string(rsp) != "rsp:b" {
			return errors.New("wrong response")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
