package streams

import (
	"errors"
	"fmt"
	"io"

	"github.com/reattest/reattest/postauth"
)

// ALPN is the application protocol (RFC 7301) that negotiates the stream
// binding, version 1. Both bindings (TLS over TCP, QUIC) use it; a peer that
// did not negotiate it is not spoken to.
const ALPN = "reattest-stream/1"

// FrameType is the type of a frame of the stream binding
// (docs/protocol.md section 10).
type FrameType uint8

// Frame types. Every frame is type (uint8) || length (uint24) || payload.
const (
	// FrameData carries application data (TLS binding only; over QUIC,
	// application data travels on its own streams).
	FrameData FrameType = 0x00
	// FrameRequest carries an RFC 9261 authenticator request
	// (CertificateRequest or ClientCertificateRequest) that offers
	// cmw_attestation.
	FrameRequest FrameType = 0x01
	// FrameAuthenticator carries the answer to a request: an attested
	// Exported Authenticator, or the empty authenticator of a refusal.
	FrameAuthenticator FrameType = 0x02
	// FrameReady says that the sender has the verdict it requires about its
	// peer (or requires none): application data may flow to it.
	FrameReady FrameType = 0x03
	// FramePosture announces that the sender's posture changed (its new
	// register value, informational), asking the peer to attest it again.
	FramePosture FrameType = 0x04
	// FrameWindow grants the peer more flow-control credit for FrameData
	// (TLS binding only).
	FrameWindow FrameType = 0x05
	// FrameClose ends the connection with an error code and a reason
	// (TLS binding; QUIC uses CONNECTION_CLOSE).
	FrameClose FrameType = 0x06
)

// Size limits of the binding.
const (
	// FrameHeaderLen is the length of a frame header: type and uint24
	// length.
	FrameHeaderLen = 4
	// MaxDataLen bounds the payload of a FrameData.
	MaxDataLen = 16 << 10
	// MaxPostureLen bounds the payload of a FramePosture (a SHA-512
	// register value).
	MaxPostureLen = 64
	// MaxReasonLen bounds the reason of a FrameClose.
	MaxReasonLen = 64
	// InitialWindow is the flow-control credit each endpoint of a TLS
	// binding starts with for the application data it sends: the most a
	// receiver ever buffers, held data included.
	InitialWindow = 256 << 10
	// MaxWindow bounds the credit a sender may hold (2^31 - 1).
	MaxWindow = 1<<31 - 1
)

// Errors of the frame codec. ReadFrame wraps them in a *postauth.Error with
// the reason the connection is closed with.
var (
	ErrUnknownFrame  = errors.New("streams: unknown frame type")
	ErrFrameTooLarge = errors.New("streams: frame over the size limit of its type")
	ErrBadFrame      = errors.New("streams: malformed frame")
)

func (t FrameType) String() string {
	switch t {
	case FrameData:
		return "DATA"
	case FrameRequest:
		return "REQUEST"
	case FrameAuthenticator:
		return "AUTHENTICATOR"
	case FrameReady:
		return "READY"
	case FramePosture:
		return "POSTURE"
	case FrameWindow:
		return "WINDOW"
	case FrameClose:
		return "CLOSE"
	}
	return fmt.Sprintf("frame(0x%02x)", uint8(t))
}

// limits returns the smallest and largest payload of type t, and false for
// an unknown type.
func limits(t FrameType) (lo, hi int, ok bool) {
	switch t {
	case FrameData:
		return 1, MaxDataLen, true
	case FrameRequest:
		return 1, postauth.MaxRequestLen, true
	case FrameAuthenticator:
		return 1, postauth.MaxAuthenticatorLen, true
	case FrameReady:
		return 0, 0, true
	case FramePosture:
		return 0, MaxPostureLen, true
	case FrameWindow:
		return 4, 4, true
	case FrameClose:
		return 3, 3 + MaxReasonLen, true
	}
	return 0, 0, false
}

// AppendFrame appends the encoding of a frame of type t to b. It fails if t
// is unknown or payload is outside the type's size limits.
func AppendFrame(b []byte, t FrameType, payload []byte) ([]byte, error) {
	lo, hi, ok := limits(t)
	switch {
	case !ok:
		return b, ErrUnknownFrame
	case len(payload) > hi:
		return b, ErrFrameTooLarge
	case len(payload) < lo:
		return b, ErrBadFrame
	}
	n := len(payload)
	b = append(b, byte(t), byte(n>>16), byte(n>>8), byte(n))
	return append(b, payload...), nil
}

// ReadFrame reads one frame from r and returns its type and payload. The
// payload is read into buf when it fits (the caller may reuse buf for the
// next frame once it is done with the payload), otherwise into a new slice
// of exactly the payload's length. The length is checked against the
// type's limit before anything is allocated or read, so a peer cannot make
// the reader hold more than the largest frame (64 KiB and change).
//
// A frame of an unknown type or with a bad length fails with a
// *postauth.Error: reason protocol_violation, or frame_too_large. Errors of
// r are returned as they are (io.EOF before a header, io.ErrUnexpectedEOF
// within a frame).
func ReadFrame(r io.Reader, buf []byte) (FrameType, []byte, error) {
	return readFrame(r, func(n int) []byte {
		if n <= cap(buf) {
			return buf[:n]
		}
		return make([]byte, n)
	})
}

// readFrame is ReadFrame with the payload read into alloc(length), called
// only once the header is in and checked.
func readFrame(r io.Reader, alloc func(n int) []byte) (FrameType, []byte, error) {
	var h [FrameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	t := FrameType(h[0])
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	lo, hi, ok := limits(t)
	if !ok {
		return t, nil, postauth.ErrorFor(postauth.ReasonProtocolViolation, fmt.Errorf("%w: 0x%02x", ErrUnknownFrame, h[0]))
	}
	if n > hi { // mutation: frame size limit
		return t, nil, postauth.ErrorFor(postauth.ReasonFrameTooLarge, fmt.Errorf("%w: %v of %d bytes", ErrFrameTooLarge, t, n))
	}
	if n < lo {
		return t, nil, postauth.ErrorFor(postauth.ReasonProtocolViolation, fmt.Errorf("%w: %v of %d bytes", ErrBadFrame, t, n))
	}
	p := alloc(n)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return t, nil, err
	}
	return t, p, nil
}

// AppendWindow appends the payload of a FrameWindow granting n more bytes.
func AppendWindow(b []byte, n uint32) []byte {
	return append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// ParseWindow returns the credit a FrameWindow payload grants (1 to
// MaxWindow bytes).
func ParseWindow(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, ErrBadFrame
	}
	n := uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])
	if n == 0 || n > MaxWindow {
		return 0, fmt.Errorf("%w: window increment %d", ErrBadFrame, n)
	}
	return n, nil
}

// AppendClose appends the payload of a FrameClose: code (uint16) ||
// reason<0..64>. A reason that is not a wire token ([a-z0-9_], at most
// MaxReasonLen bytes) is sent empty.
func AppendClose(b []byte, code ErrorCode, reason postauth.Reason) []byte {
	r := string(reason)
	if !isToken(r) {
		r = ""
	}
	b = append(b, byte(code>>8), byte(code), byte(len(r)))
	return append(b, r...)
}

// ParseClose returns the code and reason of a FrameClose payload. A reason
// that is not a token fails; a token that names no [postauth.Reason]
// parses, and callers may ignore it.
func ParseClose(p []byte) (ErrorCode, postauth.Reason, error) {
	if len(p) < 3 || len(p) != 3+int(p[2]) {
		return 0, "", ErrBadFrame
	}
	r := string(p[3:])
	if r != "" && !isToken(r) {
		return 0, "", fmt.Errorf("%w: close reason is not a token", ErrBadFrame)
	}
	return ErrorCode(p[0])<<8 | ErrorCode(p[1]), postauth.Reason(r), nil
}

// isToken reports whether s is a wire reason token: 1 to MaxReasonLen
// bytes of a-z, 0-9 and _.
func isToken(s string) bool {
	if len(s) == 0 || len(s) > MaxReasonLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
