// Package verifier is reattest's verifier service: an [http.Handler]
// speaking the Veraison challenge-response API v1, which appraises
// reattest Evidence with the same format Verifiers a relying party uses
// locally (softeat.Verifier, tpm.Verifier, tdx.Verifier) and answers with
// EARs signed by its key (ES256, built with github.com/veraison/ear). Relying parties use
// it through package postauth/ear (background check and passports); the
// command reattest-verifier runs it.
//
// # API
//
//	POST   /challenge-response/v1/newSession[?nonce=<base64>|?nonceSize=N]
//	       201 Location: session/<uuid>, the session (nonce, expiry, status
//	       "waiting", accept); 400 bad nonce request; 406; 503 too many sessions
//	POST   /challenge-response/v1/session/<uuid>   (Content-Type: the Evidence media type)
//	       200 status "complete", result = the EAR; 400; 404; 406; 409 the
//	       session already has Evidence; 413; 415 (+ Accept); 500 no verdict; 503 busy
//	GET    /challenge-response/v1/session/<uuid>   200; 400; 404; 406
//	DELETE /challenge-response/v1/session/<uuid>   204; 400; 404
//	GET    /.well-known/veraison/verification      200 {ear-verification-key, media-types, ...}; 406
//
// Sessions use the media type
// application/vnd.veraison.challenge-response-session+json, errors
// application/problem+json (RFC 9457), the well-known document
// application/vnd.veraison.discovery+json. docs/verification.md has the
// details and the differences from Veraison.
//
// # The EAR
//
// One submodule per Evidence format (named after it, for example
// "software-eat"), eat_nonce = the session nonce (base64url, padded, as
// Veraison writes it). For Evidence the format Verifier accepts: status
// affirming, trust vector instance-identity 2 (the attestation key is
// trusted) and hardware 2 if the Evidence is hardware-backed, and the
// verified values as annotated evidence (postauth/ear's Annotation*
// names: format, key hash, machine id, Evidence time, posture head and
// log). For Evidence it refuses: status contraindicated, every claim 99
// (cryptographic validation failed; executables 96 for a policy refusal),
// and ear.veraison.policy-claims {"problem": <reason token>}.
//
// The key hash: the service passes the format Verifier a Challenge with
// the session nonce as binder and, as key hash, Hash(SPKI) of the
// authenticator key if the caller sent it (Reattest-Authenticator-Key
// header, an RFC 9651 byte sequence with the DER SubjectPublicKeyInfo),
// else the key hash the Evidence itself carries (read by the format's
// binding reader; reported as is, for the relying party to compare). Only
// when the caller sent the key and the Evidence vouches for it does the
// EAR carry ear.veraison.key-attestation (SetKeyAttestation).
//
// # The relying party's checks, made here
//
// The service calls format Verifiers directly, not through a
// postauth.RelyingParty, so it makes the relying party's checks of their
// appraisal itself before it signs an affirming EAR: the freshness value
// the Verifier reports must be the session nonce (binder_mismatch), and
// the posture log, which format Verifiers report without replaying, must
// replay to the reported head with posture.Verify (posture_invalid). A CMW
// body whose indicator says Attestation Result, not Evidence, is refused
// (400).
//
// # Limits
//
// Every input is bounded: the query, the Evidence body (MaxEvidenceBody),
// the key header; the number of sessions, their lifetime, the appraisals
// running at once and the bytes of EARs held. Sessions expire and are
// swept lazily; the Service runs no goroutine. Logs carry session ids,
// media types, statuses and reason tokens, never Evidence, nonces or EARs.
//
// # In process
//
//	key, _ := verifier.GenerateKey()
//	svc, _ := verifier.NewService(key, verifier.SoftEAT(softeatVerifier))
//	srv, _ := verifier.Start(nil, svc, nil) // 127.0.0.1, a free port
//	defer srv.Close()
//	rv, _ := ear.NewRemoteVerifier(srv.URL(), ear.WithVerifierKeys(svc.PublicKey()),
//		ear.WithLocalBinding(softeat.MediaType, softeat.Binding))
package verifier
