package streams

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/reattest/reattest/postauth"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		t FrameType
		p []byte
	}{
		{FrameData, []byte("x")},
		{FrameData, bytes.Repeat([]byte{1}, MaxDataLen)},
		{FrameRequest, []byte{13, 0, 0, 0}},
		{FrameAuthenticator, bytes.Repeat([]byte{2}, postauth.MaxAuthenticatorLen)},
		{FrameReady, nil},
		{FramePosture, bytes.Repeat([]byte{3}, MaxPostureLen)},
		{FrameWindow, AppendWindow(nil, 1)},
		{FrameClose, AppendClose(nil, PolicyDenied, postauth.ReasonPostureDenied)},
	} {
		b, err := AppendFrame(nil, tc.t, tc.p)
		if err != nil {
			t.Fatalf("%v: %v", tc.t, err)
		}
		typ, p, err := ReadFrame(bytes.NewReader(b), make([]byte, 16))
		if err != nil || typ != tc.t || !bytes.Equal(p, tc.p) {
			t.Fatalf("%v: read %v %d bytes, %v", tc.t, typ, len(p), err)
		}
	}
}

func TestFrameLimits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		reason postauth.Reason
	}{
		{"unknown type", []byte{0x7f, 0, 0, 0}, postauth.ReasonProtocolViolation},
		{"empty data", []byte{0, 0, 0, 0}, postauth.ReasonProtocolViolation},
		{"data over 16 KiB", []byte{0, 0, 0x40, 0x01}, postauth.ReasonFrameTooLarge},
		{"request over 4 KiB", []byte{1, 0, 0x10, 0x01}, postauth.ReasonFrameTooLarge},
		{"authenticator over 64 KiB", []byte{2, 0x01, 0x00, 0x01}, postauth.ReasonFrameTooLarge},
		{"ready with payload", []byte{3, 0, 0, 1, 0}, postauth.ReasonFrameTooLarge},
		{"posture over 64 bytes", []byte{4, 0, 0, 65}, postauth.ReasonFrameTooLarge},
		{"short window", []byte{5, 0, 0, 3}, postauth.ReasonProtocolViolation},
	} {
		_, _, err := ReadFrame(bytes.NewReader(tc.in), nil)
		wantReason(t, tc.name, err, tc.reason)
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 5, 'a'}), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated payload: %v", err)
	}
	if _, err := AppendFrame(nil, FrameData, nil); err == nil {
		t.Fatal("empty data frame encoded")
	}
}

func wantReason(t *testing.T, name string, err error, reason postauth.Reason) {
	t.Helper()
	if got := postauth.ReasonOf(err); got != reason {
		t.Fatalf("%s: %v (reason %q), want %q", name, err, got, reason)
	}
}

func TestClosePayload(t *testing.T) {
	code, reason, err := ParseClose(AppendClose(nil, AttestationTimeout, postauth.ReasonAnswerTimeout))
	if err != nil || code != AttestationTimeout || reason != postauth.ReasonAnswerTimeout {
		t.Fatalf("%v %v %v", code, reason, err)
	}
	// Not a token: sent empty.
	if _, reason, _ := ParseClose(AppendClose(nil, ProtocolError, "Evil\nreason")); reason != "" {
		t.Fatalf("reason %q", reason)
	}
	for _, bad := range [][]byte{{0}, {0, 1, 2, 'a'}, {0, 1, 1, 'A'}} {
		if _, _, err := ParseClose(bad); err == nil {
			t.Fatalf("%x parsed", bad)
		}
	}
	if _, err := ParseWindow(AppendWindow(nil, 0)); err == nil {
		t.Fatal("zero window increment")
	}
	if _, err := ParseWindow(AppendWindow(nil, 1<<31)); err == nil {
		t.Fatal("window increment over 2^31-1")
	}
}

// FuzzReadFrame: no input makes the reader panic, read past a frame, or
// return a payload over its type's limit; a frame it accepts encodes back
// to the same bytes.
func FuzzReadFrame(f *testing.F) {
	for _, seed := range [][]byte{
		mustFrame(FrameData, []byte("hello")),
		mustFrame(FrameRequest, []byte{13, 0, 0, 4, 0, 0, 0, 0}),
		mustFrame(FrameReady, nil),
		mustFrame(FramePosture, bytes.Repeat([]byte{7}, 32)),
		mustFrame(FrameWindow, AppendWindow(nil, 4096)),
		mustFrame(FrameClose, AppendClose(nil, PolicyDenied, postauth.ReasonPostureDenied)),
		{2, 0xff, 0xff, 0xff},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		typ, p, err := ReadFrame(r, make([]byte, 8))
		if err != nil {
			return
		}
		_, hi, ok := limits(typ)
		if !ok || len(p) > hi {
			t.Fatalf("%v payload of %d bytes accepted", typ, len(p))
		}
		consumed := len(in) - r.Len()
		b, err := AppendFrame(nil, typ, p)
		if err != nil || !bytes.Equal(b, in[:consumed]) {
			t.Fatalf("re-encoding differs: %x vs %x (%v)", b, in[:consumed], err)
		}
		switch typ {
		case FrameWindow:
			if n, err := ParseWindow(p); err == nil && (n == 0 || n > MaxWindow) {
				t.Fatalf("window %d accepted", n)
			}
		case FrameClose:
			if code, reason, err := ParseClose(p); err == nil {
				if reason != "" && !isToken(string(reason)) {
					t.Fatalf("reason %q accepted", reason)
				}
				if c2, r2, _ := ParseClose(AppendClose(nil, code, reason)); c2 != code || r2 != reason {
					t.Fatal("close payload does not round-trip")
				}
			}
		}
	})
}

func mustFrame(t FrameType, p []byte) []byte {
	b, err := AppendFrame(nil, t, p)
	if err != nil {
		panic(err)
	}
	return b
}
