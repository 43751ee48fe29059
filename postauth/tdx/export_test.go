package tdx

// ForgetSigners drops the Verifier's memory of verified quote signers,
// so that the next quote goes through go-tdx-guest's full verification
// (benchmarks of the first quote of a platform).
func (v *Verifier) ForgetSigners() {
	v.mu.Lock()
	clear(v.signers)
	v.mu.Unlock()
}
