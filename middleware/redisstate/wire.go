package redisstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/reattest/reattest/middleware"
)

// maxMessageLen bounds a message on the events channel.
const maxMessageLen = 8 << 10

// wireVersion is the version of the message format.
const wireVersion = 1

// message is an event on the channel (JSON). A policy event carries the
// version only: the document is read from its key.
type message struct {
	V       int    `json:"v"`
	Kind    string `json:"kind"`
	ID      string `json:"id,omitempty"`
	Until   int64  `json:"until,omitempty"` // Unix milliseconds
	Posture string `json:"posture,omitempty"`
	Version uint64 `json:"version,omitempty"`
	Origin  string `json:"origin,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// encodeEvent returns the channel message of e (validated).
func encodeEvent(e middleware.Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	m := message{V: wireVersion, Kind: e.Kind.String(), Origin: e.Origin, Reason: e.Reason}
	switch e.Kind {
	case middleware.EventRevoke:
		m.ID, m.Until = e.Identity.String(), e.Until.UnixMilli()
	case middleware.EventUnrevoke:
		m.ID = e.Identity.String()
	case middleware.EventInvalidate:
		m.ID, m.Posture = e.Identity.String(), e.Posture
	case middleware.EventPolicy:
		m.Version = e.Policy.Version
	}
	return json.Marshal(m)
}

// decodeEvent parses a channel message strictly: at most maxMessageLen
// bytes, no unknown fields or trailing data, a known version and kind, and
// a valid event. A policy event has no document (Policy is nil): version
// gives its version.
func decodeEvent(b []byte) (e middleware.Event, version uint64, err error) {
	if len(b) > maxMessageLen {
		return e, 0, fmt.Errorf("redisstate: message over %d bytes", maxMessageLen)
	}
	var m message
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return e, 0, fmt.Errorf("redisstate: message: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return e, 0, errors.New("redisstate: message: trailing data")
	}
	if m.V != wireVersion {
		return e, 0, fmt.Errorf("redisstate: message version %d (want %d)", m.V, wireVersion)
	}
	e = middleware.Event{Origin: m.Origin, Reason: m.Reason}
	switch m.Kind {
	case "revoke":
		e.Kind = middleware.EventRevoke
		if m.Until <= 0 {
			return e, 0, errors.New("redisstate: revocation without expiry")
		}
		e.Until = time.UnixMilli(m.Until)
	case "unrevoke":
		e.Kind = middleware.EventUnrevoke
	case "invalidate":
		e.Kind = middleware.EventInvalidate
		e.Posture = m.Posture
	case "policy":
		if m.Version == 0 || m.Version > middleware.MaxPolicyVersion || m.ID != "" {
			return e, 0, fmt.Errorf("redisstate: policy message version %d", m.Version)
		}
		return middleware.Event{Kind: middleware.EventPolicy, Origin: m.Origin, Reason: m.Reason}, m.Version, nil
	default:
		return e, 0, fmt.Errorf("redisstate: unknown message kind %q", m.Kind)
	}
	if e.Identity, err = middleware.ParseIdentity(m.ID); err != nil {
		return e, 0, err
	}
	if err := e.Validate(); err != nil {
		return e, 0, err
	}
	return e, 0, nil
}
