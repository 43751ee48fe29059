package tdx_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
	"github.com/reattest/reattest/posture"
)

// A TD attests with its posture in RTMR3; the verifier checks the quote,
// the collateral and the policy, and reports RTMR3 and the posture log
// for the relying party to replay. The platform is
// simulated (package tdxtest): the result is labelled as coming from a
// test root, not hardware.
func Example() {
	env, err := tdxtest.NewDemo(tdx.WithPolicy(&tdx.Policy{TCB: tdx.TCBPolicy{Warn: []string{tdx.StatusSWHardeningNeeded}}}))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	tracker, err := posture.NewTracker(posture.WithRegister(env.Platform.RTMR(tdx.PostureRTMR)))
	if err != nil {
		panic(err)
	}
	if err := tracker.EnableTool(ctx, posture.Tool{Name: "search", Digest: posture.DigestOf([]byte("search v1"))}); err != nil {
		panic(err)
	}
	att, err := tdx.NewAttester(env.Platform, tdx.WithPosture(tracker))
	if err != nil {
		panic(err)
	}

	// In a real exchange, postauth computes the Challenge from the
	// connection (binder = Hash(SPKI || exporter)).
	binder := sha256.Sum256([]byte("connection binder"))
	keyHash := sha256.Sum256([]byte("authenticator SPKI"))
	ch := postauth.Challenge{Binder: binder[:], KeyHash: keyHash[:], Hash: crypto.SHA256}
	ev, err := att.Attest(ctx, ch)
	if err != nil {
		panic(err)
	}
	app, err := env.Verifier.Verify(ctx, ch, ev)
	if err != nil {
		panic(err)
	}
	fmt.Println(ev.Type)
	fmt.Println(app.Format, "hardware-backed:", app.HardwareBacked)
	fmt.Println("posture head is RTMR3:", len(app.PostureHead) == 48)
	// Output:
	// application/vnd.reattest.tdx-quote+cbor
	// tdx-quote-test-root hardware-backed: false
	// posture head is RTMR3: true
}
