package softeat

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/eat"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/reattest/reattest/internal/detcbor"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// MediaType is the CMW media type of software EAT Evidence.
const MediaType = "application/eat+cwt"

// Format is the format name reported in [postauth.Result.Format].
const Format = "software-eat"

// Profile is the eat_profile of this format.
const Profile = "tag:github.com,2026:reattest/software-eat/v1"

// Claim keys. Standard EAT/CWT keys, and two private-use keys (below -65536)
// for what no registered claim carries yet.
const (
	KeyIssuedAt = 6      // iat (RFC 8392), integer seconds
	KeyNonce    = 10     // eat_nonce: the binder
	KeyUEID     = 256    // ueid: machine identifier
	KeyProfile  = 265    // eat_profile
	KeyKeyHash  = -70000 // reattest key hash: [alg, Hash(SPKI)] (expat's AIK_pub_hash)
	KeyPosture  = -70001 // reattest posture: {1: [alg, head], 2: posture log}
)

// Defaults for the Verifier.
const (
	DefaultMaxAge = 2 * time.Minute
	DefaultSkew   = 30 * time.Second
)

// MaxTokenLen bounds a token the Verifier will parse.
const MaxTokenLen = postauth.MaxEvidenceLen

type postureClaim struct {
	Head posture.Digest  `cbor:"1,keyasint"`
	Log  cbor.RawMessage `cbor:"2,keyasint"`
}

// claims is the profile's claims set. Every field but Posture is required:
// the Verifier re-encodes what it decoded and compares the bytes, so a
// missing claim (which would re-encode as a zero value) is refused too.
type claims struct {
	IssuedAt int64          `cbor:"6,keyasint"`
	Nonce    []byte         `cbor:"10,keyasint"` // one bstr, never an array
	UEID     eat.UEID       `cbor:"256,keyasint"`
	Profile  string         `cbor:"265,keyasint"`
	KeyHash  posture.Digest `cbor:"-70000,keyasint"`
	Posture  *postureClaim  `cbor:"-70001,keyasint,omitempty"`
}

// AttesterOption configures an [Attester].
type AttesterOption interface{ applyAttester(*attesterConfig) }

// VerifierOption configures a [Verifier].
type VerifierOption interface{ applyVerifier(*verifierConfig) }

// Option configures both an [Attester] and a [Verifier].
type Option interface {
	AttesterOption
	VerifierOption
}

type attesterConfig struct {
	ueid    []byte
	posture posture.Source
	now     func() time.Time
	rand    io.Reader
}

type verifierConfig struct {
	maxAge         time.Duration
	skew           time.Duration
	now            func() time.Time
	requirePosture bool
	machineIDs     [][]byte
}

type attesterOption func(*attesterConfig)

func (f attesterOption) applyAttester(c *attesterConfig) { f(c) }

type verifierOption func(*verifierConfig)

func (f verifierOption) applyVerifier(c *verifierConfig) { f(c) }

type clockOption func() time.Time

func (f clockOption) applyAttester(c *attesterConfig) { c.now = f }
func (f clockOption) applyVerifier(c *verifierConfig) { c.now = f }

// WithClock sets the clock: the attester's iat, the verifier's window.
// Nil means time.Now.
func WithClock(now func() time.Time) Option {
	if now == nil {
		now = time.Now
	}
	return clockOption(now)
}

// WithUEID sets the machine identifier the Attester puts in its tokens (EAT
// ueid, 7 to 33 bytes, first byte the UEID type). The default derives a
// RAND-type UEID from the attestation key: 0x01 || SHA-256(SPKI)[:16].
func WithUEID(ueid []byte) AttesterOption {
	id := slices.Clone(ueid)
	return attesterOption(func(c *attesterConfig) { c.ueid = id })
}

// WithPosture puts the agent's measured posture (register value and log)
// from src into every token. *posture.Tracker is a Source.
func WithPosture(src posture.Source) AttesterOption {
	return attesterOption(func(c *attesterConfig) { c.posture = src })
}

// WithRand sets the signer's randomness. Nil means crypto/rand.
func WithRand(r io.Reader) AttesterOption {
	return attesterOption(func(c *attesterConfig) {
		if r != nil {
			c.rand = r
		}
	})
}

// WithMaxAge sets how old iat may be. Zero or less means DefaultMaxAge.
// Freshness comes from the binder; this only bounds how long an attester
// may sit on a challenge.
func WithMaxAge(d time.Duration) VerifierOption {
	return verifierOption(func(c *verifierConfig) {
		if d > 0 {
			c.maxAge = d
		}
	})
}

// WithSkew sets how far in the future iat may be. Zero or less means
// DefaultSkew.
func WithSkew(d time.Duration) VerifierOption {
	return verifierOption(func(c *verifierConfig) {
		if d > 0 {
			c.skew = d
		}
	})
}

// RequirePosture makes the Verifier reject tokens without a posture claim
// ([postauth.ReasonPostureMissing]).
func RequirePosture() VerifierOption {
	return verifierOption(func(c *verifierConfig) { c.requirePosture = true })
}

// WithMachineIDs restricts the accepted UEIDs to ids (the machines the
// relying party means to reach; a defence against diversion).
func WithMachineIDs(ids ...[]byte) VerifierOption {
	cp := make([][]byte, len(ids))
	for i, id := range ids {
		cp[i] = slices.Clone(id)
	}
	return verifierOption(func(c *verifierConfig) { c.machineIDs = cp })
}

// Attester produces software EAT Evidence signed with an ECDSA P-256 key
// held by the process. It is safe for concurrent use.
type Attester struct {
	key       crypto.Signer
	kid       []byte
	protected []byte // the encoded protected header (protectedHeader(kid))
	cfg       attesterConfig
}

var _ postauth.Attester = (*Attester)(nil)

// NewAttester returns an Attester signing with key, which must be an ECDSA
// P-256 key (ES256).
func NewAttester(key crypto.Signer, opts ...AttesterOption) (*Attester, error) {
	if key == nil {
		return nil, errors.New("softeat: nil key")
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("softeat: the attestation key must be ECDSA P-256")
	}
	kid, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	cfg := attesterConfig{now: time.Now, rand: rand.Reader}
	for _, o := range opts {
		if o != nil {
			o.applyAttester(&cfg)
		}
	}
	if cfg.ueid == nil {
		spki, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(spki)
		cfg.ueid = append([]byte{0x01}, sum[:16]...)
	}
	if err := eat.UEID(cfg.ueid).Validate(); err != nil {
		return nil, fmt.Errorf("softeat: ueid: %w", err)
	}
	return &Attester{key: key, kid: kid, protected: protectedHeader(kid), cfg: cfg}, nil
}

// UEID is the machine identifier the Attester puts in its tokens.
func (a *Attester) UEID() []byte { return slices.Clone(a.cfg.ueid) }

// Attest returns a COSE_Sign1-signed EAT whose eat_nonce is ch.Binder and
// which carries ch.KeyHash, the time, the UEID and, if configured, the
// posture.
func (a *Attester) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	if err := ctx.Err(); err != nil {
		return postauth.Evidence{}, err
	}
	alg := posture.AlgID(ch.Hash)
	if alg == 0 || len(ch.KeyHash) != ch.Hash.Size() {
		return postauth.Evidence{}, fmt.Errorf("softeat: unsupported challenge hash %v", ch.Hash)
	}
	if len(ch.Binder) != ch.Hash.Size() {
		return postauth.Evidence{}, fmt.Errorf("softeat: binder of %d bytes for %v", len(ch.Binder), ch.Hash)
	}
	c := claims{
		IssuedAt: a.cfg.now().Unix(),
		Nonce:    ch.Binder,
		UEID:     a.cfg.ueid,
		Profile:  Profile,
		KeyHash:  posture.Digest{Alg: alg, Value: ch.KeyHash},
	}
	if a.cfg.posture != nil {
		snap, err := a.cfg.posture.Snapshot()
		if err != nil {
			return postauth.Evidence{}, fmt.Errorf("softeat: posture: %w", err)
		}
		c.Posture = &postureClaim{Head: posture.Digest{Alg: posture.AlgID(snap.Alg), Value: snap.Head}, Log: snap.Log}
	}
	payload := encodeClaims(&c)
	sig, err := a.signES256(a.cfg.rand, a.protected, payload)
	if err != nil {
		return postauth.Evidence{}, fmt.Errorf("softeat: signing: %w", err)
	}
	tok := encodeToken(a.protected, payload, sig)
	return postauth.Evidence{Type: MediaType, Value: tok}, nil
}

// Verifier checks software EAT Evidence against trusted attestation keys.
// It is safe for concurrent use.
type Verifier struct {
	keys map[string]*ecdsa.PublicKey // by key id
	cfg  verifierConfig
}

var _ postauth.Verifier = (*Verifier)(nil)

// NewVerifier returns a Verifier that trusts tokens signed by any of keys
// (ECDSA P-256 public keys).
func NewVerifier(keys []crypto.PublicKey, opts ...VerifierOption) (*Verifier, error) {
	v := &Verifier{keys: make(map[string]*ecdsa.PublicKey)}
	v.cfg = verifierConfig{maxAge: DefaultMaxAge, skew: DefaultSkew, now: time.Now}
	for _, o := range opts {
		if o != nil {
			o.applyVerifier(&v.cfg)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("softeat: no trusted keys")
	}
	for _, k := range keys {
		pub, ok := k.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			return nil, errors.New("softeat: trusted keys must be ECDSA P-256")
		}
		kid, err := KeyID(pub)
		if err != nil {
			return nil, err
		}
		v.keys[string(kid)] = pub
	}
	return v, nil
}

// MediaTypes is the media type the Verifier accepts ([postauth.MediaTyper]).
func (v *Verifier) MediaTypes() []string { return []string{MediaType} }

// evidenceErr is a CodeInvalid error with a wire-safe reason.
func evidenceErr(reason postauth.Reason, cause error) error {
	return postauth.NewError(postauth.CodeInvalid, reason, cause)
}

// Verify checks the token's signature, profile, eat_nonce (must equal the
// binder), key hash, iat window and UEID, and returns the appraisal with the
// signed posture register value and log. It does not replay the log: the
// relying party does that once ([postauth.RelyingParty.Verify]); a caller
// that uses a Verifier on its own must call [posture.Verify].
func (v *Verifier) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if postauth.BaseMediaType(ev.Type) != MediaType {
		return nil, evidenceErr(postauth.ReasonFormatNotAccepted, fmt.Errorf("softeat: media type %q", ev.Type))
	}
	c, kid, err := v.verifyToken(ev.Value)
	if err != nil {
		return nil, err
	}
	if c.Profile != Profile {
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, errors.New("softeat: wrong eat_profile"))
	}
	// One bstr (an array, even of one element, does not decode) of the
	// Challenge hash's length.
	nonce := c.Nonce
	if len(nonce) != ch.Hash.Size() { // mutation: softeat nonce length
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, fmt.Errorf("softeat: eat_nonce of %d bytes, want %d", len(nonce), ch.Hash.Size()))
	}
	if !bytes.Equal(nonce, ch.Binder) { // mutation: softeat binder compare
		return nil, evidenceErr(postauth.ReasonBinderMismatch, postauth.ErrBinderMismatch)
	}
	if posture.AlgHash(c.KeyHash.Alg) != ch.Hash || !bytes.Equal(c.KeyHash.Value, ch.KeyHash) { // mutation: softeat keyhash compare
		return nil, evidenceErr(postauth.ReasonKeyHashMismatch, postauth.ErrKeyHashMismatch)
	}
	if err := c.UEID.Validate(); err != nil {
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, fmt.Errorf("softeat: ueid: %w", err))
	}
	if v.cfg.machineIDs != nil && !slices.ContainsFunc(v.cfg.machineIDs, func(id []byte) bool { return bytes.Equal(id, c.UEID) }) {
		return nil, evidenceErr(postauth.ReasonUnknownMachine, errors.New("softeat: ueid not in the accepted machine ids"))
	}
	now := v.cfg.now()
	iat := time.Unix(c.IssuedAt, 0)
	if iat.After(now.Add(v.cfg.skew)) || now.Sub(iat) > v.cfg.maxAge {
		return nil, postauth.NewError(postauth.CodeStale, postauth.ReasonEvidenceStale, fmt.Errorf("softeat: iat %v outside the accepted window", iat.UTC()))
	}
	app := &postauth.Appraisal{
		Format:     Format,
		Nonce:      nonce,
		KeyHash:    c.KeyHash.Value,
		MachineID:  []byte(c.UEID),
		AttestedAt: iat,
		// The kid of a trusted key (verifyToken): SHA-256(SPKI)[:16].
		AttestationKeyID: kid,
	}
	switch {
	case c.Posture != nil:
		// The relying party replays the log against the signed head
		// (postauth.RelyingParty.Verify); here only the head's form.
		alg := posture.AlgHash(c.Posture.Head.Alg)
		if alg == 0 || len(c.Posture.Head.Value) != alg.Size() {
			return nil, evidenceErr(postauth.ReasonPostureInvalid, errors.New("softeat: bad posture register value"))
		}
		app.PostureHead = c.Posture.Head.Value
		app.PostureLog = c.Posture.Log
	case v.cfg.requirePosture:
		return nil, evidenceErr(postauth.ReasonPostureMissing, errors.New("softeat: token carries no posture"))
	}
	return app, nil
}

// verifyToken checks the token's signature with the trusted key its kid
// names and returns its claims and the kid.
func (v *Verifier) verifyToken(tok []byte) (*claims, []byte, error) {
	t, err := parseToken(tok)
	if err != nil {
		return nil, nil, err
	}
	pub, ok := v.keys[string(t.kid)]
	if !ok {
		return nil, nil, evidenceErr(postauth.ReasonUntrustedAttester, errors.New("softeat: attestation key not trusted"))
	}
	if !verifyES256(pub, t.protected, t.payload, t.sig) {
		return nil, nil, evidenceErr(postauth.ReasonBadEvidenceSignature, errors.New("softeat: signature invalid"))
	}
	c, err := decodeClaims(t.payload)
	if err != nil {
		return nil, nil, err
	}
	return c, slices.Clone(t.kid), nil
}

// token is a token of the profile's shape, its signature not yet checked.
type token struct {
	kid, protected, payload, sig []byte
}

// parseToken checks the token's size and shape (a tagged COSE_Sign1 whose
// protected header is exactly {alg: ES256, kid} and whose unprotected
// header is empty) without checking its signature: the Verifier does that
// next, and Binding leaves it to a remote verifier.
func parseToken(tok []byte) (*token, error) {
	if len(tok) == 0 || len(tok) > MaxTokenLen {
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, errors.New("softeat: token size out of range"))
	}
	protected, unprotected, payload, sig, err := decodeToken(tok)
	if err != nil {
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, err)
	}
	kid, ok := kidOf(protected)
	if !ok {
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, errors.New("softeat: protected header is not {alg: ES256, kid}"))
	}
	// The protected header is exactly the profile's {1: -7, 4: kid},
	// deterministically encoded: no crit (RFC 9052 section 3.1 would make
	// an unknown critical label a refusal; the profile has none), no
	// other label, one byte form.
	if !bytes.Equal(protected, protectedHeader(kid)) { // mutation: softeat protected header exact
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, errors.New("softeat: protected header is not exactly {alg: ES256, kid}"))
	}
	// The unprotected header is empty: nothing there can contradict or
	// add to the protected one (a second alg, a kid, a crit).
	if !bytes.Equal(unprotected, emptyUnprotected) { // mutation: softeat unprotected header empty
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, errors.New("softeat: unprotected header is not empty"))
	}
	return &token{kid: kid, protected: protected, payload: payload, sig: sig}, nil
}

// decodeClaims decodes the signed claims strictly and requires them to be
// the profile's deterministic encoding (RFC 8949 section 4.2.1): the bytes
// must equal the re-encoding of what was decoded, so that a claims set has
// one byte form (as posture.DecodeLog requires of a log). This also
// refuses a missing claim, which re-encodes as a zero value.
func decodeClaims(payload []byte) (*claims, error) {
	var c claims
	// The profile has no tagged claims (iat is an untagged NumericDate,
	// RFC 8392); the posture log inside is untagged too.
	if err := detcbor.DecNoTags.Unmarshal(payload, &c); err != nil {
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, fmt.Errorf("softeat: claims: %w", err))
	}
	if !bytes.Equal(encodeClaims(&c), payload) { // mutation: softeat canonical claims
		return nil, evidenceErr(postauth.ReasonEvidenceInvalid, errors.New("softeat: claims are not the profile's deterministic encoding (a non-canonical form or a missing claim)"))
	}
	return &c, nil
}

// emptyUnprotected is the profile's unprotected header: an empty map.
var emptyUnprotected = []byte{0xa0}

// protectedHeader returns the profile's protected header for kid, as it
// appears in a COSE_Sign1: bstr .cbor {1: -7, 4: kid}, deterministically
// encoded.
func protectedHeader(kid []byte) []byte {
	// {1: -7, 4: h'kid'}: the keys sorted, the shortest forms.
	m := []byte{0xa2, 0x01, 0x26, 0x04}
	m = detcbor.AppendHead(m, 2, uint64(len(kid)))
	m = append(m, kid...)
	return append(detcbor.AppendHead(nil, 2, uint64(len(m))), m...)
}

// KeyID is the COSE kid of an attestation key: the first 16 bytes of
// SHA-256 over its DER SubjectPublicKeyInfo.
func KeyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki)
	return sum[:16], nil
}

// es256Signer signs COSE ES256 (r || s) with a crypto.Signer. The signer's rand is
// passed through, so a signer wrapper that passes nil to an
// *ecdsa.PrivateKey gives deterministic RFC 6979 signatures (test vectors).
type es256Signer struct{ key crypto.Signer }

func (s es256Signer) Sign(rand io.Reader, content []byte) ([]byte, error) {
	digest := sha256.Sum256(content)
	der, err := s.key.Sign(rand, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	// COSE wants r || s, each 32 bytes (RFC 9053 section 2.1).
	var r, sv []byte
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&sv) || !seq.Empty() {
		return nil, errors.New("softeat: signer returned a malformed ECDSA signature")
	}
	out := make([]byte, 64)
	if err := putInt(out[:32], r); err != nil {
		return nil, err
	}
	if err := putInt(out[32:], sv); err != nil {
		return nil, err
	}
	return out, nil
}

func putInt(dst, v []byte) error {
	v = bytes.TrimLeft(v, "\x00")
	if len(v) > len(dst) {
		return errors.New("softeat: ECDSA integer too large")
	}
	copy(dst[len(dst)-len(v):], v)
	return nil
}

// LoadKey reads an ECDSA P-256 private key from a PEM file (PKCS #8 or SEC 1).
func LoadKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseKeyPEM(b)
}

// ParseKeyPEM parses an ECDSA P-256 private key from PEM (PKCS #8 or SEC 1).
func ParseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("softeat: no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("softeat: unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("softeat: %w", err)
	}
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("softeat: key is not ECDSA P-256")
	}
	return k, nil
}

// LoadPublicKey reads an ECDSA P-256 public key from a PEM file
// ("PUBLIC KEY", PKIX).
func LoadPublicKey(path string) (*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParsePublicKeyPEM(b)
}

// ParsePublicKeyPEM parses an ECDSA P-256 public key from PEM ("PUBLIC KEY").
func ParsePublicKeyPEM(b []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("softeat: no PUBLIC KEY PEM block")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("softeat: %w", err)
	}
	k, ok := key.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("softeat: key is not ECDSA P-256")
	}
	return k, nil
}
