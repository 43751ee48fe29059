//go:build cgo

package tpm_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/postauth/tpm/enroll"
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

// TestChainGoldenUpdate regenerates testdata/chain.json from the
// simulator when run with -update.
func TestChainGoldenUpdate(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate the golden trust-chain Evidence")
	}
	mfr, _ := trustSetup(t)
	provision(t)
	// A long-lived CA, so that the golden chain verifies for years (also
	// with go-tpm-tools' VerifyAKCert, which checks at the current time).
	caCert, caKey, err := enroll.NewRoot("reattest golden enrollment CA", 25*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := enroll.New(caCert, caKey, enroll.WithEKRoots(mfr.Root()), enroll.WithValidity(20*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	binder := chainBinder()
	att := newAttester(t, tpm.WithCertifiedKey(key), tpm.IncludeEKCertificate())
	if err := att.Enroll(context.Background(), ca); err != nil {
		t.Fatal(err)
	}
	ev, err := att.Attest(context.Background(), postauth.Challenge{Binder: binder, Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	kh := sha256.Sum256(spki)
	g := chainGolden{
		Time:      time.Now().UTC().Truncate(time.Second),
		CARoot:    hex.EncodeToString(caCert.Raw),
		EKRoot:    hex.EncodeToString(mfr.Root().Raw),
		Binder:    hex.EncodeToString(binder),
		MachineID: hex.EncodeToString(machineID(t)),
		KeyHash:   hex.EncodeToString(kh[:]),
		Evidence:  hex.EncodeToString(ev.Value),
	}
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(chainGoldenPath, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
