package postauth

import (
	"context"
	"testing"
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
