package transports

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// ServerAttestationTimeout bounds obtaining and verifying a server
// attestation: a server or verifier that does not answer in time fails the
// critical request (it is not sent), never passes it.
const ServerAttestationTimeout = 5 * time.Second

// serverAttestation is the transport's role as a relying party for the
// server: which requests need a fresh server attestation, how it is
// verified and how long it lasts.
type serverAttestation struct {
	require func(*http.Request) bool
	rp      *postauth.RelyingParty
	maxAge  time.Duration
}

// serverState is a connection's server attestation. Guarded by conn.mu.
type serverState struct {
	reqr   *postauth.Requester
	ok     time.Time // when the last attestation was validated
	flight *flight   // the attestation in progress
}

// ensureServerAttested validates a fresh server authenticator on this
// connection unless one younger than the configured max age exists.
func (c *conn) ensureServerAttested(ctx context.Context, req *http.Request) error {
	t := c.t
	sa := t.cfg.server
	for {
		c.mu.Lock()
		if !c.server.ok.IsZero() && t.cfg.now().Sub(c.server.ok) < sa.maxAge {
			c.mu.Unlock()
			return nil
		}
		if f := c.server.flight; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
				if f.err != nil {
					return f.err
				}
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if c.ch == nil {
			c.mu.Unlock()
			return fmt.Errorf("%w: %w", ErrServerNotAttested, c.chErr)
		}
		if c.server.reqr == nil {
			r, err := sa.rp.NewRequester(c.ch, postauth.RoleServer)
			if err != nil {
				c.mu.Unlock()
				return err
			}
			c.server.reqr = r
		}
		f := &flight{done: make(chan struct{})}
		c.server.flight = f
		reqr := c.server.reqr
		c.mu.Unlock()

		start := t.cfg.now()
		res, err := c.attestServer(ctx, req, reqr)
		c.mu.Lock()
		if err == nil {
			c.server.ok = t.cfg.now()
		}
		c.server.flight = nil
		c.mu.Unlock()
		f.err = err
		close(f.done)
		a := Activity{Kind: ActivityServerAttested, Outcome: OutcomeAccepted, Method: req.Method, URL: req.URL.String(), Result: res, Duration: t.cfg.now().Sub(start)}
		if err != nil {
			a.Outcome, a.Reason, a.Err = OutcomeRefused, postauth.ReasonOf(err), err
		}
		t.emit(a)
		return err
	}
}

// attestServer asks the server for an authenticator on the discovery
// document and validates it, within ServerAttestationTimeout.
func (c *conn) attestServer(ctx context.Context, req *http.Request, reqr *postauth.Requester) (*postauth.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, ServerAttestationTimeout)
	defer cancel()
	areq, err := reqr.NewRequest(nil)
	if err != nil {
		return nil, err
	}
	raw, err := areq.Marshal()
	if err != nil {
		return nil, err
	}
	u := *req.URL
	u.Path, u.RawPath, u.RawQuery, u.Fragment = httpbind.WellKnownPath, "", "", ""
	probe, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	probe.Header.Set(httpbind.HeaderAttestationRequest, httpbind.EncodeBytes(raw))
	resp, err := c.roundTrip(probe)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrServerNotAttested, err)
	}
	hdr := resp.Header.Get(httpbind.HeaderAttestation)
	drain(resp)
	if hdr == "" {
		return nil, fmt.Errorf("%w: the server sent no Attestation (status %d)", ErrServerNotAttested, resp.StatusCode)
	}
	answer, _, err := httpbind.DecodeBytes(hdr, httpbind.MaxAttestationHeader)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrServerNotAttested, err)
	}
	res, err := reqr.Verify(ctx, answer, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrServerNotAttested, err)
	}
	return res, nil
}
