package httpbind

import (
	"errors"
	"time"

	"github.com/dunglas/httpsfv"
)

// MaxResultMaxAge bounds the max-age a client accepts from an
// Attestation-Result (one day): a larger value is clamped, so that a parsed
// number never overflows a time.Duration.
const MaxResultMaxAge = 24 * time.Hour

// MaxResultHeader bounds an Attestation-Result value a client parses: the
// three members with a SHA-512 posture head take about 130 characters.
const MaxResultHeader = 1 << 10

// StatusAffirming is the status token of an Attestation-Result.
const StatusAffirming = "affirming"

// Result is an Attestation-Result dictionary (docs/protocol.md section
// 5.1): status=affirming, max-age (seconds, connection mode) and posture
// (the verified posture head). It never carries Evidence.
type Result struct {
	Status string        // a token; "affirming"
	MaxAge time.Duration // 0 if absent; at most MaxResultMaxAge
	// HasMaxAge reports whether max-age was present.
	HasMaxAge bool
	Posture   []byte // nil if absent
}

// FormatResult returns an Attestation-Result dictionary, serialised with
// httpsfv: status=affirming, max-age (seconds; only if maxAge > 0) and
// posture (the verified posture head; only if not nil).
func FormatResult(maxAge time.Duration, postureHead []byte) string {
	d := httpsfv.NewDictionary()
	d.Add("status", httpsfv.NewItem(httpsfv.Token(StatusAffirming)))
	if maxAge > 0 {
		d.Add("max-age", httpsfv.NewItem(int64(maxAge/time.Second)))
	}
	if postureHead != nil {
		d.Add("posture", httpsfv.NewItem(postureHead))
	}
	s, err := httpsfv.Marshal(d)
	if err != nil {
		// A token, an integer below 10^15 and a byte sequence always
		// serialise; fail closed with the status alone.
		return "status=" + StatusAffirming
	}
	return s
}

// ErrBadResult is returned for an Attestation-Result that is not a
// well-formed dictionary within MaxResultHeader, or whose known members
// have the wrong type.
var ErrBadResult = errors.New("httpbind: malformed Attestation-Result")

// ParseResult parses an Attestation-Result value as an RFC 9651
// dictionary (httpsfv), after checking its size. Unknown members and
// parameters are ignored; a known member of the wrong type, or a negative
// max-age, is an error. max-age is clamped to [MaxResultMaxAge].
func ParseResult(v string) (Result, error) {
	if len(v) > MaxResultHeader { // mutation: result size bound
		return Result{}, ErrBadResult
	}
	d, err := httpsfv.UnmarshalDictionary([]string{v})
	if err != nil {
		return Result{}, ErrBadResult
	}
	var r Result
	if m, ok := d.Get("status"); ok {
		it, ok := m.(httpsfv.Item)
		tok, isTok := it.Value.(httpsfv.Token)
		if !ok || !isTok {
			return Result{}, ErrBadResult
		}
		r.Status = string(tok)
	}
	if m, ok := d.Get("max-age"); ok {
		it, ok := m.(httpsfv.Item)
		n, isInt := it.Value.(int64)
		if !ok || !isInt || n < 0 {
			return Result{}, ErrBadResult
		}
		r.HasMaxAge = true
		r.MaxAge = MaxResultMaxAge
		if n < int64(MaxResultMaxAge/time.Second) {
			r.MaxAge = time.Duration(n) * time.Second
		}
	}
	if m, ok := d.Get("posture"); ok {
		it, ok := m.(httpsfv.Item)
		b, isBytes := it.Value.([]byte)
		if !ok || !isBytes {
			return Result{}, ErrBadResult
		}
		r.Posture = b
	}
	return r, nil
}

// ResultMaxAge reads max-age from an Attestation-Result value, clamped to
// [MaxResultMaxAge]. It reports false if the value does not parse or has no
// max-age.
func ResultMaxAge(v string) (time.Duration, bool) {
	r, err := ParseResult(v)
	if err != nil || !r.HasMaxAge {
		return 0, false
	}
	return r.MaxAge, true
}
