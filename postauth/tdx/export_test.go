package tdx

// ForgetSigners drops the Verifier's memory of verified quote signers,
// so that the next quote goes through go-tdx-guest's full verification
// (benchmarks of the first quote of a platform).
func (v *Verifier) ForgetSigners() { v.signers.clear() }

// FullVerifications is the number of go-tdx-guest verifications the
// Verifier ran: one per signer, and again after its collateral changed.
func (v *Verifier) FullVerifications() int64 { return v.fullVerifications.Load() }
