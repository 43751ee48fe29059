package postauth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A verdict that comes when the caller's context has already ended is not
// used, even when both are ready at once (the select would pick either).
func TestCallBoundedDropsLateResult(t *testing.T) {
	for range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := callBounded(ctx, func() (int, error) {
			cancel() // the caller goes away just as the verdict arrives
			return 1, nil
		})
		if err == nil {
			t.Fatal("a verdict that arrived after the context ended was used")
		}
	}
}

// lateTimer is a context whose deadline has passed but whose timer has not
// fired yet (Err nil, Done open): what a starved runtime shows for a while.
type lateTimer struct {
	context.Context
	deadline time.Time
}

func (c lateTimer) Deadline() (time.Time, bool) { return c.deadline, true }

// A verdict that comes after the deadline is not a pass even when the
// context's timer is late: callBounded judges by the clock.
func TestContextErrJudgesByTheClock(t *testing.T) {
	past := lateTimer{context.Background(), time.Now().Add(-time.Millisecond)}
	if err := ContextErr(past); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ContextErr of a passed deadline = %v", err)
	}
	if _, err := callBounded(past, func() (int, error) { return 1, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a pass after the deadline came through: %v", err)
	}
	future := lateTimer{context.Background(), time.Now().Add(time.Hour)}
	if err := ContextErr(future); err != nil {
		t.Fatalf("ContextErr before the deadline = %v", err)
	}
	if v, err := callBounded(future, func() (int, error) { return 1, nil }); err != nil || v != 1 {
		t.Fatalf("a pass before the deadline: %v, %v", v, err)
	}
	if err := ContextErr(context.Background()); err != nil {
		t.Fatalf("ContextErr without a deadline = %v", err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ContextErr(canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("ContextErr of a canceled context = %v", err)
	}
}
