package transports

import (
	"context"
	"errors"
	"net/http"
)

// flight is an attestation in progress that other requests may wait for.
type flight struct {
	done      chan struct{}
	err       error
	challenge string // the connection-mode challenge it answers
}

// flights are a connection's connection-mode attestations in progress and
// their successes. Guarded by conn.mu.
type flights struct {
	// byChallenge and byRoute hold the flights in progress, by the
	// challenge they answer (requests that received the same challenge
	// share one attestation) and by route (a request of that route
	// challenged with a newer challenge waits for it too).
	byChallenge map[string]*flight
	byRoute     map[routeKey]*flight
	// epochs count the connection-mode attestations that succeeded, by
	// route (host, method, path): a request challenged after being sent in
	// an older epoch of its route may ride on the newer one.
	epochs map[routeKey]uint64
}

// inFlight is the number of flights in progress; c.mu must be held.
func (f *flights) inFlight() int { return len(f.byChallenge) }

// epoch is the number of successful attestations of route rk so far.
func (c *conn) epoch(rk routeKey) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epochs[rk]
}

// joinOrLead decides how a request challenged in connection mode (with
// challenge enc, for route rk, sent in epoch sentEpoch of that route) goes
// on: it rides (ride: resend without an authenticator) if its route was
// attested since it was sent, or once an attestation in flight for the same
// challenge or the same route succeeds; otherwise it leads (f: answer, then
// land f). Deciding and registering a flight happen under one lock, so two
// requests never both answer one challenge.
func (c *conn) joinOrLead(ctx context.Context, enc string, rk routeKey, sentEpoch uint64) (ride bool, f *flight, err error) {
	c.mu.Lock()
	for {
		if c.epochs[rk] > sentEpoch {
			c.mu.Unlock()
			return true, nil, nil
		}
		wait := c.byChallenge[enc]
		if wait == nil {
			wait = c.byRoute[rk]
		}
		if wait == nil {
			if c.byChallenge == nil {
				c.byChallenge = make(map[string]*flight)
				c.byRoute = make(map[routeKey]*flight)
			}
			f = &flight{done: make(chan struct{}), challenge: enc}
			c.byChallenge[enc] = f
			c.byRoute[rk] = f
			c.mu.Unlock()
			return false, f, nil
		}
		c.mu.Unlock()
		select {
		case <-wait.done:
		case <-ctx.Done():
			return false, nil, ctx.Err()
		}
		if wait.err == nil && wait.challenge == enc {
			return true, nil, nil
		}
		// The other flight failed, or was for another challenge of the
		// route (its success shows in the epoch): decide again.
		c.mu.Lock()
	}
}

// errRefusedRetry fails a flight whose attested retry the server refused.
var errRefusedRetry = errors.New("transports: attestation refused")

// land ends flight f for challenge enc of route rk.
func (c *conn) land(f *flight, enc string, rk routeKey, resp *http.Response, err error) {
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		err = errRefusedRetry
	}
	f.err = err
	c.mu.Lock()
	if c.byChallenge[enc] == f {
		delete(c.byChallenge, enc)
	}
	if c.byRoute[rk] == f {
		delete(c.byRoute, rk)
	}
	if err == nil {
		if c.epochs == nil {
			c.epochs = make(map[routeKey]uint64)
		}
		c.epochs[rk]++
	}
	c.mu.Unlock()
	close(f.done)
}
