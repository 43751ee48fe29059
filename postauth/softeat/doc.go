// Package softeat is a software Evidence format for reattest: an EAT
// (RFC 9711) in a COSE_Sign1 (ES256) signed with an ECDSA P-256 key that
// the attesting process holds in memory or in a file.
//
// It is NOT hardware-backed. Nothing protects the attestation key from the
// process or from anyone who can read its memory or key file, so the
// Evidence proves only that the holder of a trusted software key vouched
// for the connection, the authenticator key and, if configured, the agent
// posture. Use it for development, tests, demos and as a reference for the
// protocol; use a hardware-rooted format (TPM, TDX) where the peer's state
// must be trusted. Results report [postauth.Result.HardwareBacked] false.
//
// # Profile
//
// The token is a tagged COSE_Sign1 (CBOR tag 18) with protected header
// {1: -7 (ES256), 4: kid}, where kid is the first 16 bytes of SHA-256 over
// the attestation key's DER SubjectPublicKeyInfo ([KeyID]), an empty
// unprotected header, and a payload that is a deterministic CBOR claims
// map:
//
//	6       iat          integer seconds, untagged (RFC 8392)
//	10      eat_nonce    one bstr: the binder (postauth.Challenge.Binder)
//	256     ueid         machine id; by default 0x01 || kid
//	265     eat_profile  "tag:github.com,2026:reattest/software-eat/v1" (Profile)
//	-70000  key hash     [alg, Hash(SPKI of the authenticator key)]
//	-70001  posture      {1: [alg, register value], 2: posture log} (optional)
//
// alg is a Named Information hash identifier (sha-256 = 1, sha-384 = 7).
// The claims set is closed: the [Verifier] rejects unknown claims. It
// accepts one byte form only: the protected header exactly as above (no
// crit, no other label), the empty unprotected header, and claims that are
// their own deterministic re-encoding (every claim but posture present,
// eat_nonce one bstr of the Challenge hash's length).
// docs/protocol.md specifies the profile and the order of the Verifier's
// checks; docs/posture.md the posture claim.
//
// # Use
//
//	att, err := softeat.NewAttester(key, softeat.WithPosture(tracker)) // key: an ECDSA P-256 crypto.Signer
//	responder, err := postauth.NewResponder(id, att)
//	answer, err := responder.Respond(ctx, ch, postauth.RoleClient, req)
//
//	v, err := softeat.NewVerifier([]crypto.PublicKey{trustedKey},
//		softeat.WithMachineIDs(expectedUEID)) // optional: the machines you mean to reach
//	rp, err := postauth.NewRelyingParty(v)
//	requester, err := rp.NewRequester(ch, postauth.RoleClient)
//	res, err := requester.Verify(ctx, answer, nil)
//
// Attesters and Verifiers are safe for concurrent use.
package softeat
