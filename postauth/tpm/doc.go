// Package tpm is the TPM 2.0 Evidence format for reattest, with its trust
// chain: an authenticator key that lives in the TPM ([Key]), certified
// (TPM2_Certify) by an attestation key (AK) that an enrollment CA
// certified after credential activation against the TPM's endorsement key
// (EK), whose certificate a TPM manufacturer signed; and a TPM2_Quote of
// the PCRs, all bound to the connection's binder. docs/tpm.md specifies
// the profile; package enroll is the enrollment CA; package tpmtest helps
// tests run on the simulator and on swtpm.
//
// # What a verified Evidence guarantees
//
// When the [Verifier] accepts Evidence:
//
//   - the AK is a TPM's: its AK certificate chains to a trusted enrollment
//     CA ([WithAKRoots]), which issued it only to the TPM holding a
//     manufacturer-certified EK and that AK; optionally the EK certificate
//     itself chains to a manufacturer root ([WithEKRoots]). The AK is a
//     fixedTPM restricted signing key, so what it signs the TPM composed;
//   - the authenticator key lives in that TPM and cannot leave it: the AK
//     certified a fixedTPM, fixedParent, sensitiveDataOrigin signing key,
//     and the Appraisal's KeyHash is Hash(SPKI) of that key, which the
//     relying party compares with the key that signed the Exported
//     Authenticator ([AllowSoftwareKey] lifts the requirement);
//   - the quote's and the certification's extraData is this connection's
//     binder, Hash(SPKI || TLS-Exporter("Attestation", context, 32)), and
//     the same AK signed both;
//   - the machine is the EK's: MachineID is SHA-256 of the EK's SPKI
//     ([MachineID]); [WithMachineIDs] pins allowed machines;
//   - the reported PCR values are the quoted ones, a boot event log (if
//     any) replays to them, and they satisfy the boot-state policy
//     ([WithPCRPolicy]); only with that policy does the Appraisal report
//     HardwareBacked;
//   - with posture, the posture log replays to the quoted posture PCR (the
//     relying party replays it: [postauth.RelyingParty.Verify]).
//
// It does not guarantee that only the agent uses the TPM key (any software
// on the machine with access to the TPM can), that the enrollment CA and the
// manufacturer are honest, or that a certificate was not revoked (there is
// no revocation). The posture PCR proves what the PCR held; that only the
// agent's Tracker extended it is an assumption about the host (see
// [PCRRegister]).
//
// The TPM simulator (go-tpm's tpm2/transport/simulator, which needs cgo)
// is for tests. Its keys are in process memory.
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
//	6  certify    bstr  TPMS_ATTEST as returned by TPM2_Certify  (optional,
//	7  certsig    bstr  TPMT_SIGNATURE by the AK                  6, 7, 8
//	8  key        bstr  TPMT_PUBLIC of the certified key           together)
//	9  akchain    [+ bstr]  AK certificate, then intermediates (optional)
//	10 ekchain    [+ bstr]  EK certificate, then intermediates (optional)
//	11 eventlog   bstr  TCG crypto-agile boot event log (optional)
//
// [DecodeEvidence], [ParseAttest] and [ParseCertification] decode the
// structures for logging (clock information, firmware version); they
// verify nothing. TPM structures are decoded with go-tpm's tpm2.Unmarshal.
//
// # Use
//
// The agent:
//
//	dev := tpm.Share(rwc) // rwc: a transport.TPM, e.g. linuxtpm.Open("/dev/tpmrm0")
//	key, err := tpm.NewKey(ctx, dev) // the authenticator key, in the TPM
//	att, err := tpm.NewAttester(ctx, dev, tpm.WithCertifiedKey(key))
//	err = att.Enroll(ctx, enrollClient) // enroll.NewClient(caURL, httpClient)
//	cert := ... // a TLS client certificate for key.Public(); tls.Certificate{PrivateKey: key}
//	id, err := postauth.IdentityFromTLS(&cert)
//	tr, err := transports.NewTransport(base, transports.WithAttester(id, att))
//
// The relying party:
//
//	v, err := tpm.NewVerifier(
//		tpm.WithAKRoots(enrollmentCARoot),
//		tpm.WithMachineIDs(allowedMachines...),                   // optional
//		tpm.WithPCRPolicy(map[int][][]byte{7: {secureBootPCR7}})) // boot state
//	rp, err := postauth.NewRelyingParty(v)
//
// Attesters, Keys, PCRRegisters and Verifiers are safe for concurrent use.
// An Attester, its Key and a PCRRegister on the same TPM must share one
// *[SharedTPM], which serializes their commands.
package tpm
