package tdx_test

import (
	"context"
	"crypto"
	"math/big"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
)

// verifyOnce verifies a fresh quote of env's platform (the same signer
// every time) and returns the error.
func verifyOnce(t *testing.T, env *tdxtest.Env) error {
	t.Helper()
	ch := challenge(crypto.SHA256)
	_, err := env.Verifier.Verify(context.Background(), ch, attest(t, env.Attester, ch))
	return err
}

// setCollateral makes env's source serve collateral cfg for env's
// platform from now on.
func setCollateral(t *testing.T, env *tdxtest.Env, cfg *tdxtest.CollateralConfig) {
	t.Helper()
	if err := env.Source.Set(env.CA.Collateral(t, env.Platform, cfg)); err != nil {
		t.Fatal(err)
	}
}

// TestKnownSignerRevoked: a signer verified once (and remembered), whose
// PCK certificate is then revoked by a new CRL, is refused at its next
// quote: revocation is checked on every quote against the current CRLs,
// never only when the signer is first verified. The same holds for the
// revocation of its PCK CA.
func TestKnownSignerRevoked(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(env *tdxtest.Env) *tdxtest.CollateralConfig
	}{
		{"pck", func(env *tdxtest.Env) *tdxtest.CollateralConfig {
			return &tdxtest.CollateralConfig{CRLNumber: 2, RevokedPCKs: []*big.Int{env.Platform.Revoke()}}
		}},
		{"pck-ca", func(env *tdxtest.Env) *tdxtest.CollateralConfig {
			return &tdxtest.CollateralConfig{CRLNumber: 2, RevokePlatformCA: true}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tdxtest.NewEnv(t, nil)
			for range 2 {
				if err := verifyOnce(t, env); err != nil {
					t.Fatal(err)
				}
			}
			if n := env.Verifier.FullVerifications(); n != 1 {
				t.Fatalf("%d full verifications for two quotes of one signer, want 1 (the signer is remembered)", n)
			}
			setCollateral(t, env, tc.cfg(env))
			for range 2 {
				postauthtest.WantError(t, verifyOnce(t, env), postauth.CodeInvalid, postauth.ReasonPCKRevoked)
			}
		})
	}
}

// TestKnownSignerBoundToCollateral: what the Verifier remembers about a
// signer is bound to the collateral it was checked against. New
// collateral (here a newer CRL that revokes nothing of this platform)
// voids it: the next quote goes through go-tdx-guest's full verification
// again, once, and the signer is then remembered under the new
// collateral.
func TestKnownSignerBoundToCollateral(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	for range 2 {
		if err := verifyOnce(t, env); err != nil {
			t.Fatal(err)
		}
	}
	if n := env.Verifier.FullVerifications(); n != 1 {
		t.Fatalf("%d full verifications, want 1", n)
	}
	setCollateral(t, env, &tdxtest.CollateralConfig{CRLNumber: 2, RevokedPCKs: []*big.Int{big.NewInt(424242)}})
	for range 2 {
		if err := verifyOnce(t, env); err != nil {
			t.Fatal(err)
		}
	}
	if n := env.Verifier.FullVerifications(); n != 2 {
		t.Fatalf("%d full verifications after new collateral, want 2 (one more, then remembered again)", n)
	}
}

// TestCRLRollbackRefused: once the Verifier has accepted a CRL, collateral
// with an older CRL of the same issuer (a collateral source rolled back to
// the CRL from before a revocation, still before its nextUpdate) is
// refused, so the revoked PCK does not pass again: collateral_invalid
// (CodeUnavailable), never a pass.
func TestCRLRollbackRefused(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	if err := verifyOnce(t, env); err != nil {
		t.Fatal(err)
	}
	old := env.Collateral // CRL number 1, nothing revoked
	setCollateral(t, env, &tdxtest.CollateralConfig{CRLNumber: 2, RevokedPCKs: []*big.Int{env.Platform.Revoke()}})
	postauthtest.WantError(t, verifyOnce(t, env), postauth.CodeInvalid, postauth.ReasonPCKRevoked)
	// The whole collateral rolled back.
	if err := env.Source.Set(old); err != nil {
		t.Fatal(err)
	}
	postauthtest.WantError(t, verifyOnce(t, env), postauth.CodeUnavailable, postauth.ReasonCollateralInvalid)
	// The PCK CRL alone rolled back (the rest newer).
	rolled := env.CA.Collateral(t, env.Platform, &tdxtest.CollateralConfig{CRLNumber: 3})
	rolled.PCKCRL = old.PCKCRL
	if err := env.Source.Set(rolled); err != nil {
		t.Fatal(err)
	}
	postauthtest.WantError(t, verifyOnce(t, env), postauth.CodeUnavailable, postauth.ReasonCollateralInvalid)
	// The root CA CRL alone rolled back.
	rolled = env.CA.Collateral(t, env.Platform, &tdxtest.CollateralConfig{CRLNumber: 3, RevokedPCKs: []*big.Int{env.Platform.Revoke()}})
	rolled.RootCACRL = old.RootCACRL
	if err := env.Source.Set(rolled); err != nil {
		t.Fatal(err)
	}
	postauthtest.WantError(t, verifyOnce(t, env), postauth.CodeUnavailable, postauth.ReasonCollateralInvalid)
	// Newer collateral passes again (the PCK is not revoked in it).
	setCollateral(t, env, &tdxtest.CollateralConfig{CRLNumber: 4})
	if err := verifyOnce(t, env); err != nil {
		t.Fatal(err)
	}
	// A separate Verifier has seen no CRL: the old collateral is fine
	// for it (rollback protection is per Verifier, from what it saw).
	v, err := tdx.NewVerifier(tdxtest.NewSource(t, old), tdx.WithTrustedRoots(env.CA.Roots()...))
	if err != nil {
		t.Fatal(err)
	}
	ch := challenge(crypto.SHA256)
	if _, err := v.Verify(context.Background(), ch, attest(t, env.Attester, ch)); err != nil {
		t.Fatal(err)
	}
}
