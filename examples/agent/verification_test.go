package main

import (
	"bytes"
	"crypto"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/verifier"
)

// runDemo runs the demo with args and checks that every step went as
// expected and that the transcript has each of want.
func runDemo(t *testing.T, args []string, want ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(args, &out); err != nil {
		t.Fatalf("demo %v failed: %v\n%s", args, err, out.String())
	}
	s := out.String()
	for _, w := range append(want,
		"POST /v1/payments -> 403", "violations: tool:shell forbidden", // the posture policy applies to every model
		"stolen TLS key -> 401", "all steps went as expected") {
		if !strings.Contains(s, w) {
			t.Errorf("transcript of %v lacks %q\n%s", args, w, s)
		}
	}
	if strings.Contains(s, "UNEXPECTED") {
		t.Error(s)
	}
	return s
}

var appraisals = regexp.MustCompile(`verifier service \(in process, [^)]*\): (\d+) Evidence appraisals`)

// appraised is the number of appraisals the in-process verifier reported.
func appraised(t *testing.T, transcript string) int {
	t.Helper()
	m := appraisals.FindStringSubmatch(transcript)
	if m == nil {
		t.Fatalf("no verifier report in the transcript\n%s", transcript)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// The two remote models, with the verifier service in process: the whole
// story passes, and every attestation went through the verifier (three
// attestations: two payments, one config change; the denied payment's too).
func TestDemoRemoteVerification(t *testing.T) {
	t.Run("background check", func(t *testing.T) {
		s := runDemo(t, []string{"-verification", "background"},
			"verification: background check", "-> attested: answered the challenge with software EAT")
		if n := appraised(t, s); n < 4 {
			t.Errorf("the verifier appraised %d Evidence, want at least 4 (every attestation)", n)
		}
	})
	t.Run("passport", func(t *testing.T) {
		s := runDemo(t, []string{"-verification", "passport"},
			"verification: passport", "-> attested: answered the challenge with an EAR passport")
		if n := appraised(t, s); n < 4 {
			t.Errorf("the verifier appraised %d Evidence, want at least 4 (every attestation)", n)
		}
	})
	t.Run("local", func(t *testing.T) {
		s := runDemo(t, []string{"-verification", "local"}, "verification: local")
		if appraisals.MatchString(s) {
			t.Error("a verifier service ran in the local model")
		}
	})
}

// The verifier as a separate service (what `go run ./cmd/reattest-verifier
// -softeat-key assets/agent-attestation-pub.pem` runs), given by -verifier,
// with its key pinned from a JWK file or fetched from its well-known
// endpoint.
func TestDemoExternalVerifier(t *testing.T) {
	agentPub, err := loadAttestationPub("", fileAgentAttPub)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := softeat.NewVerifier([]crypto.PublicKey{agentPub}, softeat.RequirePosture())
	if err != nil {
		t.Fatal(err)
	}
	key, err := verifier.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := verifier.NewService(key, verifier.SoftEAT(sv))
	if err != nil {
		t.Fatal(err)
	}
	var evidence atomic.Int64
	srv, err := verifier.Start(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, ear.SessionPath) {
			evidence.Add(1)
		}
		svc.ServeHTTP(w, r)
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	keyFile := filepath.Join(t.TempDir(), "ear-key.jwk")
	if err := os.WriteFile(keyFile, svc.PublicJWK(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"background, pinned key", []string{"-verification", "background", "-verifier", srv.URL(), "-verifier-key", keyFile}},
		{"passport, pinned key", []string{"-verification", "passport", "-verifier", srv.URL(), "-verifier-key", keyFile}},
		{"passport, key fetched", []string{"-verification", "passport", "-verifier", srv.URL()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := evidence.Load()
			s := runDemo(t, tc.args, srv.URL())
			if appraisals.MatchString(s) {
				t.Error("an in-process verifier ran although -verifier was given")
			}
			if evidence.Load()-before < 4 {
				t.Errorf("the external verifier appraised %d Evidence, want at least 4", evidence.Load()-before)
			}
		})
	}
	// A verifier key that is not the service's: no attestation passes.
	other, _ := verifier.GenerateKey()
	jwk, err := ear.MarshalJWK(&other.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.jwk")
	if err := os.WriteFile(wrong, jwk, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-verification", "background", "-verifier", srv.URL(), "-verifier-key", wrong}, &bytes.Buffer{}); err == nil {
		t.Fatal("the demo passed with a verifier key the gateway should not trust")
	}
}

func TestUnknownVerification(t *testing.T) {
	if err := run([]string{"-verification", "nope"}, &bytes.Buffer{}); err == nil {
		t.Fatal("unknown verification model accepted")
	}
	if err := run([]string{"-mode", "agent", "-verification", "passport"}, &bytes.Buffer{}); err == nil {
		t.Fatal("a passport agent without a verifier accepted")
	}
	// The verifier service appraises software EAT: TDX quotes stay local.
	if err := run([]string{"-replicas", "2", "-verification", "passport"}, &bytes.Buffer{}); err == nil {
		t.Fatal("the replicas story with a verifier service accepted (it would not use it)")
	}
	for _, att := range []string{"tdx-test", "tpm"} {
		if err := run([]string{"-attester", att, "-verification", "background"}, &bytes.Buffer{}); err == nil {
			t.Fatalf("remote verification of -attester %s accepted", att)
		}
	}
}
