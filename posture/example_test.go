package posture_test

import (
	"context"
	"fmt"
	"log"

	"github.com/reattest/reattest/posture"
)

// An agent runtime records every posture change in a Tracker. Evidence
// (for example postauth/softeat with softeat.WithPosture(tracker)) then
// carries the log and the register value, and the relying party replays
// one against the other.
func ExampleTracker() {
	ctx := context.Background()
	tr, err := posture.NewTracker() // a SHA-256 software register
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

	// What the relying party does with the log and the register value.
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
	tr, _ := posture.NewTracker()
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

// Evaluate is Check for a policy that may be malformed (for example
// loaded from a file someone edited): a broken policy is an error, never
// a pass. postauth.AppraisePosture uses it on the posture of a verified
// attestation.
func ExamplePolicy_Evaluate() {
	pol, err := posture.LoadPolicy("testdata/policy.yaml")
	if err != nil {
		log.Fatal(err)
	}
	// No posture at all: the policy requires one.
	vs, err := pol.Evaluate(nil)
	fmt.Println(vs, err)

	broken := &posture.Policy{Templates: []string{"sha-265:00"}}
	_, err = broken.Evaluate(nil)
	fmt.Println("broken policy refused:", err != nil)
	// Output:
	// [posture missing] <nil>
	// broken policy refused: true
}
