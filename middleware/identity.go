package middleware

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/reattest/reattest/postauth"
)

// IdentityKind names what an [Identity] identifies an attester by.
type IdentityKind string

// The identities a verified [postauth.Result] exposes. A revocation or an
// invalidation names one of them; it matches every verdict whose Result
// has that value.
const (
	// IdentityKey: the authenticator key, as [postauth.Result.KeyHash] (the
	// hash of its SubjectPublicKeyInfo with the TLS cipher suite's hash, so
	// one key has a SHA-256 and a SHA-384 form: see [KeyIdentities]). Lower
	// case hex.
	IdentityKey IdentityKind = "key"
	// IdentityMachine: the attester's machine or instance id,
	// [postauth.Result.MachineID]. Lower case hex.
	IdentityMachine IdentityKind = "machine"
	// IdentityPosture: a posture register value (a posture digest),
	// [postauth.Result.PostureHead]. Lower case hex.
	IdentityPosture IdentityKind = "posture"
	// IdentitySubject: [postauth.Result.Subject], the TLS peer certificate's
	// subject with the default key trust (same peer) or the authenticator
	// certificate's subject verified against roots. With
	// postauth.KeyTrustAttestedKeyOnly the peer chooses its subject: revoke
	// by key or machine instead.
	IdentitySubject IdentityKind = "subject"
	// IdentityAttestationKey: the key that signed the Evidence,
	// [postauth.Result.AttestationKeyID] (the first 16 bytes of SHA-256
	// over its SubjectPublicKeyInfo: a software EAT kid, a TPM AK's, or
	// the one an EAR reports; TDX quotes have none). Lower case hex. Revoking it revokes
	// every attester that signs with that key, whatever its TLS key.
	IdentityAttestationKey IdentityKind = "kid"
)

// Limits of identity values.
const (
	maxIdentityBytes   = 256  // key, machine, posture: decoded bytes
	maxIdentitySubject = 1024 // subject: bytes of UTF-8
)

// Identity names an attester in a revocation or an invalidation: a kind
// and a value (lower case hex for keys, machines and postures; the subject
// string for subjects). It never holds Evidence. The zero Identity is
// invalid.
type Identity struct {
	Kind  IdentityKind
	Value string
}

// String returns "kind:value", the form [ParseIdentity] reads.
func (id Identity) String() string { return string(id.Kind) + ":" + id.Value }

// Validate reports whether id is well formed: a known kind and a value
// within its size limit (hex values: lower case, even length, at most 256
// bytes; subjects: valid UTF-8 without control characters, at most 1024
// bytes).
func (id Identity) Validate() error {
	switch id.Kind {
	case IdentityKey, IdentityMachine, IdentityPosture, IdentityAttestationKey:
		if id.Value == "" || len(id.Value)%2 != 0 || len(id.Value) > 2*maxIdentityBytes {
			return fmt.Errorf("middleware: identity %s: want 1 to %d bytes of hex", id.Kind, maxIdentityBytes)
		}
		for _, c := range []byte(id.Value) {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return fmt.Errorf("middleware: identity %s: not lower case hex", id.Kind)
			}
		}
	case IdentitySubject:
		if id.Value == "" || len(id.Value) > maxIdentitySubject || !utf8.ValidString(id.Value) {
			return fmt.Errorf("middleware: identity subject: want 1 to %d bytes of UTF-8", maxIdentitySubject)
		}
		for _, r := range id.Value {
			if r < 0x20 || r == 0x7f {
				return errors.New("middleware: identity subject: control character")
			}
		}
	default:
		return fmt.Errorf("middleware: unknown identity kind %q", id.Kind)
	}
	return nil
}

// ParseIdentity parses "kind:value" ("key:9f86d0...", "machine:0a1b...",
// "posture:...", "kid:...", "subject:CN=agent-7") and validates it. Hex
// values may be given in upper case.
func ParseIdentity(s string) (Identity, error) {
	kind, value, ok := strings.Cut(s, ":")
	if !ok {
		return Identity{}, fmt.Errorf("middleware: identity %q: want kind:value", s)
	}
	id := Identity{Kind: IdentityKind(kind), Value: value}
	if id.Kind != IdentitySubject {
		id.Value = strings.ToLower(value)
	}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// KeyIdentities returns the key identities of a public key given as its
// DER SubjectPublicKeyInfo (x509.Certificate.RawSubjectPublicKeyInfo): its
// SHA-256 and SHA-384 hashes, one for each hash of the TLS 1.3 cipher
// suites, since [postauth.Result.KeyHash] uses the connection's. Revoke
// both to revoke the key whatever suite its connections negotiate.
func KeyIdentities(spki []byte) []Identity {
	s256, s384 := sha256.Sum256(spki), sha512.Sum384(spki)
	return []Identity{
		{IdentityKey, hex.EncodeToString(s256[:])},
		{IdentityKey, hex.EncodeToString(s384[:])},
	}
}

// Attester names the attester of a decision by the identities its verified
// Result exposes, hex encoded (never Evidence, never the posture log). The
// zero value means unknown: no Result was verified.
type Attester struct {
	// KeyHash is the hex of [postauth.Result.KeyHash].
	KeyHash string
	// MachineID is the hex of [postauth.Result.MachineID], "" if none.
	MachineID string
	// Posture is the hex of [postauth.Result.PostureHead] (the posture
	// digest), "" if the Evidence carried no posture.
	Posture string
	// Subject is [postauth.Result.Subject].
	Subject string
	// AttestationKeyID is the hex of [postauth.Result.AttestationKeyID],
	// "" if the format has none.
	AttestationKeyID string
}

// AttesterOf returns the identities of a verified Result (the zero
// Attester for nil).
func AttesterOf(res *postauth.Result) Attester {
	if res == nil {
		return Attester{}
	}
	return Attester{
		KeyHash:   hex.EncodeToString(res.KeyHash()),
		MachineID: hex.EncodeToString(res.MachineID()),
		Posture:   hex.EncodeToString(res.PostureHead()),
		Subject:   res.Subject(),

		AttestationKeyID: hex.EncodeToString(res.AttestationKeyID()),
	}
}

// Identities returns the identities of a: its key, and its machine,
// posture, subject and attestation key when it has them. Values over the size limits of
// [Identity.Validate] are left out.
func (a Attester) Identities() []Identity {
	out := make([]Identity, 0, 5)
	for _, id := range []Identity{
		{IdentityKey, a.KeyHash}, {IdentityMachine, a.MachineID},
		{IdentityPosture, a.Posture}, {IdentitySubject, a.Subject},
		{IdentityAttestationKey, a.AttestationKeyID},
	} {
		if id.Value != "" && id.Validate() == nil {
			out = append(out, id)
		}
	}
	return out
}
