// Package tpm is the TPM 2.0 quote Evidence format for reattest: a
// TPM2_Quote over a PCR selection of the SHA-256 bank, with the
// connection's binder as qualifying data, signed by an ECC P-256
// restricted attestation key (AK) that never leaves the TPM. It is
// hardware-backed: Results report [postauth.Result.HardwareBacked] true
// and [postauth.Result.Format] "tpm2-quote". docs/tpm.md specifies the
// profile.
//
// # What a verified quote guarantees
//
// When the [Verifier] accepts Evidence:
//
//   - a TPM holding one of the pinned AKs signed the quote. The AK is a
//     fixedTPM restricted signing key, and a restricted key signs a
//     structure that starts with TPM_GENERATED_VALUE only if the TPM made
//     it, so the quote was not composed by software;
//   - the quote's extraData is this connection's binder, Hash(SPKI ||
//     TLS-Exporter("Attestation", context, 32)): the TPM quoted for this
//     request on this connection, and the binder covers the authenticator
//     key, so the Verifier reports the Challenge's key hash as the key the
//     Evidence vouches for (the key hash is implied by the binder; the
//     format carries no separate key hash);
//   - the reported PCR values are the values the TPM quoted (their
//     SHA-256 digest is the signed PCR digest), and they satisfy the
//     optional PCR policy ([WithPCRPolicy]);
//   - with posture, the posture log replays to the quoted posture PCR (the
//     relying party replays it: [postauth.RelyingParty.Verify]).
//
// It does not guarantee that the AK belongs to a real TPM: pinning an AK
// ([NewVerifier]) is the relying party's trust decision and must follow an
// enrolment it trusts (for example credential activation against a known
// endorsement key). AK certificate chains are future work. Nor does it
// prove that the authenticator key lives in the TPM: TPM2_Certify of a
// TPM-resident authenticator key is future work, so the authenticator key
// is as safe as the attesting host's software. The posture PCR proves
// what the PCR held; that only the agent's Tracker extended it is an
// assumption about the host (see [PCRRegister]).
//
// The TPM simulator (go-tpm's tpm2/transport/simulator, which needs cgo)
// is for tests. Its keys are in process memory: never pin a simulator's
// AK outside tests.
//
// # Evidence
//
// The CMW media type is application/vnd.reattest.tpm-quote+cbor. The value
// is a deterministic CBOR map:
//
//	1  quote      bstr  TPMS_ATTEST as returned by TPM2_Quote
//	2  signature  bstr  TPMT_SIGNATURE (ECDSA, SHA-256) over the quote
//	3  ak         bstr  TPMT_PUBLIC of the attestation key
//	4  pcrs       {* uint => bstr}  PCR index => 32-byte SHA-256 bank value;
//	                                the keys are the PCR selection
//	5  posture    {1: uint PCR index, 2: posture log}   (optional)
//
// The posture log is the posture package's log encoding (a CBOR map, not
// wrapped in a bstr). [DecodeEvidence] and [ParseAttest] decode the
// structures for logging (clock information, firmware version); they
// verify nothing.
//
// The binder is the quote's extraData as is when it fits the TPM's
// TPM2B_DATA, whose maximum is the TPM's largest digest
// (TPM_PT_MAX_DIGEST; 64 on the simulator). A TPM whose largest digest is
// SHA-256 cannot take a 48-byte binder (SHA-384 suites): the Attester then
// puts SHA-256(binder) in extraData, and the Verifier accepts either form
// for binders longer than 32 bytes.
//
// MachineID is the AK's TPM name, 0x000B || SHA-256(TPMT_PUBLIC).
//
// # Use
//
//	dev := tpm.Share(rwc) // rwc: a transport.TPM, e.g. linuxtpm.Open("/dev/tpmrm0")
//	reg, err := tpm.NewPCRRegister(ctx, dev) // resets PCR 23
//	tracker, err := posture.NewTracker(posture.WithRegister(reg))
//	att, err := tpm.NewAttester(ctx, dev, tpm.WithPosture(tracker))
//	defer att.Close()
//	enrol(att.AKPublic()) // the relying party pins it
//
//	v, err := tpm.NewVerifier([][]byte{akPublic},
//		tpm.WithPCRPolicy(map[int][][]byte{7: {secureBootPCR7}}), // optional
//		tpm.RequirePosture())
//	rp, err := postauth.NewRelyingParty(v)
//	requester, err := rp.NewRequester(ch, postauth.RoleClient)
//	res, err := requester.Verify(ctx, answer, nil)
//
// Attesters, PCRRegisters and Verifiers are safe for concurrent use. An
// Attester and a PCRRegister on the same TPM must share one *[SharedTPM],
// which serializes their commands.
package tpm
