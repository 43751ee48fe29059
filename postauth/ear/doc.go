// Package ear brings remote verifiers to reattest: the two RATS models
// in which a verifier service, not the relying party, appraises the
// Evidence, and the relying party relies on the verifier's signed
// Attestation Result, an EAR (EAT Attestation Result, draft-ietf-rats-ear:
// a JWT signed ES256, profile "tag:github.com,2023:veraison/ear").
// docs/verification.md is the full description.
//
//   - Background check ([RemoteVerifier], a [postauth.Verifier]): the
//     relying party forwards the peer's Evidence to the verifier over the
//     Veraison challenge-response API v1, with the connection's binder as
//     the session nonce, and appraises the EAR it gets back.
//   - Passport ([Attester] and [Verifier]): the attester has the verifier
//     appraise its Evidence (session nonce = the binder) and sends the EAR
//     itself in cmw_attestation, media type [MediaType]. The relying party
//     verifies the EAR and never sees the Evidence.
//
// Both models appraise the EAR with one [Policy] (minimum status, required
// trust-vector claims, maximum age), loadable from YAML or JSON like the
// posture policy. The verifier service itself is package
// github.com/reattest/reattest/verifier (command reattest-verifier).
//
// # Relying party, background check
//
//	rv, err := ear.NewRemoteVerifier("https://verifier.example:8443",
//		ear.WithVerifierKeys(verifierKey),                        // pinned EAR key (ParseJWK)
//		ear.WithLocalBinding(softeat.MediaType, softeat.Binding), // the binding is checked here, not trusted
//		ear.WithPolicy(policy))
//	rp, err := postauth.NewRelyingParty(rv) // or middleware.New(rv, ...)
//
// # Attester and relying party, passport
//
//	att, err := ear.NewAttester(softeatAttester, "https://verifier.example:8443", clientCert.Leaf.PublicKey)
//	r, err := postauth.NewResponder(id, att) // or transports.WithAttester(id, att)
//
//	v, err := ear.NewVerifier([]crypto.PublicKey{verifierKey}, ear.WithPolicy(policy))
//	rp, err := postauth.NewRelyingParty(v) // or middleware.New(v, ...)
//
// The passport Attester marks its output as an Attestation Result
// (postauth.KindAttestationResult): it travels in a CMW record with the
// Attestation Results indicator (8).
//
// Both verifiers report the EAR's posture annotations (head and log)
// without replaying the log, like every format Verifier: the relying party
// replays it once (postauth.RelyingParty.Verify). postauth bounds every
// Verifier and Attester call by the caller's context; the verifiers here
// add the remote verifier's own timeout, in-flight bound and circuit
// breaker.
//
// # What a verified EAR guarantees
//
// With either model, a passing appraisal means: a verifier whose key the
// relying party pinned signed an EAR (ES256 only: no "none", no HMAC, no
// embedded keys) that is at most the policy's max age old, whose
// eat_nonce is this connection's binder, and every submodule of which
// meets the policy. The passport also attests the authenticator key
// (ear.veraison.key-attestation), which the relying party compares with
// the key that signed the authenticator. The verifier is trusted for the
// Evidence's authenticity and for its verdict: whoever holds its key
// vouches for every attester.
//
// Freshness is not left to the remote verifier in the background check:
// a real Veraison scheme (TPM_ENACTTRUST, services v0.0.2506) judged a
// quote over a different nonce affirming. A [RemoteVerifier] therefore
// accepts Evidence only for media types with a local binding checker
// ([BindingFunc]: softeat.Binding, tpm.Binding, tdx.Binding,
// [EnactTrustBinding]), which reads the freshness value and key hash from
// the very bytes it forwards, before anything is sent. [WithInsecureRemoteBinding] opts out,
// per media type. The passport cannot have this check (the relying party
// never sees the Evidence): choose the verifier accordingly.
//
// Fail closed: a verifier that is down, slow (past the timeout; a late
// answer is discarded), overloaded, or that answers with an error status
// or anything unusable gives CodeUnavailable, never an Appraisal. A
// circuit breaker stops calling a failing verifier for a while, and the
// number of requests in flight is bounded.
//
// HardwareBacked is derived from the verified trust vectors: it is true
// iff every submodule has a hardware claim in the affirming tier (2..31
// or -32..-2), which a reattest verifier sets for hardware-rooted Evidence
// (TPM) only.
//
// Verifiers, RemoteVerifiers and Attesters are safe for concurrent use.
package ear
