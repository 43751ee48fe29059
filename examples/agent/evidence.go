package main

import (
	"crypto"
	"crypto/ecdsa"
	"fmt"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
	"github.com/reattest/reattest/posture"
)

// evidence is how the agent attests and how the gateway verifies the
// agent's Evidence (-attester): software EAT signed with the embedded demo
// attestation key (the default), or TDX quotes from a simulated TD under a
// test PKI made at run time (tdx-test). The gateway's own attestation (the
// server-attests step) is software EAT either way.
type evidence interface {
	// label names the Evidence in the transcript's header, short in its
	// steps.
	label() string
	short() string
	// newTracker returns the agent's posture tracker over the register
	// the Evidence covers.
	newTracker() (*posture.Tracker, error)
	// attester returns the agent's attester, covering tr's posture.
	attester(key *ecdsa.PrivateKey, tr *posture.Tracker) (postauth.Attester, error)
	// verifier returns the gateway's verifier of the agent's Evidence
	// (posture required).
	verifier(agentPub *ecdsa.PublicKey) (postauth.Verifier, error)
}

// newEvidence returns the evidence named by -attester for -mode mode.
func newEvidence(name, mode string) (evidence, error) {
	switch name {
	case "", "software":
		return softwareEvidence{}, nil
	case "tdx-test":
		if mode != "demo" {
			// The simulated TD and the verifier that trusts its test root
			// share a PKI made at run time, in one process.
			return nil, fmt.Errorf("-attester tdx-test runs in -mode demo only")
		}
		env, err := tdxtest.NewDemo(tdx.WithRequirePosture(true))
		if err != nil {
			return nil, fmt.Errorf("TDX test platform: %w", err)
		}
		return &tdxTestEvidence{env: env}, nil
	}
	return nil, fmt.Errorf("unknown -attester %q (software, tpm or tdx-test)", name)
}

// softwareEvidence is software EAT (postauth/softeat): not hardware-backed.
type softwareEvidence struct{}

func (softwareEvidence) label() string { return "software EAT (not hardware-backed)" }
func (softwareEvidence) short() string { return "software EAT" }

func (softwareEvidence) newTracker() (*posture.Tracker, error) { return posture.NewTracker() }

func (softwareEvidence) attester(key *ecdsa.PrivateKey, tr *posture.Tracker) (postauth.Attester, error) {
	return softeat.NewAttester(key, softeat.WithPosture(tr))
}

func (softwareEvidence) verifier(agentPub *ecdsa.PublicKey) (postauth.Verifier, error) {
	return softeat.NewVerifier([]crypto.PublicKey{agentPub}, softeat.RequirePosture())
}

// tdxTestEvidence is Intel TDX quote Evidence (postauth/tdx) from a
// simulated TD (package tdxtest): quotes signed by a test PKI shaped like
// Intel's, with matching test collateral, the posture in the simulated
// RTMR3. NOT hardware: the gateway's verifier trusts the test root, and
// its Results say so (Format tdx-quote-test-root, HardwareBacked false).
type tdxTestEvidence struct {
	env *tdxtest.Env
}

func (*tdxTestEvidence) label() string {
	return "Intel TDX quotes from a simulated TD under a test PKI (NOT hardware)"
}
func (*tdxTestEvidence) short() string { return "a TDX quote (simulated TD, test PKI)" }

func (e *tdxTestEvidence) newTracker() (*posture.Tracker, error) {
	return posture.NewTracker(posture.WithRegister(e.env.Platform.RTMR(tdx.PostureRTMR)))
}

func (e *tdxTestEvidence) attester(_ *ecdsa.PrivateKey, tr *posture.Tracker) (postauth.Attester, error) {
	return tdx.NewAttester(e.env.Platform, tdx.WithPosture(tr))
}

func (e *tdxTestEvidence) verifier(*ecdsa.PublicKey) (postauth.Verifier, error) {
	return e.env.Verifier, nil
}
