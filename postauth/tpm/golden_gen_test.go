//go:build cgo

package tpm_test

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/tpm"
)

// TestGoldenUpdate regenerates testdata/golden.json from the simulator
// when run with -update.
func TestGoldenUpdate(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate the golden Evidence")
	}
	ctx := context.Background()
	_, tr := postureSetup(t)
	changePosture(t, tr, 1)
	plain := newAttester(t)
	withPosture := newAttester(t, tpm.WithPosture(tr))
	binders := goldenBinders()
	var gs []golden
	for _, name := range []string{"sha256", "sha384", "posture"} {
		att := plain
		if name == "posture" {
			att = withPosture
		}
		ev, err := att.Attest(ctx, postauth.Challenge{Binder: binders[name]})
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, golden{Name: name, Binder: hex.EncodeToString(binders[name]), AK: hex.EncodeToString(att.AKPublic()), Evidence: hex.EncodeToString(ev.Value)})
	}
	writeGolden(t, gs)
}
