package verifier

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// newID returns a random (version 4) UUID.
func newID(r io.Reader) (string, error) {
	var u [16]byte
	if _, err := io.ReadFull(r, u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// validID reports whether id has the form of a UUID (lower-case hex).
func validID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// parseQuery parses a query string, refusing repeated parameters.
func parseQuery(raw string) (map[string]string, error) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil, errors.New("malformed query")
	}
	out := make(map[string]string, len(vals))
	for k, v := range vals {
		if len(v) != 1 {
			return nil, errors.New("repeated query parameter")
		}
		out[k] = v[0]
	}
	return out, nil
}

// decodeBase64 accepts URL-safe (Veraison's) and standard base64, with or
// without padding.
func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// acceptable reports whether the Accept header values allow one of offered
// (media ranges with wildcards; q=0 refuses). No Accept header accepts
// anything, and so does an empty one.
func acceptable(values []string, offered ...string) bool {
	if strings.TrimSpace(strings.Join(values, "")) == "" {
		return true
	}
	for _, v := range values {
		for _, r := range strings.Split(v, ",") {
			r = strings.TrimSpace(r)
			if r == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(r)
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			for _, o := range offered {
				typ, _, _ := strings.Cut(o, "/")
				if mt == "*/*" || mt == typ+"/*" || mt == o {
					return true
				}
			}
		}
	}
	return false
}

// canonicalSPKI parses a DER SubjectPublicKeyInfo and requires it to be
// the canonical encoding of its key (what the EAR's key attestation will
// carry, byte for byte).
func canonicalSPKI(spki []byte) (any, error) {
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return nil, errors.New("not a SubjectPublicKeyInfo")
	}
	again, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil || string(again) != string(spki) {
		return nil, errors.New("not a canonical SubjectPublicKeyInfo")
	}
	return pub, nil
}

// logSafe shortens a peer-supplied string for a log line and drops
// control characters.
func logSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if len(s) > 96 {
		s = s[:96] + "..."
	}
	return s
}

func levelFor(status int) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelWarn
	case status >= 400:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}
