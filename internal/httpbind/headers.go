// Package httpbind holds the HTTP binding of reattest shared by the server
// middleware and the client transport (docs/protocol.md, section 5): header
// names, RFC 9651 byte sequences, the WWW-Authenticate challenge, the
// Attestation-Result dictionary, the operation digest, and the decision
// table that maps every reason to its HTTP answer.
package httpbind

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/dunglas/httpsfv"

	"github.com/reattest/reattest/postauth"
)

// Header names, the authentication scheme and the discovery path.
const (
	HeaderAttestationRequest = "Attestation-Request"
	HeaderAttestation        = "Attestation"
	HeaderPosture            = "Attestation-Posture"
	HeaderResult             = "Attestation-Result"
	AuthScheme               = "Attestation"
	WellKnownPath            = "/.well-known/reattest"
)

// Freshness mode names.
const (
	ModeConnection = "connection"
	ModeOperation  = "operation"
)

// ParamOp marks an Attestation-Request that is an operation template: the
// answerer appends the operation digest to its context.
const ParamOp = "op"

// Size limits of header values (base64 of the limits in package postauth,
// with room for parameters).
const (
	MaxRequestHeader       = 8 << 10
	MaxAttestationHeader   = 90 << 10
	MaxPostureHeader       = 128
	MaxAuthenticateHeaders = 4 << 10
)

// EncodeBytes returns b as an RFC 9651 byte sequence item, ":base64:",
// followed by boolean parameters (";op"). It writes what
// httpsfv.Marshal writes for the same item (tested), without its
// allocations; params must be valid keys.
func EncodeBytes(b []byte, params ...string) string {
	n := 2 + base64.StdEncoding.EncodedLen(len(b))
	for _, p := range params {
		n += 1 + len(p)
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteByte(':')
	sb.WriteString(base64.StdEncoding.EncodeToString(b))
	sb.WriteByte(':')
	for _, p := range params {
		sb.WriteByte(';')
		sb.WriteString(p)
	}
	return sb.String()
}

// ErrBadHeader is returned for a header value that is not a well-formed
// byte sequence item within its size limit.
var ErrBadHeader = errors.New("httpbind: malformed header value")

// DecodeBytes parses an RFC 9651 byte sequence item with optional
// parameters. Boolean parameters that are true are returned in params;
// others are ignored. Values longer than max are refused before decoding.
//
// The byte sequence itself is parsed here, by the rules of RFC 9651
// section 4.2.7 (the base64 alphabet only; missing padding accepted, as
// that section asks of parsers); parameters, when there are any, are parsed
// by github.com/dunglas/httpsfv. This fast path matters on the server,
// which decodes every Attestation header before any check: it is about 3
// times faster than httpsfv.UnmarshalItem with one allocation instead of
// four. It accepts what httpsfv accepts, and also unpadded base64
// (FuzzDecodeBytes checks both).
func DecodeBytes(s string, max int) (b []byte, params []string, err error) {
	if len(s) > max {
		return nil, nil, ErrBadHeader
	}
	s = strings.Trim(s, " ")
	if len(s) < 2 || s[0] != ':' {
		return nil, nil, ErrBadHeader
	}
	end := strings.IndexByte(s[1:], ':')
	if end < 0 {
		return nil, nil, ErrBadHeader
	}
	enc, rest := s[1:1+end], s[2+end:]
	// The base64 alphabet only: Go's decoder refuses every other byte but
	// skips CR and LF, which RFC 9651 does not allow.
	if strings.IndexByte(enc, '\n') >= 0 || strings.IndexByte(enc, '\r') >= 0 { // mutation: header base64 alphabet
		return nil, nil, ErrBadHeader
	}
	if b, err = base64.StdEncoding.DecodeString(enc); err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(enc); err != nil {
			return nil, nil, ErrBadHeader
		}
	}
	if rest == "" {
		return b, nil, nil
	}
	if rest == ";"+ParamOp { // the one parameter reattest sends
		return b, []string{ParamOp}, nil
	}
	if rest[0] != ';' {
		return nil, nil, ErrBadHeader
	}
	// The parameters of a stand-in item (a boolean) are those of ours.
	it, err := httpsfv.UnmarshalItem([]string{"?1" + rest})
	if err != nil {
		return nil, nil, ErrBadHeader
	}
	for _, k := range it.Params.Names() {
		if v, _ := it.Params.Get(k); v == true {
			params = append(params, k)
		}
	}
	return b, params, nil
}

// OperationDigest is the operation binding of an operation-mode context
// (docs/protocol.md, section 5.3): the first 16 bytes of
//
//	SHA-256(method 0x00 authority 0x00 request-target 0x00 SHA-256(body))
//
// with authority normalised by [NormalizeAuthority] and request-target in
// origin form ([OriginForm]). Binding the authority keeps an authenticator
// made for one host from being presented for another host served on the
// same (coalesced HTTP/2) connection.
func OperationDigest(method, authority, target string, body []byte) []byte {
	bh := sha256.Sum256(body)
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write([]byte(NormalizeAuthority(authority)))
	h.Write([]byte{0})
	h.Write([]byte(target))
	h.Write([]byte{0})
	h.Write(bh[:])
	return h.Sum(nil)[:16]
}

// NormalizeAuthority returns the authority (host[:port], as in the Host
// header or HTTP/2 :authority) in lower case, without the default https
// port 443 and without a trailing dot of the host.
func NormalizeAuthority(a string) string {
	a = strings.ToLower(a)
	a = strings.TrimSuffix(a, ":443")
	return strings.TrimSuffix(a, ".")
}

// OriginForm returns the request-target the operation digest covers, from
// the target a server received: an origin-form target ("/pay?x=1") as is,
// "*" as is, and an absolute-form target ("https://host/pay?x=1") as the
// origin form of its path and query, with "/" for an empty path.
func OriginForm(target string) string {
	if target == "" {
		return "/"
	}
	if target[0] == '/' || target == "*" {
		return target
	}
	u, err := url.ParseRequestURI(target)
	if err != nil || u.Host == "" {
		return target
	}
	return u.RequestURI()
}

// Challenge is the Attestation challenge of a WWW-Authenticate header.
type Challenge struct {
	Error  postauth.Reason
	Mode   string
	MaxAge int // seconds; 0 if absent
}

// Format returns the challenge as a WWW-Authenticate value.
func (c Challenge) Format() string {
	var sb strings.Builder
	sb.WriteString(AuthScheme)
	sep := " "
	if c.Error != "" {
		sb.WriteString(sep + `error=` + quote(string(c.Error)))
		sep = ", "
	}
	if c.Mode != "" {
		sb.WriteString(sep + `mode=` + quote(c.Mode))
		sep = ", "
	}
	if c.MaxAge > 0 {
		sb.WriteString(sep + "max-age=" + strconv.Itoa(c.MaxAge))
	}
	return sb.String()
}

// quote returns s as an RFC 9110 quoted-string: '"' and '\\' escaped.
func quote(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return `"` + s + `"`
	}
	var sb strings.Builder
	sb.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			sb.WriteByte('\\')
		}
		sb.WriteByte(s[i])
	}
	sb.WriteByte('"')
	return sb.String()
}

// ParseChallenge finds the Attestation challenge among WWW-Authenticate
// values (RFC 9110 section 11.6.1) and returns its parameters.
func ParseChallenge(values []string) (Challenge, bool) {
	total := 0
	for _, v := range values {
		total += len(v)
	}
	if total > MaxAuthenticateHeaders {
		return Challenge{}, false
	}
	for _, v := range values {
		if c, ok := parseChallengeList(v); ok {
			return c, true
		}
	}
	return Challenge{}, false
}

// parseChallengeList scans one header value, which may hold several
// challenges, for the Attestation scheme.
func parseChallengeList(v string) (Challenge, bool) {
	var c Challenge
	in := false
	found := false
	for v != "" {
		v = strings.TrimLeft(v, " \t,")
		if v == "" {
			break
		}
		tok := scanToken(v)
		if tok == "" {
			return Challenge{}, false
		}
		after := strings.TrimLeft(v[len(tok):], " \t")
		if !strings.HasPrefix(after, "=") {
			// A new scheme starts.
			if found {
				return c, true
			}
			in = strings.EqualFold(tok, AuthScheme)
			found = in
			v = after
			continue
		}
		// An auth-param: token "=" ( token / quoted-string ).
		val, rest, ok := scanValue(strings.TrimLeft(after[1:], " \t"))
		if !ok {
			if in {
				return Challenge{}, false // our own challenge is malformed
			}
			if found {
				return c, true
			}
			// Not an auth-param (a token68 of another scheme): skip it.
			i := strings.IndexByte(v, ',')
			if i < 0 {
				return Challenge{}, false
			}
			v = v[i+1:]
			continue
		}
		if in {
			switch strings.ToLower(tok) {
			case "error":
				c.Error = postauth.Reason(val)
			case "mode":
				c.Mode = val
			case "max-age":
				if n, err := strconv.Atoi(val); err == nil && n >= 0 {
					c.MaxAge = n
				}
			}
		}
		v = rest
	}
	return c, found
}

func scanToken(s string) string {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i]
}

func isTokenChar(c byte) bool {
	return c > 0x20 && c < 0x7f && !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, rune(c))
}

func scanValue(s string) (val, rest string, ok bool) {
	if strings.HasPrefix(s, `"`) {
		var sb strings.Builder
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				if i+1 >= len(s) {
					return "", "", false
				}
				i++
				sb.WriteByte(s[i])
			case '"':
				return sb.String(), s[i+1:], true
			default:
				sb.WriteByte(s[i])
			}
		}
		return "", "", false
	}
	t := scanToken(s)
	if t == "" {
		return "", "", false
	}
	return t, s[len(t):], true
}
