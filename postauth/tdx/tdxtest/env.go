package tdxtest

import (
	"fmt"
	"time"

	"github.com/reattest/reattest/postauth/tdx"
)

// Env is a complete TDX test setup: a test CA, one simulated platform,
// its collateral served from memory, an Attester quoting on the platform
// (without posture) and a Verifier that trusts the test root. Results
// from it report Format tdx.FormatTestRoot and HardwareBacked false.
type Env struct {
	CA         *CA
	Platform   *Platform
	Collateral tdx.RawCollateral
	Source     *Source
	Attester   *tdx.Attester
	Verifier   *tdx.Verifier
}

// NewEnv returns an Env for a platform configured by cfg (nil: the
// defaults), with extra options for the Verifier (after the test root).
func NewEnv(tb TB, cfg *PlatformConfig, opts ...tdx.VerifierOption) *Env {
	tb.Helper()
	e, err := newEnv(cfg, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// NewDemo is NewEnv for programs (the examples' "tdx-test" attester): the
// default platform and verifier, errors instead of test failures. To
// track posture, build the attester again over the platform's RTMR3:
//
//	env, err := tdxtest.NewDemo()
//	tracker, err := posture.NewTracker(posture.WithRegister(env.Platform.RTMR(tdx.PostureRTMR)))
//	att, err := tdx.NewAttester(env.Platform, tdx.WithPosture(tracker))
//	// env.Verifier verifies att's Evidence (test root: not hardware)
func NewDemo(opts ...tdx.VerifierOption) (*Env, error) {
	return newEnv(nil, opts)
}

func newEnv(cfg *PlatformConfig, opts []tdx.VerifierOption) (*Env, error) {
	ca, err := newCA(time.Now())
	if err != nil {
		return nil, err
	}
	p, err := ca.newPlatform(cfg)
	if err != nil {
		return nil, err
	}
	raw, err := ca.collateral(p, nil)
	if err != nil {
		return nil, err
	}
	src := &Source{}
	if err := src.Set(raw); err != nil {
		return nil, err
	}
	att, err := tdx.NewAttester(p)
	if err != nil {
		return nil, err
	}
	v, err := tdx.NewVerifier(src, append([]tdx.VerifierOption{tdx.WithTrustedRoots(ca.Roots()...)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("tdxtest: verifier: %w", err)
	}
	return &Env{CA: ca, Platform: p, Collateral: raw, Source: src, Attester: att, Verifier: v}, nil
}
