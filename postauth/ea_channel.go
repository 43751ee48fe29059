package postauth

import (
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"fmt"
	"hash"
	"slices"
	"sync"
)

// Role names an endpoint of a TLS connection: the one that sends an
// authenticator determines the exporter labels it is made with.
type Role uint8

const (
	// RoleClient is the TLS client.
	RoleClient Role = 1
	// RoleServer is the TLS server.
	RoleServer Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleServer:
		return "server"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Exporter labels (RFC 9261 section 5.1).
const (
	labelClientHandshakeContext = "EXPORTER-client authenticator handshake context"
	labelServerHandshakeContext = "EXPORTER-server authenticator handshake context"
	labelClientFinishedKey      = "EXPORTER-client authenticator finished key"
	labelServerFinishedKey      = "EXPORTER-server authenticator finished key"
	// connectionIDLabel derives a per-connection identifier for caches.
	connectionIDLabel = "EXPORTER-reattest connection id"
)

// Exporter is a TLS 1.3 keying material exporter (RFC 8446 section 7.5), such
// as [tls.ConnectionState.ExportKeyingMaterial].
type Exporter func(label string, context []byte, length int) ([]byte, error)

// Channel is the exporter view of one TLS 1.3 connection that Exported
// Authenticators and the attestation binder are derived from. Build it with
// [NewChannel] from a [tls.ConnectionState] (crypto/tls or quic-go). A
// Channel caches the per-connection exporter values it derives; it is safe
// for concurrent use.
type Channel struct {
	export Exporter
	suite  uint16
	hash   crypto.Hash
	// peer is what the Channel keeps of the leaf certificate the peer
	// authenticated the TLS connection with (nil if none): its key and
	// subject, not the certificate, so that an idle connection's state stays
	// small.
	peer *peerIdentity

	mu   sync.Mutex            // guards keys
	keys [3]*authenticatorKeys // indexed by Role
}

type peerIdentity struct {
	spki    []byte // DER SubjectPublicKeyInfo
	pub     crypto.PublicKey
	subject string
}

type authenticatorKeys struct {
	handshakeContext []byte
	finishedKey      []byte
}

// NewChannel checks that cs describes a completed TLS 1.3 connection and
// returns its Channel. It never panics: a nil or zero ConnectionState, an
// incomplete handshake (for example 0-RTT data) or an older TLS version give
// a CodeInvalid *Error wrapping [ErrNoConnectionState],
// [ErrHandshakeIncomplete] or [ErrNotTLS13].
func NewChannel(cs *tls.ConnectionState) (*Channel, error) {
	switch {
	case cs == nil:
		return nil, invalid(ReasonNoTLS, ErrNoConnectionState)
	case cs.Version != tls.VersionTLS13:
		if cs.Version == 0 && !cs.HandshakeComplete {
			return nil, invalid(ReasonNoTLS, ErrNoConnectionState)
		}
		return nil, invalid(ReasonTLS13Required, ErrNotTLS13)
	case !cs.HandshakeComplete:
		return nil, invalid(ReasonHandshakeIncomplete, ErrHandshakeIncomplete)
	}
	// Only a peer certificate that TLS verified establishes an identity:
	// with RequireAnyClientCert or InsecureSkipVerify it proves nothing.
	var peer *peerIdentity
	if len(cs.PeerCertificates) > 0 && len(cs.VerifiedChains) > 0 { // mutation: verified peer only
		leaf := cs.PeerCertificates[0]
		peer = &peerIdentity{spki: leaf.RawSubjectPublicKeyInfo, pub: leaf.PublicKey, subject: leaf.Subject.String()}
	}
	// Keep the exporter, not the certificates: a copy of the state without
	// them (the exporter must not change under us, and must not pin the
	// peer's chain in memory).
	state := *cs
	state.PeerCertificates, state.VerifiedChains = nil, nil
	state.SignedCertificateTimestamps, state.OCSPResponse = nil, nil
	ch, err := NewChannelFromExporter(state.CipherSuite, safeExporter(state.ExportKeyingMaterial))
	if err != nil {
		return nil, err
	}
	ch.peer = peer
	return ch, nil
}

// NewChannelFromExporter returns a Channel for a TLS 1.3 connection of
// another stack, given its cipher suite and exporter. The caller asserts
// that export is a TLS 1.3 exporter of a completed handshake: with TLS 1.2 an
// exporter is not unique per connection. Key trust mode KeyTrustSamePeer is
// unavailable on such a Channel (it knows no peer certificate).
func NewChannelFromExporter(suite uint16, export Exporter) (*Channel, error) {
	if export == nil {
		return nil, invalid(ReasonNoTLS, ErrNoConnectionState)
	}
	h, err := suiteHash(suite)
	if err != nil {
		return nil, err
	}
	return &Channel{export: export, suite: suite, hash: h}, nil
}

// safeExporter turns a panic of export into an error: a hand-made
// tls.ConnectionState without keying material panics when asked to export.
func safeExporter(export Exporter) Exporter {
	return func(label string, context []byte, length int) (out []byte, err error) {
		defer func() {
			if recover() != nil {
				out, err = nil, ErrNoConnectionState
			}
		}()
		return export(label, context, length)
	}
}

func suiteHash(suite uint16) (crypto.Hash, error) {
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_CHACHA20_POLY1305_SHA256:
		return crypto.SHA256, nil
	case tls.TLS_AES_256_GCM_SHA384:
		return crypto.SHA384, nil
	}
	return 0, invalid(ReasonUnsupportedSuite, fmt.Errorf("%w: 0x%04x", ErrUnsupportedSuite, suite))
}

// Hash is the hash function of the connection's cipher suite, used for the
// transcript, the binder and the key hash.
func (c *Channel) Hash() crypto.Hash { return c.hash }

// CipherSuite is the connection's TLS 1.3 cipher suite.
func (c *Channel) CipherSuite() uint16 { return c.suite }

// PeerSPKI is the DER SubjectPublicKeyInfo of the leaf certificate the peer
// presented in the TLS handshake and TLS verified (it has VerifiedChains),
// or nil: the key that KeyTrustSamePeer requires.
func (c *Channel) PeerSPKI() []byte {
	if c.peer == nil {
		return nil
	}
	return slices.Clone(c.peer.spki)
}

func (c *Channel) newHash() hash.Hash {
	if c.hash == crypto.SHA384 {
		return sha512.New384()
	}
	return sha256.New()
}

// keysFor returns the Handshake Context and Finished MAC Key for
// authenticators sent by role (RFC 9261 section 5.1: the labels are those of
// the sender, the exporter context is empty, the length is the hash length).
func (c *Channel) keysFor(role Role) (*authenticatorKeys, error) {
	if role != RoleClient && role != RoleServer {
		return nil, fmt.Errorf("postauth: invalid role %d", role)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.keys[role]; k != nil {
		return k, nil
	}
	hcLabel, fkLabel := labelClientHandshakeContext, labelClientFinishedKey
	if role == RoleServer { // mutation: role labels
		hcLabel, fkLabel = labelServerHandshakeContext, labelServerFinishedKey
	}
	n := c.hash.Size()
	hc, err := c.export(hcLabel, nil, n)
	if err != nil {
		return nil, invalid(ReasonExporterFailed, err)
	}
	fk, err := c.export(fkLabel, nil, n)
	if err != nil {
		return nil, invalid(ReasonExporterFailed, err)
	}
	k := &authenticatorKeys{handshakeContext: hc, finishedKey: fk}
	c.keys[role] = k
	return k, nil
}

// ID returns a 16-byte identifier of the connection derived from its
// exporter. Both endpoints compute the same value; it differs for every
// connection. Caches use it when no per-connection hook is installed.
func (c *Channel) ID() ([]byte, error) {
	id, err := c.export(connectionIDLabel, nil, 16)
	if err != nil {
		return nil, invalid(ReasonExporterFailed, err)
	}
	return id, nil
}
