package verifier

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/reattest/reattest/postauth/ear"
)

// session is the server's state of one challenge-response session. It
// holds no Evidence.
type session struct {
	id     string
	nonce  []byte
	expiry time.Time
	state  string
	result string // the EAR, once complete
}

var (
	errFull       = errors.New("verifier: too many sessions")
	errNoSession  = errors.New("verifier: no such session")
	errNotWaiting = errors.New("verifier: the session already has Evidence")
	errNoRoom     = errors.New("verifier: no room for the result")
)

// store holds the live sessions, bounded in number and in result bytes.
// Expired sessions are invisible and swept lazily.
type store struct {
	now            func() time.Time
	ttl            time.Duration
	max            int
	maxResultBytes int

	mu          sync.Mutex // guards the fields below
	m           map[string]*session
	resultBytes int
	lastSweep   time.Time
}

func newStore(now func() time.Time, ttl time.Duration, max, maxResultBytes int) *store {
	return &store{now: now, ttl: ttl, max: max, maxResultBytes: maxResultBytes, m: make(map[string]*session)}
}

// sweepLocked drops expired sessions, at most once a second (or when
// full).
func (s *store) sweepLocked(now time.Time, force bool) {
	if !force && now.Sub(s.lastSweep) < time.Second {
		return
	}
	s.lastSweep = now
	for id, ss := range s.m {
		if !now.Before(ss.expiry) {
			s.dropLocked(id, ss)
		}
	}
}

func (s *store) dropLocked(id string, ss *session) {
	s.resultBytes -= len(ss.result)
	delete(s.m, id)
}

// create adds a waiting session and returns a copy.
func (s *store) create(id string, nonce []byte) (session, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now, false)
	if len(s.m) >= s.max {
		s.sweepLocked(now, true)
		if len(s.m) >= s.max { // mutation: service max sessions
			return session{}, errFull
		}
	}
	ss := &session{id: id, nonce: slices.Clone(nonce), expiry: now.Add(s.ttl), state: ear.StateWaiting}
	s.m[id] = ss
	return *ss, nil
}

// getLocked returns a live session.
func (s *store) getLocked(id string) (*session, bool) {
	ss, ok := s.m[id]
	if !ok {
		return nil, false
	}
	if !s.now().Before(ss.expiry) { // mutation: service session expiry
		s.dropLocked(id, ss)
		return nil, false
	}
	return ss, true
}

// get returns a copy of a live session.
func (s *store) get(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.getLocked(id)
	if !ok {
		return session{}, false
	}
	return *ss, true
}

// claim moves a waiting session to processing: a session appraises one
// piece of Evidence only.
func (s *store) claim(id string) (session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.getLocked(id)
	if !ok {
		return session{}, errNoSession
	}
	if ss.state != ear.StateWaiting { // mutation: service one Evidence per session
		return session{}, errNotWaiting
	}
	ss.state = ear.StateProcessing
	return *ss, nil
}

// complete stores the result of a claimed session, within the result
// budget, and returns a copy.
func (s *store) complete(id, result string) (session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.getLocked(id)
	if !ok {
		return session{}, errNoSession
	}
	if s.resultBytes+len(result) > s.maxResultBytes {
		s.sweepLocked(s.now(), true)
		if s.resultBytes+len(result) > s.maxResultBytes {
			ss.state = ear.StateFailed
			return session{}, errNoRoom
		}
	}
	ss.state, ss.result = ear.StateComplete, result
	s.resultBytes += len(result)
	return *ss, nil
}

// fail marks a claimed session failed.
func (s *store) fail(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.m[id]; ok {
		ss.state = ear.StateFailed
	}
}

// delete removes a session; false if there was none.
func (s *store) delete(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.getLocked(id)
	if ok {
		s.dropLocked(id, ss)
	}
	return ok
}
