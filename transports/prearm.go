package transports

import (
	"net/http"
	"slices"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
)

// maxPrearmOps bounds the operation templates kept per connection.
const maxPrearmOps = 4

// prearm is a connection's pre-armed requests and the connection-mode
// verdict as the server reported it. Guarded by conn.mu.
type prearm struct {
	prearmConn []byte   // a pre-armed connection-mode request
	prearmOps  [][]byte // pre-armed operation templates, oldest first
	// the last connection-mode verdict: when, until when, for which hint
	attestedAt    time.Time
	attestedUntil time.Time
	attestedHint  string
}

// proactiveAttestation attaches an answer to a pre-armed request when the
// route is known to need one and the transport holds a fitting request. It
// returns the mode used, or "".
func (c *conn) proactiveAttestation(r *http.Request, hint string) string {
	t := c.t
	mode := t.learnedMode(r)
	if mode == "" && t.cfg.proactive != nil && t.cfg.proactive(r) {
		mode = httpbind.ModeOperation
	}
	if mode == "" {
		return ""
	}
	now := t.cfg.now()
	c.mu.Lock()
	var raw []byte
	template := false
	switch mode {
	case httpbind.ModeOperation:
		if n := len(c.prearmOps); n > 0 {
			raw, c.prearmOps = c.prearmOps[n-1], c.prearmOps[:n-1]
			template = true
		}
	default:
		stale := !now.Before(c.attestedUntil) || hint != c.attestedHint
		if stale && c.prearmConn != nil && c.inFlight() == 0 {
			raw, c.prearmConn = c.prearmConn, nil
		}
	}
	c.mu.Unlock()
	if raw == nil {
		return ""
	}
	var body []byte
	if template {
		b, err := readReplayable(r)
		if err != nil {
			return "" // cannot bind the body: let the server challenge
		}
		body = b
	}
	answer, err := c.answer(r, raw, template, body)
	if err != nil {
		return ""
	}
	r.Header.Set(httpbind.HeaderAttestation, httpbind.EncodeBytes(answer))
	return mode
}

// harvest records what a response says about attestation on this
// connection: pre-armed requests and the verdict's lifetime.
func (c *conn) harvest(resp *http.Response, attested bool, hint string, sentAt time.Time) {
	pre := resp.Header.Get(httpbind.HeaderAttestationRequest)
	res := resp.Header.Get(httpbind.HeaderResult)
	if resp.StatusCode == http.StatusUnauthorized {
		pre = "" // a challenge, not a pre-armed request
	}
	if pre == "" && res == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if pre != "" {
		if raw, params, err := httpbind.DecodeBytes(pre, httpbind.MaxRequestHeader); err == nil {
			if slices.Contains(params, httpbind.ParamOp) {
				if len(c.prearmOps) >= maxPrearmOps {
					c.prearmOps = c.prearmOps[1:]
				}
				c.prearmOps = append(c.prearmOps, raw)
			} else {
				c.prearmConn = raw
			}
		}
	}
	if res != "" && attested && resp.StatusCode < 300 {
		if maxAge, ok := httpbind.ResultMaxAge(res); ok {
			c.attestedAt = sentAt
			c.attestedUntil = sentAt.Add(maxAge)
			c.attestedHint = hint
		}
	}
}
