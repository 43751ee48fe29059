package middleware

import (
	"context"
	"testing"

	"github.com/reattest/reattest/postauth"
)

// An appraisal that passes when the request's context has already ended is
// not a pass, even when both are ready at once.
func TestAppraiseDropsLatePass(t *testing.T) {
	for range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		x := &exchange{g: &Guard{}, rt: &route{Route: Route{Appraise: func(context.Context, *postauth.Result) error {
			cancel() // the client goes away just as the hook passes
			return nil
		}}}}
		if err := x.appraise(ctx, nil); err == nil {
			t.Fatal("an appraisal that passed after the context ended was used")
		}
	}
}
