package main

// Remote verification in the demo (docs/verification.md). The default,
// -verification local, has the gateway verify the agent's software EAT
// itself. With -verification background the gateway forwards the
// Evidence to a verifier service and relies on its EAR
// (ear.RemoteVerifier, the background check); with -verification passport
// the agent has the verifier appraise its Evidence and brings the EAR on
// the connection (ear.Attester), which the gateway checks (ear.Verifier)
// without seeing the Evidence. The verifier service runs in this process
// by default, or at -verifier (for example `go run ./cmd/reattest-verifier
// -softeat-key examples/agent/assets/agent-attestation-pub.pem`, whose
// EAR key, the JWK it prints, goes in a file for -verifier-key).

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/verifier"
)

// Verification models.
const (
	verifyLocal      = "local"
	verifyBackground = "background"
	verifyPassport   = "passport"
)

// verificationConfig says who appraises the agent's Evidence.
type verificationConfig struct {
	model   string // verifyLocal, verifyBackground or verifyPassport
	url     string // the verifier service's base URL ("": in process)
	keyFile string // its EAR verification key, a JWK ("": fetched once)
	key     *ecdsa.PublicKey
}

func verificationFlags(fs *flag.FlagSet, c *verificationConfig) {
	fs.StringVar(&c.model, "verification", verifyLocal, "who appraises the agent's Evidence: local (the gateway), background (the gateway asks a verifier service) or passport (the agent brings the verifier's EAR)")
	fs.StringVar(&c.url, "verifier", "", "background, passport: the verifier service's base URL, e.g. http://127.0.0.1:8080 (default: a verifier service in this process)")
	fs.StringVar(&c.keyFile, "verifier-key", "", "background, passport: the verifier's EAR verification key, a JWK file as reattest-verifier prints it (default: fetched once from the verifier's well-known endpoint)")
}

func (c *verificationConfig) remote() bool { return c.model != verifyLocal }

func (c *verificationConfig) check() error {
	switch c.model {
	case verifyLocal, verifyBackground, verifyPassport:
		return nil
	}
	return fmt.Errorf("unknown -verification %q (want local, background or passport)", c.model)
}

// inProcessVerifier is a verifier service on a free loopback port that
// trusts the agent's attestation key, as `go run ./cmd/reattest-verifier`
// would, counting the Evidence it appraised.
type inProcessVerifier struct {
	srv       *verifier.Server
	appraised atomic.Int64
}

// prepare makes c usable: it starts the in-process verifier service if the
// model needs one and none was given, and resolves the EAR key. stop stops
// what it started.
func (c *verificationConfig) prepare(attPubFile string) (v *inProcessVerifier, stop func(), err error) {
	stop = func() {}
	if err := c.check(); err != nil || !c.remote() {
		return nil, stop, err
	}
	if c.url == "" {
		agentPub, err := loadAttestationPub(attPubFile, fileAgentAttPub)
		if err != nil {
			return nil, stop, fmt.Errorf("trusted attester key: %w", err)
		}
		sv, err := softeat.NewVerifier([]crypto.PublicKey{agentPub}, softeat.RequirePosture())
		if err != nil {
			return nil, stop, err
		}
		key, err := verifier.GenerateKey()
		if err != nil {
			return nil, stop, err
		}
		svc, err := verifier.NewService(key, verifier.SoftEAT(sv))
		if err != nil {
			return nil, stop, err
		}
		v = &inProcessVerifier{}
		if v.srv, err = verifier.Start(nil, v.count(svc), nil); err != nil {
			return nil, stop, err
		}
		stop = func() { v.srv.Close() }
		c.url, c.key = v.srv.URL(), svc.PublicKey()
		return v, stop, nil
	}
	if c.key, err = loadEARKey(c.keyFile, c.url); err != nil {
		return nil, stop, err
	}
	return nil, stop, nil
}

// count counts the Evidence submissions h serves.
func (v *inProcessVerifier) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, ear.SessionPath) {
			v.appraised.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

// loadEARKey reads the EAR verification key from a JWK file or, without
// one, fetches it once from the verifier's well-known endpoint (trust on
// first fetch: fine on loopback, not across a network without TLS).
func loadEARKey(file, baseURL string) (*ecdsa.PublicKey, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("-verifier-key: %w", err)
		}
		return ear.ParseJWK(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(baseURL, "/")+ear.WellKnownPath, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("-verifier: %w", err)
	}
	req.Header.Set("Accept", ear.DiscoveryMediaType)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("verifier key: %s answered %d", ear.WellKnownPath, res.StatusCode)
	}
	var doc struct {
		Key json.RawMessage `json:"ear-verification-key"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&doc); err != nil || len(doc.Key) == 0 {
		return nil, errors.New("verifier key: no ear-verification-key in the well-known document")
	}
	return ear.ParseJWK(doc.Key)
}

// describe is the demo banner's line about verification.
func (c *verificationConfig) describe() string {
	switch c.model {
	case verifyBackground:
		return "verification: background check: the gateway forwards the Evidence to the verifier service at " + c.url + " and relies on its EAR"
	case verifyPassport:
		return "verification: passport: the agent brings an EAR from the verifier service at " + c.url + "; the gateway never sees the Evidence"
	}
	return "verification: local: the gateway verifies the Evidence itself"
}

// evidence names what the agent attests with, for the transcript: its own
// Evidence (short), or a passport over it.
func (c *verificationConfig) evidence(short string) string {
	if c.model == verifyPassport {
		return "an EAR passport (the verifier's appraisal of its " + short + ")"
	}
	return short
}

// gatewayVerifier is the gateway's Verifier for the model: local itself,
// or a background-check RemoteVerifier, or a passport Verifier, both with
// the verifier's pinned EAR key. The posture policy of the payments route
// applies to all three: the EAR carries the posture the verifier replayed,
// and the gateway's relying party replays it again.
func (c *verificationConfig) gatewayVerifier(local postauth.Verifier) (postauth.Verifier, func(), error) {
	switch c.model {
	case verifyBackground:
		rv, err := ear.NewRemoteVerifier(c.url, ear.WithVerifierKeys(c.key),
			ear.WithLocalBinding(softeat.MediaType, softeat.Binding)) // freshness checked here, not trusted
		if err != nil {
			return nil, nil, err
		}
		return rv, func() { rv.Close() }, nil
	case verifyPassport:
		pv, err := ear.NewVerifier([]crypto.PublicKey{c.key})
		if err != nil {
			return nil, nil, err
		}
		return pv, func() {}, nil
	}
	return local, func() {}, nil
}

// agentAttester is the agent's Attester for the model: inner itself, or a
// passport Attester that exchanges inner's Evidence for the verifier's EAR
// (authKey: the key of the agent's TLS certificate, which signs the
// authenticators).
func (c *verificationConfig) agentAttester(inner postauth.Attester, authKey crypto.PublicKey) (postauth.Attester, func(), error) {
	if c.model != verifyPassport {
		return inner, func() {}, nil
	}
	if c.url == "" {
		return nil, nil, errors.New("-verification passport: give the verifier service the gateway trusts with -verifier")
	}
	opts := []ear.AttesterOption{}
	if c.key != nil {
		opts = append(opts, ear.WithVerifierKeys(c.key))
	}
	att, err := ear.NewAttester(inner, c.url, authKey, opts...)
	if err != nil {
		return nil, nil, err
	}
	return att, func() { att.Close() }, nil
}

// reportVerifier prints how many Evidence appraisals the in-process
// verifier service made (nothing when there is none).
func reportVerifier(out io.Writer, v *inProcessVerifier) {
	if v != nil {
		fmt.Fprintf(out, "verifier service (in process, %s): %d Evidence appraisals, each answered with a signed EAR\n", v.srv.URL(), v.appraised.Load())
	}
}
