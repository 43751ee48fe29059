package verifier

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"strings"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
)

// Defaults.
const (
	// DefaultSessionTTL is how long a session lives (Veraison's default).
	DefaultSessionTTL = 2*time.Minute + 30*time.Second
	// DefaultMaxSessions bounds the live sessions.
	DefaultMaxSessions = 1024
	// DefaultMaxConcurrent bounds the appraisals running at once.
	DefaultMaxConcurrent = 64
	// DefaultMaxResultBytes bounds the EARs held in sessions, in total.
	DefaultMaxResultBytes = 32 << 20
	// DefaultNonceSize is the size of a nonce minted for a newSession
	// request with neither nonce nor nonceSize (Veraison's default).
	DefaultNonceSize = 32
	// DefaultBuild and DefaultDeveloper make the EAR's ear.verifier-id.
	DefaultBuild     = "reattest-verifier"
	DefaultDeveloper = "reattest"
)

// Option configures a [Service].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// format is one accepted Evidence media type.
type format struct {
	name      string // the EAR submodule name
	mediaType string // as registered (parameters kept)
	base      string
	params    map[string]string
	verifier  postauth.Verifier
	binding   ear.BindingFunc
}

type config struct {
	formats        []*format
	ttl            time.Duration
	maxSessions    int
	maxConcurrent  int
	maxResultBytes int
	now            func() time.Time
	rand           io.Reader
	logger         *slog.Logger
	build          string
	developer      string
	err            error
}

func newConfig(opts []Option) (*config, error) {
	c := &config{
		ttl: DefaultSessionTTL, maxSessions: DefaultMaxSessions, maxConcurrent: DefaultMaxConcurrent,
		maxResultBytes: DefaultMaxResultBytes, now: time.Now, rand: rand.Reader, logger: slog.New(slog.DiscardHandler),
		build: DefaultBuild, developer: DefaultDeveloper,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(c)
		}
	}
	switch {
	case c.err != nil:
		return nil, c.err
	case len(c.formats) == 0:
		return nil, errors.New("verifier: no Evidence format (WithFormat, SoftEAT, TPM)")
	}
	return c, nil
}

// WithFormat accepts Evidence of mediaType (a media type, parameters
// included; a registered type without parameters also matches Evidence
// whose type has some) and appraises it with v, the same Verifier a
// relying party would use locally. name is the EAR submodule name (the
// format name, for example softeat.Format). binding, if not nil, is the
// format's own binding reader: when the caller does not send the
// authenticator key, the Evidence's own key hash is passed to v (and
// reported as is). Formats are tried in registration order.
func WithFormat(name, mediaType string, v postauth.Verifier, binding ear.BindingFunc) Option {
	return optionFunc(func(c *config) {
		mt, params, err := mime.ParseMediaType(mediaType)
		if err != nil || !strings.Contains(mt, "/") || name == "" || v == nil {
			c.err = fmt.Errorf("verifier: WithFormat(%q, %q): bad name, media type or nil verifier", name, mediaType)
			return
		}
		c.formats = append(c.formats, &format{name: name, mediaType: mediaType, base: mt, params: params, verifier: v, binding: binding})
	})
}

// WithSessionTTL sets how long a session lives. Zero or less means
// DefaultSessionTTL.
func WithSessionTTL(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.ttl = d
		}
	})
}

// WithMaxSessions bounds the live sessions; a newSession beyond it gets
// 503. Zero or less means DefaultMaxSessions.
func WithMaxSessions(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxSessions = n
		}
	})
}

// WithMaxConcurrent bounds the appraisals running at once; one more gets
// 503. Zero or less means DefaultMaxConcurrent.
func WithMaxConcurrent(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxConcurrent = n
		}
	})
}

// WithMaxResultBytes bounds the total size of the EARs held in sessions;
// an appraisal whose EAR would exceed it gets 503. Zero or less means
// DefaultMaxResultBytes.
func WithMaxResultBytes(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxResultBytes = n
		}
	})
}

// WithClock sets the clock (session expiry, EAR iat). Nil means time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// WithRand sets the source of nonces and session ids. Nil means
// crypto/rand.
func WithRand(r io.Reader) Option {
	return optionFunc(func(c *config) {
		if r != nil {
			c.rand = r
		}
	})
}

// WithLogger sets the logger: one line per request outcome (session id,
// media type, status, reason), never Evidence, nonces or EARs. Nil
// discards.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithVerifierID sets the EAR's ear.verifier-id (build, developer) and the
// version the well-known document reports. An empty value means the
// default, DefaultBuild or DefaultDeveloper.
func WithVerifierID(build, developer string) Option {
	return optionFunc(func(c *config) {
		if build != "" {
			c.build = build
		}
		if developer != "" {
			c.developer = developer
		}
	})
}
