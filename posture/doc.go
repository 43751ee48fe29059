// Package posture models an AI agent's posture, measures it into a
// register through an append-only log, and lets a relying party check it
// against a policy.
//
// Posture is what changes an agent's behaviour without changing its
// binary: the model (name, version, digest), the enabled tools, the prompt
// template, the runtime permissions and configuration flags such as FIPS
// mode. Each item is an EAT measured component
// (draft-ietf-rats-eat-measured-component); docs/posture.md gives the exact
// encodings.
//
// # Attester side
//
// The agent runtime records every change in a [Tracker]:
//
//	tr, _ := posture.NewTracker() // SHA-256 software register (WithRegister: a TPM PCR, a TDX RTMR)
//	_ = tr.SetModel(ctx, posture.Model{Name: "gpt-x", Digest: posture.DigestOf(weights)})
//	_ = tr.EnableTool(ctx, posture.Tool{Name: "search", Digest: posture.DigestOf(code)})
//
// Each change appends an event to the measured posture [Log] and extends a
// [Register] with it, head_i = H(head_{i-1} || H(event_i)), as a TPM PCR or
// a TDX RTMR extend does. Evidence carries the log and the register value
// (software EAT: postauth/softeat with softeat.WithPosture(tracker)); a
// Tracker is the one posture [Source] that attesters and client transports
// read. [Tracker.Subscribe] reports each new head, so a client can
// attest again and send [Tracker.Head] as its posture hint.
//
// # Relying party side
//
// At verification the relying party (package postauth, one layer up)
// replays the log against the attested register value with [Verify] and
// keeps the [State] in its verified Result. A [Policy], plain data loaded
// from JSON or YAML with [LoadPolicy], lists allowed models, allowed and
// denied tools, allowed templates, a permission ceiling and required
// flags. [Policy.Check] returns every violation and [Policy.Evaluate] also
// refuses a malformed policy; postauth.AppraisePosture applies a Policy to
// a verified Result (the middleware's Route.Posture), naming the failed
// items in a policy denial.
//
// posture is the ground floor of the module: it imports no other package
// of it, so hardware registers and formats can build on it.
//
// # What the measured log guarantees
//
// A verifier that replays the log and gets the register value the Evidence
// covers knows that this log, in this order and nothing else, was extended
// into that register: an event changed, dropped, added or reordered gives
// another value ([ErrHeadMismatch]). The events are canonical CBOR, so each
// has exactly one byte form and one digest.
//
// # What it does not guarantee
//
//   - The log says what the agent runtime measured, not what it does. A
//     compromised runtime can record "shell disabled" and keep using the
//     shell, or never record a change. Posture is only as trustworthy as
//     the code that keeps the Tracker; that code must itself be measured
//     by hardware Evidence (TPM PCRs with measured boot, a TDX TD's MRTD
//     and RTMRs) for a relying party to rely on it.
//   - A [SoftwareRegister] is only as good as the process that holds it:
//     anything that controls the process can set it to any value, and
//     software EAT Evidence signs whatever the process says. It is for
//     development and tests; Results from it report HardwareBacked false,
//     and a relying party that needs more must require hardware Evidence.
//     A posture digest placed only in a nonce or signed by the agent's own
//     key is self-asserted in the same way.
//   - A hardware register helps only if nothing else extends it: give the
//     posture log its own PCR or RTMR.
//   - Digests name items; they do not say the items are good. The policy
//     decides which digests to trust.
//
// # Stale posture
//
// Evidence describes the posture at one moment. The Attestation-Posture
// header is only a hint: the client sends its current head, and a server
// holding a cached Result for another head re-challenges
// ("posture_changed"). The hint is not authenticated and never replaces
// Evidence: it can only trigger a new attestation, not pass one. An honest
// client's hint catches a change at once; a compromised client that
// changes posture and keeps sending the old head keeps an old Result alive
// until it expires. So the defence is the combination: the hint for prompt
// re-attestation, a max-age that bounds how long any Result is reused, and
// the "operation" freshness mode, which attests on every request, for
// routes that must see the posture at the moment of the operation.
//
// # Limits
//
// Peer input is bounded: [MaxEvents] events, [MaxLogLen] bytes per log,
// [MaxNameLen], [MaxVersionLen], [MaxValueLen] and [MaxScopes] per item,
// [MaxPolicyLen] per policy document. A Tracker refuses a change that would
// overflow the log before it extends the register; a long-lived agent that
// reaches the limit must start again with a fresh register.
package posture
