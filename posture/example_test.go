package posture_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// An agent runtime records every posture change in a Tracker. Evidence
// (for example postauth/softeat with AttesterOptions.Posture set to the
// Tracker) then carries the log and the register value, and a verifier
// replays one against the other.
func ExampleTracker() {
	ctx := context.Background()
	tr, err := posture.NewTracker(nil) // a SHA-256 software register
	if err != nil {
		log.Fatal(err)
	}
	cancel := tr.Subscribe(func(head []byte) {
		fmt.Printf("posture changed, head %x...\n", head[:4])
	})
	defer cancel()

	_ = tr.SetModel(ctx, posture.Model{Name: "gpt-x", Version: "2025-06", Digest: posture.DigestOf([]byte("weights"))})
	_ = tr.EnableTool(ctx, posture.Tool{Name: "search", Digest: posture.DigestOf([]byte("search"))})
	_ = tr.SetFlag(ctx, "fips_mode", "on")

	// What a verifier does with the log and the register value.
	snap, err := tr.Snapshot()
	if err != nil {
		log.Fatal(err)
	}
	st, err := posture.Verify(snap.Log, snap.Head)
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range st.Components() {
		fmt.Println("measured:", c.ID.Name)
	}
	// Output:
	// posture changed, head eeeec833...
	// posture changed, head 9f3fa4b8...
	// posture changed, head 20616c99...
	// measured: model/gpt-x
	// measured: tool/search
	// measured: flag/fips_mode
}

// A relying party checks the posture against its policy. Every violation
// is listed, naming the items but no Evidence bytes.
func ExamplePolicy_Check() {
	pol, err := posture.ParsePolicy([]byte(`
tools:
  deny: [shell]
permissions:
  payments: [read]
flags:
  fips_mode: "on"
`), "yaml")
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	tr, _ := posture.NewTracker(nil)
	_ = tr.EnableTool(ctx, posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))})
	_ = tr.Grant(ctx, "payments", "read", "write")
	_ = tr.SetFlag(ctx, "fips_mode", "off")
	for _, v := range pol.Check(tr.State()) {
		fmt.Println(v)
	}

	_ = tr.DisableTool(ctx, "shell")
	_ = tr.Grant(ctx, "payments", "read")
	_ = tr.SetFlag(ctx, "fips_mode", "on")
	fmt.Println("violations after the fix:", len(pol.Check(tr.State())))
	// Output:
	// tool:shell forbidden
	// permission:payments scope "write" exceeds ceiling
	// flag:fips_mode want "on" got "off"
	// violations after the fix: 0
}

// Policy.Appraise is the relying party's hook after verification: it takes
// the verified Result (never raw Evidence) and returns a *postauth.Error the
// HTTP middleware maps to a 403 naming the violations.
func ExamplePolicy_Appraise() {
	pol, err := posture.LoadPolicy("testdata/policy.yaml")
	if err != nil {
		log.Fatal(err)
	}
	var appraise func(context.Context, *postauth.Result) error = pol.Appraise

	var res *postauth.Result // from postauth.Verify or a Requester
	if err := appraise(context.Background(), res); err != nil {
		var pe *postauth.Error
		if errors.As(err, &pe) && pe.Code == postauth.CodePolicyDenied {
			fmt.Println("denied:", pe.Violations)
		}
	}
}
