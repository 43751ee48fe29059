package tpm

import (
	"math/big"
	"testing"
)

// SetMaxData pretends the TPM's largest digest is n bytes (a TPM without
// SHA-384 reports 32), to test the hashed-binder fallback on the simulator.
func SetMaxData(a *Attester, n int) { a.maxData = n }

// ECDSASignature parses an ECDSA/SHA-256 TPMT_SIGNATURE into r and s.
func ECDSASignature(tb testing.TB, sig []byte) (r, s *big.Int) {
	tb.Helper()
	rb, sb, err := ecdsaSignature(sig)
	if err != nil {
		tb.Fatal(err)
	}
	return new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb)
}

// ParseKeyPublic is parseKeyPublic (the certified key's public area).
var ParseKeyPublic = parseKeyPublic

// MachineIDOf is machineIDOf (the machine identifier of an AK
// certificate).
var MachineIDOf = machineIDOf

// DERElement is derElement (an EK certificate read from NV).
var DERElement = derElement

// ClearCaches empties the Verifier's caches of trust decisions and key
// hashes (cold-path benchmarks and tests).
func ClearCaches(v *Verifier) {
	clear(v.akCache.m)
	clear(v.keyCache.m)
}
