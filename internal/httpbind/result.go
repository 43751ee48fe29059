package httpbind

import (
	"strconv"
	"strings"
	"time"
)

// MaxResultMaxAge bounds the max-age a client accepts from an
// Attestation-Result (one day): a larger value is clamped, so that a parsed
// number never overflows a time.Duration.
const MaxResultMaxAge = 24 * time.Hour

// FormatResult returns an Attestation-Result dictionary:
// status=affirming, max-age (seconds; only if maxAge > 0) and posture (the
// verified posture head; only if not nil). It never carries Evidence.
func FormatResult(maxAge time.Duration, postureHead []byte) string {
	s := "status=affirming"
	if maxAge > 0 {
		s += ", max-age=" + strconv.Itoa(int(maxAge/time.Second))
	}
	if postureHead != nil {
		s += ", posture=" + EncodeBytes(postureHead)
	}
	return s
}

// ResultMaxAge reads max-age from an Attestation-Result value, clamped to
// [MaxResultMaxAge].
func ResultMaxAge(v string) (time.Duration, bool) {
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k != "max-age" {
			continue
		}
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil || n < 0 {
			return 0, false
		}
		if n > int64(MaxResultMaxAge/time.Second) {
			return MaxResultMaxAge, true
		}
		return time.Duration(n) * time.Second, true
	}
	return 0, false
}
