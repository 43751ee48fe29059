package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/posture"
)

var update = flag.Bool("update", false, "regenerate testdata/golden.json with the TPM simulator (needs cgo)")

const goldenPath = "testdata/golden.json"

// golden is real Evidence produced by the TPM simulator (regenerate with
// go test -run TestGoldenUpdate -update), so that the verifier and the fuzz
// target run on genuine quotes even without cgo.
type golden struct {
	Name     string `json:"name"`
	Binder   string `json:"binder"`
	AK       string `json:"ak"`
	Evidence string `json:"evidence"`
}

// goldenBinders are the fixed binders of the golden Evidence.
func goldenBinders() map[string][]byte {
	s256 := sha256.Sum256([]byte("reattest tpm golden"))
	s384 := sha512.Sum384([]byte("reattest tpm golden"))
	return map[string][]byte{"sha256": s256[:], "sha384": s384[:], "posture": s256[:]}
}

type goldenCase struct {
	name   string
	ch     postauth.Challenge
	ak     []byte
	ev     postauth.Evidence
	decode *tpm.Evidence
}

func loadGolden(tb testing.TB) []goldenCase {
	tb.Helper()
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		tb.Fatal(err)
	}
	var gs []golden
	if err := json.Unmarshal(b, &gs); err != nil {
		tb.Fatal(err)
	}
	var out []goldenCase
	for _, g := range gs {
		binder, err1 := hex.DecodeString(g.Binder)
		ak, err2 := hex.DecodeString(g.AK)
		ev, err3 := hex.DecodeString(g.Evidence)
		if err1 != nil || err2 != nil || err3 != nil {
			tb.Fatalf("golden %s: bad hex", g.Name)
		}
		d, err := tpm.DecodeEvidence(ev)
		if err != nil {
			tb.Fatalf("golden %s: %v", g.Name, err)
		}
		out = append(out, goldenCase{
			name: g.Name, ch: postauth.Challenge{Binder: binder, KeyHash: []byte("kh")}, ak: ak,
			ev: postauth.Evidence{Type: tpm.MediaType, Value: ev}, decode: d,
		})
	}
	if len(out) != len(goldenBinders()) {
		tb.Fatalf("%d golden cases, want %d", len(out), len(goldenBinders()))
	}
	return out
}

func writeGolden(tb testing.TB, gs []golden) {
	tb.Helper()
	b, err := json.MarshalIndent(gs, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(goldenPath, append(b, '\n'), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// TestGolden verifies the recorded simulator Evidence.
func TestGolden(t *testing.T) {
	for _, g := range loadGolden(t) {
		t.Run(g.name, func(t *testing.T) {
			var opts []tpm.VerifierOption
			if g.name == "posture" {
				opts = append(opts, tpm.RequirePosture())
			}
			v, err := tpm.NewVerifier(append([]tpm.VerifierOption{tpm.WithPinnedAKs(g.ak), tpm.AllowSoftwareKey()}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			app, err := v.Verify(context.Background(), g.ch, g.ev)
			if err != nil {
				t.Fatal(err)
			}
			name := sha256.Sum256(g.ak)
			if app.HardwareBacked || !bytes.Equal(app.MachineID, append([]byte{0, 0x0b}, name[:]...)) ||
				!bytes.Equal(app.Nonce, g.ch.Binder) || !bytes.Equal(app.KeyHash, g.ch.KeyHash) {
				t.Fatalf("appraisal %+v", app)
			}
			// The attestation key id: SHA-256 of the AK's SPKI, 16 bytes.
			akPub, _, err := tpm.ValidateAKPublic(g.ak)
			if err != nil {
				t.Fatal(err)
			}
			spki, _ := x509.MarshalPKIXPublicKey(akPub)
			if kid := sha256.Sum256(spki); !bytes.Equal(app.AttestationKeyID, kid[:16]) {
				t.Fatalf("attestation key id %x, want %x", app.AttestationKeyID, kid[:16])
			}
			// Hardware-backed only with a boot-state policy.
			vb, err := tpm.NewVerifier(append([]tpm.VerifierOption{tpm.WithPinnedAKs(g.ak), tpm.AllowSoftwareKey(),
				tpm.WithPCRPolicy(map[int][][]byte{0: {g.decode.PCRs[0]}})}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			if app, err := vb.Verify(context.Background(), g.ch, g.ev); err != nil || !app.HardwareBacked {
				t.Fatalf("with a boot policy: %v", err)
			}
			if (app.PostureLog != nil) != (g.name == "posture") {
				t.Fatal("posture presence")
			}
			// The recorded posture log replays to the quoted PCR 23 (the
			// relying party's check).
			if app.PostureLog != nil {
				if _, err := posture.VerifyRegister(crypto.SHA256, app.PostureLog, app.PostureHead); err != nil {
					t.Fatalf("posture log: %v", err)
				}
				if !bytes.Equal(app.PostureHead, g.decode.PCRs[tpm.DefaultPosturePCR]) {
					t.Fatal("posture head is not the quoted PCR 23")
				}
			}
			at, err := tpm.ParseAttest(g.decode.Quote)
			if err != nil {
				t.Fatal(err)
			}
			if at.Clock == 0 || !at.Safe {
				t.Fatalf("clock info %+v", at)
			}
			// Encoding is deterministic: decode then encode gives the
			// recorded bytes.
			re, err := g.decode.Marshal()
			if err != nil || !bytes.Equal(re, g.ev.Value) {
				t.Fatal("re-encoding differs")
			}
		})
	}
}
