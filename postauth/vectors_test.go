package postauth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/big"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/crypto/cryptobyte"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
)

var update = flag.Bool("update", false, "rewrite the outputs in testdata/vectors.json from their inputs, generating the inputs of missing vectors")

// vectorsPath is the golden vector file. docs/protocol.md ("Golden
// vectors") describes its format for other implementations.
const vectorsPath = "testdata/vectors.json"

// vectorFile is the JSON document in vectorsPath. Byte strings are
// lowercase hex; 16-bit code points (cipher suite, signature schemes,
// extension) are 4-digit hex; times are Unix seconds.
type vectorFile struct {
	Comment []string `json:"comment"`
	Vectors []vector `json:"vectors"`
}

type vector struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Inputs      vectorInputs   `json:"inputs"`
	Outputs     *vectorOutputs `json:"outputs,omitempty"`
}

type vectorInputs struct {
	// Direction is "client-attests" (CertificateRequest, answered by the
	// TLS client) or "server-attests" (ClientCertificateRequest, answered
	// by the TLS server).
	Direction string `json:"direction"`
	// RequestType is the handshake type of the request: 13 or 17.
	RequestType int `json:"request_type"`
	// SenderRole is the role that sends the authenticator ("client" or
	// "server"); it selects the exporter labels.
	SenderRole      string `json:"sender_role"`
	CipherSuite     string `json:"cipher_suite"`
	CipherSuiteName string `json:"cipher_suite_name"`
	Hash            string `json:"hash"`
	// Exporter holds the only TLS exporter outputs the computation uses.
	Exporter vectorExporter `json:"exporter"`
	// CertificateRequestContext is the request's context (also the
	// exporter context of the attestation exported value).
	CertificateRequestContext string `json:"certificate_request_context"`
	// ContextLayout is informative: "connection" (32 random bytes) or
	// "operation" (16-byte nonce || 16-byte operation binding).
	ContextLayout string `json:"context_layout"`
	// SignatureSchemes is the request's signature_algorithms list, in order.
	SignatureSchemes []string `json:"offered_signature_schemes"`
	// AttestationExtension is the cmw_attestation code point; the request
	// carries extensions signature_algorithms, then an empty cmw_attestation.
	AttestationExtension string `json:"attestation_extension"`
	// CMWEncoding is "cbor" or "json".
	CMWEncoding string `json:"cmw_encoding"`
	// EAPrivateKey signs CertificateVerify (PKCS #8 DER); EACertificate is
	// its self-signed certificate (DER), the only CertificateEntry.
	EAPrivateKey  string `json:"ea_private_key_pkcs8"`
	EACertificate string `json:"ea_certificate_der"`
	// AttestationPrivateKey (ECDSA P-256, PKCS #8 DER) signs the EAT.
	AttestationPrivateKey string `json:"attestation_private_key_pkcs8"`
	// IssuedAt is the EAT iat, Unix seconds.
	IssuedAt int64 `json:"iat"`
}

type vectorExporter struct {
	// TLS-Exporter(handshake_context_label, "", Hash.length)
	HandshakeContextLabel string `json:"handshake_context_label"`
	HandshakeContext      string `json:"handshake_context"`
	// TLS-Exporter(finished_key_label, "", Hash.length)
	FinishedKeyLabel string `json:"finished_key_label"`
	FinishedKey      string `json:"finished_key"`
	// TLS-Exporter(attestation_label, certificate_request_context, 32)
	AttestationLabel         string `json:"attestation_label"`
	AttestationExportedValue string `json:"attestation_exported_value"`
}

type vectorOutputs struct {
	// Request is the encoded CertificateRequest / ClientCertificateRequest.
	Request string `json:"request"`
	// KeyHash = Hash(SPKI of the EA certificate); Binder =
	// Hash(SPKI || attestation_exported_value).
	KeyHash string `json:"key_hash"`
	Binder  string `json:"binder"`
	// UEID and COSEKeyID are derived from the attestation key:
	// kid = SHA-256(SPKI)[:16], ueid = 0x01 || kid.
	UEID      string `json:"ueid"`
	COSEKeyID string `json:"cose_kid"`
	// EATClaims is the COSE payload (deterministic CBOR claims map);
	// EATToken the tagged COSE_Sign1 (ES256, RFC 6979 signature).
	EATClaims string `json:"eat_claims"`
	EATToken  string `json:"eat_token"`
	// CMW is the CMW record; CMWAttestationExtensionData the
	// cmw_attestation extension_data: uint16 length || CMW.
	CMW                         string `json:"cmw"`
	CMWAttestationExtensionData string `json:"cmw_attestation_extension_data"`
	// SignatureScheme is the CertificateVerify scheme.
	SignatureScheme string `json:"signature_scheme"`
	// TranscriptHashCertificate = Hash(handshake_context || request ||
	// certificate), signed in CertificateVerify;
	// TranscriptHashCertificateVerify adds certificate_verify and is
	// the Finished HMAC input.
	TranscriptHashCertificate       string `json:"transcript_hash_certificate"`
	TranscriptHashCertificateVerify string `json:"transcript_hash_certificate_verify"`
	// The three handshake messages and their concatenation.
	Certificate       string `json:"certificate"`
	CertificateVerify string `json:"certificate_verify"`
	Finished          string `json:"finished"`
	Authenticator     string `json:"authenticator"`
}

// vectorSpec describes a vector that -update creates when the file lacks
// it. Its inputs are random once and then fixed in the file.
type vectorSpec struct {
	name, description string
	direction         string // "client-attests" or "server-attests"
	suite             uint16
	eaKey             string // "ecdsa-p256" or "ed25519"
	cmwEncoding       string // "cbor" or "json"
	contextLayout     string // "connection" or "operation"
}

var vectorSpecs = []vectorSpec{
	{
		name:        "client-attests/sha256/ecdsa-p256/cbor",
		description: "A server asks the client for attestation (CertificateRequest) on a TLS_AES_128_GCM_SHA256 connection; the client answers with an ECDSA P-256 key and software EAT Evidence in a CBOR CMW. Connection-mode context.",
		direction:   "client-attests", suite: tls.TLS_AES_128_GCM_SHA256, eaKey: "ecdsa-p256", cmwEncoding: "cbor", contextLayout: "connection",
	},
	{
		name:        "server-attests/sha256/ed25519/cbor",
		description: "A client asks the server for attestation (ClientCertificateRequest) on a TLS_CHACHA20_POLY1305_SHA256 connection; the server answers with an Ed25519 key and software EAT Evidence in a CBOR CMW. Connection-mode context.",
		direction:   "server-attests", suite: tls.TLS_CHACHA20_POLY1305_SHA256, eaKey: "ed25519", cmwEncoding: "cbor", contextLayout: "connection",
	},
	{
		name:        "client-attests/sha384/ecdsa-p256/cbor",
		description: "As client-attests/sha256/ecdsa-p256/cbor on a TLS_AES_256_GCM_SHA384 connection: transcript, Finished, binder and key hash use SHA-384 (the key hash claim has alg 7); CertificateVerify is still ecdsa_secp256r1_sha256.",
		direction:   "client-attests", suite: tls.TLS_AES_256_GCM_SHA384, eaKey: "ecdsa-p256", cmwEncoding: "cbor", contextLayout: "connection",
	},
	{
		name:        "client-attests/sha256/ed25519/json/operation",
		description: "A server asks the client for attestation of one operation: the context is a 16-byte nonce followed by a 16-byte operation binding (here the first 16 bytes of SHA-256(\"POST\" 0x00 \"/pay\" 0x00 SHA-256(`{\"amount\":1}`))). Ed25519 key, JSON CMW.",
		direction:   "client-attests", suite: tls.TLS_AES_128_GCM_SHA256, eaKey: "ed25519", cmwEncoding: "json", contextLayout: "operation",
	},
}

var vectorFileComment = []string{
	"reattest golden vectors: RFC 9261 Exported Authenticators carrying software EAT Evidence in cmw_attestation (docs/protocol.md).",
	"Byte strings are lowercase hex. cipher_suite, offered_signature_schemes, attestation_extension and signature_scheme are 16-bit code points in 4-digit hex. iat is Unix seconds.",
	"inputs are fixed; outputs are recomputed by postauth/vectors_test.go and compared byte for byte (go test ./postauth -run TestVectors -update rewrites them).",
	"The only exporter outputs used are those in inputs.exporter: the handshake context and finished key of the sender's role (empty context, Hash.length bytes) and TLS-Exporter(\"Attestation\", certificate_request_context, 32).",
	"ECDSA signatures are deterministic (RFC 6979); Ed25519 is deterministic. The request carries signature_algorithms then an empty cmw_attestation, in that order.",
}

// deterministicSigner passes a nil randomness source to its key, whatever
// the caller supplies: in Go 1.26 (*ecdsa.PrivateKey).Sign(nil, ...) signs
// per RFC 6979, and Ed25519 ignores randomness.
type deterministicSigner struct{ crypto.Signer }

func (s deterministicSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.Signer.Sign(nil, digest, opts)
}

// recordingAttester keeps the Evidence the wrapped attester produced.
type recordingAttester struct {
	inner postauth.Attester
	ev    postauth.Evidence
}

func (r *recordingAttester) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	ev, err := r.inner.Attest(ctx, ch)
	r.ev = ev
	return ev, err
}

func TestVectors(t *testing.T) {
	f := loadVectors(t)
	if *update {
		for _, s := range vectorSpecs {
			if findVector(f, s.name) == nil {
				f.Vectors = append(f.Vectors, vector{Name: s.name, Description: s.description, Inputs: generateInputs(t, s)})
			}
		}
		f.Comment = vectorFileComment
	}
	for _, s := range vectorSpecs {
		if findVector(f, s.name) == nil {
			t.Errorf("vector %q missing from %s (run with -update to generate it)", s.name, vectorsPath)
		}
	}
	for i := range f.Vectors {
		v := &f.Vectors[i]
		t.Run(v.Name, func(t *testing.T) {
			got := computeOutputs(t, &v.Inputs)
			if *update {
				v.Outputs = got
			} else {
				compareOutputs(t, v.Outputs, got)
			}
			if t.Failed() {
				return
			}
			checkVectorIndependently(t, v)
			checkVectorWithVerifier(t, v)
		})
	}
	if *update && !t.Failed() {
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func loadVectors(t *testing.T) *vectorFile {
	t.Helper()
	f := new(vectorFile)
	b, err := os.ReadFile(vectorsPath)
	switch {
	case errors.Is(err, os.ErrNotExist) && *update:
		return f
	case err != nil:
		t.Fatalf("%v (run with -update to generate the vectors)", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(f); err != nil {
		t.Fatalf("%s: %v", vectorsPath, err)
	}
	return f
}

func findVector(f *vectorFile, name string) *vector {
	for i := range f.Vectors {
		if f.Vectors[i].Name == name {
			return &f.Vectors[i]
		}
	}
	return nil
}

func compareOutputs(t *testing.T, want, got *vectorOutputs) {
	t.Helper()
	if want == nil {
		t.Fatal("vector has no outputs (run with -update)")
	}
	wv, gv := reflect.ValueOf(want).Elem(), reflect.ValueOf(got).Elem()
	for i := range wv.NumField() {
		if w, g := wv.Field(i).String(), gv.Field(i).String(); w != g {
			name := wv.Type().Field(i).Tag.Get("json")
			t.Errorf("%s differs:\nstored   %s\ncomputed %s", name, w, g)
		}
	}
}

// --- generating inputs (-update only) ---

func generateInputs(t *testing.T, s vectorSpec) vectorInputs {
	t.Helper()
	h := vectorSuiteHash(t, s.suite)
	role, reqType := "client", postauth.TypeCertificateRequest
	if s.direction == "server-attests" {
		role, reqType = "server", postauth.TypeClientCertificateRequest
	}
	var ctx []byte
	switch s.contextLayout {
	case "connection":
		ctx = randomBytes(t, 32)
	case "operation":
		body := sha256.Sum256([]byte(`{"amount":1}`))
		op := sha256.Sum256(append([]byte("POST\x00/pay\x00"), body[:]...))
		ctx = append(randomBytes(t, postauth.NonceLen), op[:16]...)
	default:
		t.Fatalf("unknown context layout %q", s.contextLayout)
	}
	var eaKey crypto.Signer
	var err error
	switch s.eaKey {
	case "ecdsa-p256":
		eaKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, eaKey, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown EA key type %q", s.eaKey)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "reattest test vector " + role},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if role == "server" {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"server.example"}
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, eaKey.Public(), eaKey)
	if err != nil {
		t.Fatal(err)
	}
	attKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	schemes := make([]string, len(postauth.DefaultSignatureSchemes))
	for i, sc := range postauth.DefaultSignatureSchemes {
		schemes[i] = hex16(uint16(sc))
	}
	return vectorInputs{
		Direction:       s.direction,
		RequestType:     int(reqType),
		SenderRole:      role,
		CipherSuite:     hex16(s.suite),
		CipherSuiteName: tls.CipherSuiteName(s.suite),
		Hash:            h.String(),
		Exporter: vectorExporter{
			HandshakeContextLabel:    "EXPORTER-" + role + " authenticator handshake context",
			HandshakeContext:         hex.EncodeToString(randomBytes(t, h.Size())),
			FinishedKeyLabel:         "EXPORTER-" + role + " authenticator finished key",
			FinishedKey:              hex.EncodeToString(randomBytes(t, h.Size())),
			AttestationLabel:         postauth.BinderLabel,
			AttestationExportedValue: hex.EncodeToString(randomBytes(t, 32)),
		},
		CertificateRequestContext: hex.EncodeToString(ctx),
		ContextLayout:             s.contextLayout,
		SignatureSchemes:          schemes,
		AttestationExtension:      hex16(postauth.DefaultAttestationExtension),
		CMWEncoding:               s.cmwEncoding,
		EAPrivateKey:              hex.EncodeToString(mustPKCS8(t, eaKey)),
		EACertificate:             hex.EncodeToString(certDER),
		AttestationPrivateKey:     hex.EncodeToString(mustPKCS8(t, attKey)),
		IssuedAt:                  time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Unix(),
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustPKCS8(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func hex16(v uint16) string { return fmt.Sprintf("%04x", v) }

// --- decoding inputs ---

// decodedInputs are a vector's inputs as values.
type decodedInputs struct {
	role      postauth.Role
	reqType   postauth.HandshakeType
	suite     uint16
	hash      crypto.Hash
	hc, fk    []byte
	exported  []byte
	context   []byte
	schemes   []tls.SignatureScheme
	ext       uint16
	encoding  postauth.CMWEncoding
	eaKey     crypto.Signer
	cert      *x509.Certificate
	certDER   []byte
	attKey    *ecdsa.PrivateKey
	issuedAt  time.Time
	verifyAt  time.Time
	exporters vectorExporter
}

func decodeInputs(t *testing.T, in *vectorInputs) *decodedInputs {
	t.Helper()
	d := &decodedInputs{exporters: in.Exporter}
	switch in.SenderRole {
	case "client":
		d.role = postauth.RoleClient
	case "server":
		d.role = postauth.RoleServer
	default:
		t.Fatalf("sender_role %q", in.SenderRole)
	}
	d.reqType = postauth.HandshakeType(in.RequestType)
	d.suite = parseHex16(t, in.CipherSuite)
	d.hash = vectorSuiteHash(t, d.suite)
	if d.hash.String() != in.Hash {
		t.Fatalf("hash %q does not match cipher suite %s", in.Hash, in.CipherSuite)
	}
	d.hc = mustHex(t, in.Exporter.HandshakeContext)
	d.fk = mustHex(t, in.Exporter.FinishedKey)
	d.exported = mustHex(t, in.Exporter.AttestationExportedValue)
	d.context = mustHex(t, in.CertificateRequestContext)
	for _, s := range in.SignatureSchemes {
		d.schemes = append(d.schemes, tls.SignatureScheme(parseHex16(t, s)))
	}
	d.ext = parseHex16(t, in.AttestationExtension)
	switch in.CMWEncoding {
	case "cbor":
		d.encoding = postauth.CMWCBOR
	case "json":
		d.encoding = postauth.CMWJSON
	default:
		t.Fatalf("cmw_encoding %q", in.CMWEncoding)
	}
	key, err := x509.ParsePKCS8PrivateKey(mustHex(t, in.EAPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	d.eaKey = key.(crypto.Signer)
	d.certDER = mustHex(t, in.EACertificate)
	if d.cert, err = x509.ParseCertificate(d.certDER); err != nil {
		t.Fatal(err)
	}
	key, err = x509.ParsePKCS8PrivateKey(mustHex(t, in.AttestationPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	var ok bool
	if d.attKey, ok = key.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("attestation key is %T, want ECDSA P-256", key)
	}
	d.issuedAt = time.Unix(in.IssuedAt, 0)
	d.verifyAt = d.issuedAt.Add(5 * time.Second)
	return d
}

func vectorSuiteHash(t *testing.T, suite uint16) crypto.Hash {
	t.Helper()
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_CHACHA20_POLY1305_SHA256:
		return crypto.SHA256
	case tls.TLS_AES_256_GCM_SHA384:
		return crypto.SHA384
	}
	t.Fatalf("cipher suite %04x", suite)
	return 0
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func parseHex16(t *testing.T, s string) uint16 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 16)
	if err != nil || len(s) != 4 {
		t.Fatalf("code point %q: want 4 hex digits", s)
	}
	return uint16(v)
}

// exporter returns the stored exporter outputs and fails for anything
// else, so the test also checks which labels, contexts and lengths the
// package asks for.
func (d *decodedInputs) exporter() postauth.Exporter {
	return func(label string, context []byte, length int) ([]byte, error) {
		switch {
		case label == d.exporters.HandshakeContextLabel && len(context) == 0 && length == len(d.hc):
			return bytes.Clone(d.hc), nil
		case label == d.exporters.FinishedKeyLabel && len(context) == 0 && length == len(d.fk):
			return bytes.Clone(d.fk), nil
		case label == d.exporters.AttestationLabel && bytes.Equal(context, d.context) && length == len(d.exported):
			return bytes.Clone(d.exported), nil
		}
		return nil, fmt.Errorf("vector exporter has no value for label %q, context %x, length %d", label, context, length)
	}
}

func (d *decodedInputs) channel(t *testing.T) *postauth.Channel {
	t.Helper()
	ch, err := postauth.NewChannelFromExporter(d.suite, d.exporter())
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// --- computing outputs with the package ---

func computeOutputs(t *testing.T, in *vectorInputs) *vectorOutputs {
	t.Helper()
	d := decodeInputs(t, in)
	ch := d.channel(t)
	req := &postauth.Request{Type: d.reqType, Context: d.context, Extensions: []postauth.Extension{
		{Type: postauth.ExtensionSignatureAlgorithms, Data: signatureAlgorithmsData(d.schemes)},
		{Type: d.ext, Data: []byte{}},
	}}
	reqBytes, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	id, err := postauth.NewIdentity(deterministicSigner{d.eaKey}, d.certDER)
	if err != nil {
		t.Fatal(err)
	}
	att, err := softeat.NewAttester(deterministicSigner{d.attKey}, softeat.WithClock(func() time.Time { return d.issuedAt }))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingAttester{inner: att}
	responder, err := postauth.NewResponder(id, rec, postauth.WithAttestationExtension(d.ext), postauth.WithCMWEncoding(d.encoding))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := responder.Respond(context.Background(), ch, d.role, req)
	if err != nil {
		t.Fatalf("Respond: %v", err)
	}
	spki := d.cert.RawSubjectPublicKeyInfo
	binder, err := ch.Binder(spki, d.context)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := softeat.KeyID(d.attKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	claims := coseSign1Parts(t, rec.ev.Value)[2].([]byte)
	cmwBytes, err := postauth.EncodeCMW(rec.ev, d.encoding)
	if err != nil {
		t.Fatal(err)
	}
	a, err := postauth.ParseAuthenticator(raw)
	if err != nil {
		t.Fatal(err)
	}
	var extData []byte
	for _, e := range a.Certificates[0].Extensions {
		if e.Type == d.ext {
			extData = e.Data
		}
	}
	msgs := splitHandshakeMessages(t, raw)
	if len(msgs) != 3 {
		t.Fatalf("authenticator has %d messages, want 3", len(msgs))
	}
	thCert := hashConcat(d.hash, d.hc, reqBytes, msgs[0])
	thCV := hashConcat(d.hash, d.hc, reqBytes, msgs[0], msgs[1])
	return &vectorOutputs{
		Request:                         hex.EncodeToString(reqBytes),
		KeyHash:                         hex.EncodeToString(ch.KeyHash(spki)),
		Binder:                          hex.EncodeToString(binder),
		UEID:                            hex.EncodeToString(att.UEID()),
		COSEKeyID:                       hex.EncodeToString(kid),
		EATClaims:                       hex.EncodeToString(claims),
		EATToken:                        hex.EncodeToString(rec.ev.Value),
		CMW:                             hex.EncodeToString(cmwBytes),
		CMWAttestationExtensionData:     hex.EncodeToString(extData),
		SignatureScheme:                 hex16(uint16(a.Scheme)),
		TranscriptHashCertificate:       hex.EncodeToString(thCert),
		TranscriptHashCertificateVerify: hex.EncodeToString(thCV),
		Certificate:                     hex.EncodeToString(msgs[0]),
		CertificateVerify:               hex.EncodeToString(msgs[1]),
		Finished:                        hex.EncodeToString(msgs[2]),
		Authenticator:                   hex.EncodeToString(raw),
	}
}

func signatureAlgorithmsData(schemes []tls.SignatureScheme) []byte {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, s := range schemes {
			b.AddUint16(uint16(s))
		}
	})
	return b.BytesOrPanic()
}

// splitHandshakeMessages splits msg_type(1) || uint24 length || body
// messages.
func splitHandshakeMessages(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	s := cryptobyte.String(b)
	for !s.Empty() {
		start := s
		var typ uint8
		var body cryptobyte.String
		if !s.ReadUint8(&typ) || !s.ReadUint24LengthPrefixed(&body) {
			t.Fatal("bad handshake message framing")
		}
		out = append(out, start[:len(start)-len(s)])
	}
	return out
}

func newVectorHash(h crypto.Hash) hash.Hash {
	if h == crypto.SHA384 {
		return sha512.New384()
	}
	return sha256.New()
}

func hashConcat(h crypto.Hash, parts ...[]byte) []byte {
	hh := newVectorHash(h)
	for _, p := range parts {
		hh.Write(p)
	}
	return hh.Sum(nil)
}

// coseSign1Parts decodes a tagged COSE_Sign1 (tag 18) into its four
// elements: protected (bstr), unprotected (map), payload (bstr), signature.
func coseSign1Parts(t *testing.T, tok []byte) []any {
	t.Helper()
	var tag cbor.Tag
	if err := cbor.Unmarshal(tok, &tag); err != nil {
		t.Fatalf("COSE_Sign1: %v", err)
	}
	parts, ok := tag.Content.([]any)
	if tag.Number != 18 || !ok || len(parts) != 4 {
		t.Fatalf("not a tagged COSE_Sign1: tag %d", tag.Number)
	}
	return parts
}

// --- checking the stored vector without the package ---

// checkVectorIndependently recomputes every stored output it can from the
// stored inputs and outputs with plain crypto, CBOR and JSON, never with
// postauth or softeat: what another implementation has to reproduce.
func checkVectorIndependently(t *testing.T, v *vector) {
	t.Helper()
	d := decodeInputs(t, &v.Inputs)
	o := v.Outputs
	get := func(s string) []byte { return mustHex(t, s) }
	spki := d.cert.RawSubjectPublicKeyInfo
	roleLabel := map[postauth.Role]string{postauth.RoleClient: "client", postauth.RoleServer: "server"}[d.role]

	// Exporter labels follow the sender of the authenticator.
	if d.exporters.HandshakeContextLabel != "EXPORTER-"+roleLabel+" authenticator handshake context" ||
		d.exporters.FinishedKeyLabel != "EXPORTER-"+roleLabel+" authenticator finished key" ||
		d.exporters.AttestationLabel != "Attestation" {
		t.Error("exporter labels do not match the sender role")
	}
	wantType := map[postauth.Role]postauth.HandshakeType{postauth.RoleClient: 13, postauth.RoleServer: 17}[d.role]
	if d.reqType != wantType {
		t.Errorf("request type %d for sender %s", d.reqType, roleLabel)
	}

	// Key hash and binder.
	if !bytes.Equal(get(o.KeyHash), hashConcat(d.hash, spki)) {
		t.Error("key_hash != Hash(SPKI)")
	}
	binder := hashConcat(d.hash, spki, d.exported)
	if !bytes.Equal(get(o.Binder), binder) {
		t.Error("binder != Hash(SPKI || attestation_exported_value)")
	}

	// Request: type || uint24 len || context<0..255> || extensions.
	var rb cryptobyte.Builder
	rb.AddUint8(uint8(d.reqType))
	rb.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(d.context) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(13)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(signatureAlgorithmsData(d.schemes)) })
			b.AddUint16(d.ext)
			b.AddUint16(0)
		})
	})
	reqBytes := rb.BytesOrPanic()
	if !bytes.Equal(get(o.Request), reqBytes) {
		t.Error("request encoding differs")
	}

	// EAT claims: a deterministic CBOR map with exactly these claims.
	kidSum := sha256.Sum256(mustMarshalPKIX(t, d.attKey.Public()))
	kid := kidSum[:16]
	if !bytes.Equal(get(o.COSEKeyID), kid) || !bytes.Equal(get(o.UEID), append([]byte{0x01}, kid...)) {
		t.Error("cose_kid or ueid not derived from the attestation key")
	}
	alg := uint64(1)
	if d.hash == crypto.SHA384 {
		alg = 7
	}
	wantClaims, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	claims, err := wantClaims.Marshal(map[int]any{
		6:      v.Inputs.IssuedAt,
		10:     binder,
		256:    get(o.UEID),
		265:    "tag:github.com,2026:reattest/software-eat/v1",
		-70000: []any{alg, get(o.KeyHash)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(get(o.EATClaims), claims) {
		t.Errorf("eat_claims differ from the independently encoded claims map:\nstored %x\nwant   %x", get(o.EATClaims), claims)
	}

	// COSE_Sign1: protected {1: -7, 4: kid}, empty unprotected map,
	// payload = claims, ES256 signature (r || s) over Sig_structure.
	tok := get(o.EATToken)
	parts := coseSign1Parts(t, tok)
	protected, _ := parts[0].([]byte)
	wantProtected, _ := wantClaims.Marshal(map[int]any{1: -7, 4: kid})
	if !bytes.Equal(protected, wantProtected) {
		t.Errorf("protected header %x, want %x", protected, wantProtected)
	}
	if m, ok := parts[1].(map[any]any); !ok || len(m) != 0 {
		t.Error("unprotected header is not an empty map")
	}
	if p, _ := parts[2].([]byte); !bytes.Equal(p, claims) {
		t.Error("COSE payload is not eat_claims")
	}
	sig, _ := parts[3].([]byte)
	tbs, _ := wantClaims.Marshal([]any{"Signature1", protected, []byte{}, claims})
	digest := sha256.Sum256(tbs)
	if len(sig) != 64 || !ecdsa.Verify(&d.attKey.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Error("EAT COSE_Sign1 signature does not verify")
	}

	// CMW record: [type, value, ind = 4 (evidence)].
	cmwBytes := get(o.CMW)
	switch v.Inputs.CMWEncoding {
	case "cbor":
		want, _ := wantClaims.Marshal([]any{"application/eat+cwt", tok, 4})
		if !bytes.Equal(cmwBytes, want) {
			t.Errorf("CBOR CMW %x, want %x", cmwBytes, want)
		}
	case "json":
		var rec []any
		if err := json.Unmarshal(cmwBytes, &rec); err != nil || len(rec) != 3 {
			t.Fatalf("JSON CMW: %v", err)
		}
		val, err := base64.RawURLEncoding.DecodeString(fmt.Sprint(rec[1]))
		if rec[0] != "application/eat+cwt" || err != nil || !bytes.Equal(val, tok) || rec[2] != float64(4) {
			t.Errorf("JSON CMW %s is not [type, base64url(token), 4]", cmwBytes)
		}
	}
	extData := get(o.CMWAttestationExtensionData)
	if !bytes.Equal(extData, append([]byte{byte(len(cmwBytes) >> 8), byte(len(cmwBytes))}, cmwBytes...)) {
		t.Error("cmw_attestation extension data is not uint16 length || CMW")
	}

	// Certificate: type 11, the request's context, one entry carrying
	// cmw_attestation.
	var cb cryptobyte.Builder
	cb.AddUint8(11)
	cb.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(d.context) })
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(d.certDER) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16(d.ext)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(extData) })
			})
		})
	})
	certMsg := cb.BytesOrPanic()
	if !bytes.Equal(get(o.Certificate), certMsg) {
		t.Error("Certificate message differs")
	}

	// CertificateVerify over 64 spaces || "Exported Authenticator" || 0 ||
	// Hash(handshake context || request || Certificate).
	thCert := hashConcat(d.hash, d.hc, reqBytes, certMsg)
	if !bytes.Equal(get(o.TranscriptHashCertificate), thCert) {
		t.Error("transcript_hash_certificate differs")
	}
	cv := get(o.CertificateVerify)
	scheme := parseHex16(t, o.SignatureScheme)
	s := cryptobyte.String(cv)
	var typ uint8
	var body, cvSig cryptobyte.String
	var cvScheme uint16
	if !s.ReadUint8(&typ) || typ != 15 || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() ||
		!body.ReadUint16(&cvScheme) || !body.ReadUint16LengthPrefixed(&cvSig) || !body.Empty() || cvScheme != scheme {
		t.Fatal("bad CertificateVerify encoding")
	}
	signed := append(append(bytes.Repeat([]byte{0x20}, 64), "Exported Authenticator\x00"...), thCert...)
	switch pub := d.cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(signed)
		if scheme != 0x0403 || !ecdsa.VerifyASN1(pub, sum[:], cvSig) {
			t.Error("CertificateVerify (ecdsa_secp256r1_sha256) does not verify")
		}
	case ed25519.PublicKey:
		if scheme != 0x0807 || !ed25519.Verify(pub, signed, cvSig) {
			t.Error("CertificateVerify (ed25519) does not verify")
		}
	default:
		t.Fatalf("EA key type %T", pub)
	}

	// Finished = HMAC(finished key, Hash(... || CertificateVerify)).
	thCV := hashConcat(d.hash, d.hc, reqBytes, certMsg, cv)
	if !bytes.Equal(get(o.TranscriptHashCertificateVerify), thCV) {
		t.Error("transcript_hash_certificate_verify differs")
	}
	mac := hmac.New(func() hash.Hash { return newVectorHash(d.hash) }, d.fk)
	mac.Write(thCV)
	fin := append([]byte{20, 0, 0, byte(d.hash.Size())}, mac.Sum(nil)...)
	if !bytes.Equal(get(o.Finished), fin) {
		t.Error("Finished differs")
	}
	if !bytes.Equal(get(o.Authenticator), bytes.Join([][]byte{certMsg, cv, fin}, nil)) {
		t.Error("authenticator is not Certificate || CertificateVerify || Finished")
	}
}

func mustMarshalPKIX(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// --- checking the stored vector with the relying party's code path ---

// checkVectorWithVerifier validates the stored request and authenticator
// as a relying party would: RelyingParty.Verify with a softeat Verifier that
// trusts the stored attestation key, at a fixed time.
func checkVectorWithVerifier(t *testing.T, v *vector) {
	t.Helper()
	d := decodeInputs(t, &v.Inputs)
	req, err := postauth.ParseRequest(mustHex(t, v.Outputs.Request))
	if err != nil {
		t.Fatal(err)
	}
	raw := mustHex(t, v.Outputs.Authenticator)
	verifier, err := softeat.NewVerifier([]crypto.PublicKey{d.attKey.Public()}, softeat.WithClock(func() time.Time { return d.verifyAt }))
	if err != nil {
		t.Fatal(err)
	}
	rp := func(kt postauth.KeyTrust, roots *x509.CertPool) *postauth.RelyingParty {
		return newRelyingParty(t, verifier,
			postauth.WithFormats(softeat.MediaType),
			postauth.WithAttestationExtension(d.ext),
			postauth.WithClock(func() time.Time { return d.verifyAt }),
			postauth.WithKeyTrust(kt), postauth.WithRoots(roots),
		)
	}
	// The EA certificate is self-signed: trust it by the Evidence alone...
	res, err := rp(postauth.KeyTrustAttestedKeyOnly, nil).Verify(context.Background(), d.channel(t), d.role, req, raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.Attester() != d.role || res.Format() != softeat.Format || res.HardwareBacked() ||
		!bytes.Equal(res.KeyHash(), mustHex(t, v.Outputs.KeyHash)) ||
		!bytes.Equal(res.MachineID(), mustHex(t, v.Outputs.UEID)) ||
		!res.AttestedAt().Equal(d.issuedAt) || !res.VerifiedAt().Equal(d.verifyAt) {
		t.Errorf("unexpected result: attester %v format %q key hash %x machine %x attested %v",
			res.Attester(), res.Format(), res.KeyHash(), res.MachineID(), res.AttestedAt())
	}
	// ...or as its own root.
	roots := x509.NewCertPool()
	roots.AddCert(d.cert)
	if _, err := rp(postauth.KeyTrustChain, roots).Verify(context.Background(), d.channel(t), d.role, req, raw); err != nil {
		t.Errorf("Verify with the certificate as root: %v", err)
	}
	// The check is not vacuous: one flipped bit of the Finished MAC fails.
	bad := bytes.Clone(raw)
	bad[len(bad)-1] ^= 1
	if _, err := rp(postauth.KeyTrustAttestedKeyOnly, nil).Verify(context.Background(), d.channel(t), d.role, req, bad); !errors.Is(err, postauth.ErrBadFinished) {
		t.Errorf("tampered authenticator: want ErrBadFinished, got %v", err)
	}
	// The other role's labels give another Finished key: a reflected
	// authenticator does not verify.
	other := postauth.RoleServer
	if d.role == postauth.RoleServer {
		other = postauth.RoleClient
	}
	if _, err := rp(postauth.KeyTrustAttestedKeyOnly, nil).Verify(context.Background(), d.channel(t), other, req, raw); err == nil {
		t.Error("authenticator verified for the other role")
	}
}
