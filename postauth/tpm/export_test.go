package tpm

// SetMaxData pretends the TPM's largest digest is n bytes (a TPM without
// SHA-384 reports 32), to test the hashed-binder fallback on the simulator.
func SetMaxData(a *Attester, n int) { a.maxData = n }
