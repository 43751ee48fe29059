// Package tdx is the Intel TDX quote Evidence format for reattest: a TDX
// quote (version 4, or version 5 with a TDX 1.0 or 1.5 body) whose
// REPORTDATA is the connection's binder, verified with go-tdx-guest
// against Intel's SGX root, Intel's collateral (TCB info, QE identity,
// CRLs) and the relying party's TCB status and measurement policy, with
// the agent's posture log extended into RTMR3. docs/tdx.md specifies the
// profile.
//
// # What a verified quote guarantees
//
// When the [Verifier] accepts Evidence from a quote whose PCK chain ends
// at Intel's SGX Root CA (Result Format "tdx-quote", HardwareBacked):
//
//   - the quote was signed by a quoting enclave key that Intel's quoting
//     enclave, on a genuine Intel platform whose PCK certificate Intel
//     issued and has not revoked, vouched for; the platform's TCB (CPU
//     microcode, TDX module, quoting enclave) has a status the TCB policy
//     accepts, according to Intel's current signed collateral;
//   - the TD's REPORTDATA is this connection's binder, Hash(SPKI ||
//     TLS-Exporter("Attestation", context, 32)), zero-padded: the TD
//     quoted for this request on this connection, and the binder covers
//     the authenticator key, so the Verifier reports the Challenge's key
//     hash as the key the Evidence vouches for (implied by the binder; the
//     format carries no separate key hash);
//   - the reported MRTD, RTMRs, MRCONFIGID, MROWNER, MROWNERCONFIG, TD
//     attributes and XFAM are the TD's, and satisfy the measurement
//     policy; the TD is not a debug TD unless the policy allows it;
//   - with posture, the posture log replays to the quoted RTMR3 (the
//     Verifier reports both; the relying party replays the log).
//
// # What it does not guarantee
//
//   - That the TD runs what the relying party wants: that needs a
//     measurement policy listing the workload's MRTD and RTMRs. The zero
//     Policy accepts any TD on an up-to-date genuine platform.
//   - That the authenticator key lives in the TD, or that only the TD's
//     intended software asked for the quote: any code in the TD that can
//     reach the quoting interface can get a quote with any REPORTDATA. A
//     TD that quotes on behalf of others (a quote oracle) defeats the
//     binding; the measurement policy must pin software that does not.
//   - That only the agent extended RTMR3: the quote proves its value, the
//     log says how the agent claims it got there.
//   - Freshness beyond the binder: TDX quotes carry no time. The Appraisal
//     has no AttestedAt (Verify uses the verification time) and expires
//     with the collateral's nextUpdate (plus grace) or the PCK chain.
//
// # Evidence
//
// The CMW media type is application/vnd.reattest.tdx-quote+cbor. The value
// is a deterministic CBOR map:
//
//	1  quote    bstr  the raw TDX quote (V4 or V5), with its PCK chain
//	2  posture  {1: 3 (RTMR3), 2: posture log (SHA-384)}   (optional)
//
// REPORTDATA is binder || zero bytes to 64: binder (32) || 0^32 with
// SHA-256 suites, binder (48) || 0^16 with SHA-384 suites.
//
// # Test quotes
//
// Package tdxtest mints quotes with any REPORTDATA under a test PKI shaped
// like Intel's, with matching collateral and a fake PCS. A Verifier must
// be told to trust the test root ([WithTrustedRoots]); its Results then
// report Format "tdx-quote-test-root" and HardwareBacked false. Package
// tdxguest is the hardware side (configfs-tsm or the TDX guest device,
// and RTMR3).
//
// # Use
//
//	pcs, err := tdx.NewPCS()                   // Intel's PCS
//	cache, err := tdx.NewCache(pcs)            // in memory, until nextUpdate
//	pol, err := tdx.LoadPolicy("tdx-policy.yaml")
//	v, err := tdx.NewVerifier(cache, tdx.WithPolicy(pol))
//	rp, err := postauth.NewRelyingParty(v)      // accepts v.MediaTypes(): TDX Evidence only
//	reqr, err := rp.NewRequester(ch, postauth.RoleClient)
//	res, err := reqr.Verify(ctx, answer, binding) // res.Posture(): the replayed posture
//
// Attesters, Verifiers, PCS clients and Caches are safe for concurrent
// use.
package tdx
