package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

// agentConfig is where the agent's credentials come from (empty paths: the
// embedded demo assets).
type agentConfig struct {
	gatewayURL    string
	certFile      string
	keyFile       string
	caFile        string
	attKeyFile    string   // the agent's attestation key
	gatewayAttPub string   // the gateway attestation key the agent trusts
	evidence      evidence // how the agent attests (nil: software EAT)
	// verification: who appraises the agent's Evidence (verification.go).
	verification verificationConfig
}

// The agent's starting posture (docs/posture.md). The payments policy in
// assets/payments-policy.yaml allows exactly this model and template.
var (
	demoModel    = posture.Model{Name: "acme-assistant", Version: "2.1", Digest: posture.DigestOf([]byte("acme-assistant 2.1 weights"))}
	demoTemplate = posture.Template{Name: "payments-v3", Digest: posture.DigestOf([]byte("You are a careful payments assistant. v3"))}
	toolSearch   = posture.Tool{Name: "search", Version: "1.4", Digest: posture.DigestOf([]byte("search tool 1.4"))}
	toolPayments = posture.Tool{Name: "payments", Version: "2.0", Digest: posture.DigestOf([]byte("payments tool 2.0"))}
	toolShell    = posture.Tool{Name: "shell", Version: "5.2", Digest: posture.DigestOf([]byte("/bin/sh 5.2"))}
)

// measureStartingPosture records the agent's starting posture in tr: the
// model, template, tools, grant and flag the payments policy allows.
func measureStartingPosture(ctx context.Context, tr *posture.Tracker) error {
	for _, step := range []func() error{
		func() error { return tr.SetModel(ctx, demoModel) },
		func() error { return tr.SetTemplate(ctx, demoTemplate) },
		func() error { return tr.EnableTool(ctx, toolSearch) },
		func() error { return tr.EnableTool(ctx, toolPayments) },
		func() error { return tr.Grant(ctx, "payments", "transfer") },
		func() error { return tr.SetFlag(ctx, "fips_mode", "on") },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// agent is an AI agent with a measured posture, a software attester that
// covers it, and an HTTP client whose transport answers challenges.
type agent struct {
	tracker     *posture.Tracker
	evidence    evidence
	client      *http.Client
	tr          *transports.Transport
	base        string
	attestsWith string // what it attests with, for the transcript
	stopAtt     func()

	mu     sync.Mutex // guards events
	events []transports.Activity

	// tlsConf holds the agent's TLS credentials; the attacker step
	// "steals" them.
	tlsConf *tls.Config
}

func newAgent(cfg agentConfig) (*agent, error) {
	ctx := context.Background()
	cert, err := loadKeyPair(cfg.certFile, cfg.keyFile, fileAgentCert, fileAgentKey)
	if err != nil {
		return nil, fmt.Errorf("agent certificate: %w", err)
	}
	pool, err := loadCertPool(cfg.caFile)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	attKey, err := loadAttestationKey(cfg.attKeyFile, fileAgentAttKey)
	if err != nil {
		return nil, fmt.Errorf("agent attestation key: %w", err)
	}
	gwPub, err := loadAttestationPub(cfg.gatewayAttPub, fileGatewayAttPub)
	if err != nil {
		return nil, fmt.Errorf("gateway attestation key: %w", err)
	}

	a := &agent{base: strings.TrimSuffix(cfg.gatewayURL, "/"), evidence: cfg.evidence}
	if a.evidence == nil {
		a.evidence = softwareEvidence{}
	}
	gwURL, err := url.Parse(a.base)
	if err != nil || gwURL.Scheme != "https" || gwURL.Host == "" {
		return nil, fmt.Errorf("gateway URL %q: want https://host[:port]", cfg.gatewayURL)
	}
	if a.tracker, err = a.evidence.newTracker(); err != nil {
		return nil, err
	}
	if err := measureStartingPosture(ctx, a.tracker); err != nil {
		return nil, err
	}
	inner, err := a.evidence.attester(attKey, a.tracker)
	if err != nil {
		return nil, err
	}
	attester, stopAtt, err := cfg.verification.agentAttester(inner, cert.PrivateKey.(crypto.Signer).Public())
	if err != nil {
		return nil, err
	}
	a.attestsWith, a.stopAtt = cfg.verification.evidence(a.evidence.short()), stopAtt
	id, err := postauth.IdentityFromTLS(&cert)
	if err != nil {
		return nil, err
	}
	gwVerifier, err := softeat.NewVerifier([]crypto.PublicKey{gwPub})
	if err != nil {
		return nil, err
	}
	gwRP, err := postauth.NewRelyingParty(gwVerifier) // key trust: the gateway's TLS key
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}}
	a.tlsConf = tlsConf
	// Before any config change, the agent wants fresh proof of the
	// gateway's own state on the connection it is about to use.
	configChange := func(r *http.Request) bool { return r.Method == http.MethodPut && r.URL.Path == "/v1/config" }
	a.tr, err = transports.NewTransport(&http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true},
		transports.WithAttester(id, attester),
		transports.WithAttestTo(gwURL.Host), // Evidence (posture, machine id) goes to the gateway only
		transports.WithPosture(a.tracker),
		transports.WithServerAttestation(configChange, gwRP, time.Minute),
		transports.WithObserver(a.record))
	if err != nil {
		return nil, err
	}
	a.client = &http.Client{Transport: a.tr, Timeout: 30 * time.Second}
	return a, nil
}

func (a *agent) record(e transports.Activity) {
	a.mu.Lock()
	a.events = append(a.events, e)
	a.mu.Unlock()
}

func (a *agent) takeEvents() []transports.Activity {
	a.mu.Lock()
	defer a.mu.Unlock()
	ev := a.events
	a.events = nil
	return ev
}

func (a *agent) close() {
	a.tr.Close()
	a.stopAtt()
}

// reachable checks, before the story, that a reattest gateway answers at
// a.base: one clear error instead of a failure per step.
func (a *agent) reachable() error {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: a.tlsConf.Clone(), ForceAttemptHTTP2: true}, Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(a.base + middleware.WellKnownPath)
	if err != nil {
		return fmt.Errorf("gateway %s unreachable: %w (start one with: go run ./examples/agent -mode gateway)", a.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s does not look like a reattest gateway: %s%s answered %s", a.base, a.base, middleware.WellKnownPath, resp.Status)
	}
	return nil
}

// reply is what a step observed.
type reply struct {
	status int
	body   string
	proto  string
	events []transports.Activity
	took   time.Duration
}

func (a *agent) send(method, path, body string) (*reply, error) {
	a.takeEvents()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return &reply{status: resp.StatusCode, body: string(b), proto: resp.Proto, events: a.takeEvents(), took: time.Since(start)}, nil
}

// story runs the demo against the gateway at a.base and prints a
// transcript to w. gw is the in-process gateway (nil when the gateway is a
// separate process: the steps that look inside it are skipped).
func story(w io.Writer, a *agent, gw *gateway) error {
	ctx := context.Background()
	var failures []string
	step := 0
	check := func(ok bool, format string, args ...any) {
		if !ok {
			msg := fmt.Sprintf(format, args...)
			failures = append(failures, fmt.Sprintf("step %d: %s", step, msg))
			fmt.Fprintf(w, "      !! UNEXPECTED: %s\n", msg)
		}
	}
	show := func(title, method, path, body string) *reply {
		step++
		fmt.Fprintf(w, "\n[%d] %s\n", step, title)
		r, err := a.send(method, path, body)
		if err != nil {
			check(false, "%s %s: %v", method, path, err)
			return &reply{}
		}
		fmt.Fprintf(w, "    %s %s -> %d (%s, %s)\n", method, path, r.status, r.proto, fmtDur(r.took))
		for _, e := range r.events {
			fmt.Fprintf(w, "      %s\n", describe(e, a.attestsWith))
		}
		return r
	}
	kinds := func(r *reply) string {
		var out []string
		for _, e := range r.events {
			out = append(out, kindName(e.Kind))
		}
		return strings.Join(out, ",")
	}

	r := show("Search is not high-impact: it passes untouched.", "GET", "/v1/search", "")
	check(r.status == 200 && len(r.events) == 0, "want 200 without attestation, got %d [%s]", r.status, kinds(r))

	r = show("A payment is high-impact (operation mode): challenged, attested on the same connection, executed; the response pre-arms the next payment.",
		"POST", "/v1/payments", `{"to":"acme-supplies","amount":25}`)
	check(r.status == 200 && kinds(r) == "challenged,attested", "want 401 then 200 with one attestation, got %d [%s]", r.status, kinds(r))
	var paid struct {
		Evidence       string `json:"evidence"`
		HardwareBacked bool   `json:"hardware_backed"`
	}
	if json.Unmarshal([]byte(r.body), &paid) == nil && paid.Evidence != "" {
		fmt.Fprintf(w, "      the gateway verified %s evidence (hardware-backed: %v)\n", paid.Evidence, paid.HardwareBacked)
	}
	payments := func() int64 {
		if gw == nil {
			return -1
		}
		return gw.payments.Load()
	}
	paidBefore := payments()

	r = show("A config change (connection mode): the agent first checks the gateway's own attestation, then attests itself.",
		"PUT", "/v1/config", `{"retries":3}`)
	check(r.status == 200 && kinds(r) == "server-attested,challenged,attested", "want server attested, then challenge and 200, got %d [%s]", r.status, kinds(r))

	r = show("A second config change rides on the connection's cached verdict.", "PUT", "/v1/config", `{"retries":4}`)
	check(r.status == 200 && len(r.events) == 0, "want 200 with no new attestation, got %d [%s]", r.status, kinds(r))

	r = show("The next payment takes one round trip: the last response carried a pre-armed challenge, which the agent answers up front.",
		"POST", "/v1/payments", `{"to":"acme-supplies","amount":40}`)
	check(r.status == 200 && kinds(r) == "attested" && r.events[0].Proactive, "want 200 with one pre-armed attestation and no 401, got %d [%s]", r.status, kinds(r))

	step++
	fmt.Fprintf(w, "\n[%d] The agent enables a forbidden `shell` tool: its measured posture changes.\n", step)
	before := fmt.Sprintf("%x", a.tracker.Head()[:8])
	if err := a.tracker.EnableTool(ctx, toolShell); err != nil {
		check(false, "enable shell: %v", err)
	}
	fmt.Fprintf(w, "    posture head %s... -> %x...\n", before, a.tracker.Head()[:8])
	fmt.Fprintln(w, "      (the posture head is the hash chain over the agent's posture log: model, prompt template,")
	fmt.Fprintln(w, "       tools, grants, flags. Evidence covers it, and the agent announces it on every request")
	fmt.Fprintln(w, "       in the Attestation-Posture header, so a gateway notices the change at once.)")

	r = show("A config change: the connection's cached verdict covers the old posture, so the gateway re-challenges (posture_changed); the new posture is denied.",
		"PUT", "/v1/config", `{"retries":5}`)
	var problem middleware.Problem
	json.Unmarshal([]byte(r.body), &problem)
	check(r.status == 403 && kinds(r) == "challenged,attested" && len(r.events) > 0 && r.events[0].Reason == postauth.ReasonPostureChanged,
		"want 401 posture_changed, then attestation and 403, got %d [%s]", r.status, kinds(r))
	check(len(problem.Violations) == 1 && problem.Violations[0] == "tool:shell forbidden", "want a 403 naming tool:shell, got %v", problem.Violations)
	if r.status == 403 {
		fmt.Fprintf(w, "      403 problem: %s; violations: %s\n", problem.Reason, strings.Join(problem.Violations, ", "))
	}

	r = show("A payment is attested on its own, as every payment is (operation mode): denied too, naming the tool.",
		"POST", "/v1/payments", `{"to":"acme-supplies","amount":900}`)
	problem = middleware.Problem{}
	json.Unmarshal([]byte(r.body), &problem)
	check(r.status == 403 && len(problem.Violations) == 1 && problem.Violations[0] == "tool:shell forbidden",
		"want 403 naming tool:shell, got %d %v", r.status, problem.Violations)
	if r.status == 403 {
		fmt.Fprintf(w, "      403 problem: %s; violations: %s\n", problem.Reason, strings.Join(problem.Violations, ", "))
	}
	check(gw == nil || payments() == paidBefore+1, "the denied payment ran")

	step++
	fmt.Fprintf(w, "\n[%d] The agent disables the tool.\n", step)
	if err := a.tracker.DisableTool(ctx, toolShell.Name); err != nil {
		check(false, "disable shell: %v", err)
	}
	r = show("It pays again: allowed.", "POST", "/v1/payments", `{"to":"acme-supplies","amount":900}`)
	check(r.status == 200, "want 200, got %d", r.status)
	r = show("And changes the config again: attested afresh, allowed.", "PUT", "/v1/config", `{"retries":5}`)
	check(r.status == 200 && strings.HasSuffix(kinds(r), "attested"), "want a new attestation and 200, got %d [%s]", r.status, kinds(r))

	step++
	fmt.Fprintf(w, "\n[%d] An attacker replays a captured Attestation header on its own connection.\n", step)
	if gw == nil {
		fmt.Fprintln(w, "    (skipped: needs the in-process gateway to capture a header)")
	} else {
		captured := gw.lastCaptured()
		status, reason, took, err := attackerReplay(a, captured)
		switch {
		case err != nil:
			check(false, "attacker request: %v", err)
		default:
			fmt.Fprintf(w, "    POST /v1/payments {to: mallory} with the captured header and the agent's stolen TLS key -> %d %s (%s)\n", status, reason, fmtDur(took))
			fmt.Fprintln(w, "      the header answers a challenge of another connection: its exporter, and so its binder, differ")
			check(status == 401, "want 401 for a replayed header, got %d", status)
		}
		check(payments() == paidBefore+2, "the replayed payment ran")
	}

	fmt.Fprintln(w)
	if len(failures) > 0 {
		return fmt.Errorf("the story did not go as expected:\n  %s", strings.Join(failures, "\n  "))
	}
	return nil
}

// attackerReplay sends a payment with a captured Attestation header from a
// new connection. Even with the agent's stolen TLS key, it fails: the header
// answers a challenge of another connection, whose exporter differs.
func attackerReplay(a *agent, captured string) (status int, reason string, took time.Duration, err error) {
	if captured == "" {
		return 0, "", 0, errors.New("nothing captured")
	}
	tr := &http.Transport{TLSClientConfig: a.tlsConf.Clone(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", a.base+"/v1/payments", strings.NewReader(`{"to":"mallory","amount":9000}`))
	req.Header.Set(middleware.HeaderAttestation, captured)
	start := time.Now()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", 0, err
	}
	defer resp.Body.Close()
	var p middleware.Problem
	json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&p)
	return resp.StatusCode, string(p.Reason), time.Since(start), nil
}

func kindName(k transports.ActivityKind) string {
	switch k {
	case transports.ActivityChallenged:
		return "challenged"
	case transports.ActivityAttested:
		return "attested"
	case transports.ActivityShared:
		return "shared"
	case transports.ActivityServerAttested:
		return "server-attested"
	}
	return "?"
}

func describe(e transports.Activity, evidence string) string {
	switch e.Kind {
	case transports.ActivityChallenged:
		return fmt.Sprintf("<- 401 challenge: %s (%s mode)", e.Reason, e.Mode)
	case transports.ActivityAttested:
		if e.Proactive {
			return fmt.Sprintf("-> attested up front: answered the pre-armed challenge with %s bound to this connection, no 401 (%s)", evidence, fmtDur(e.Duration))
		}
		return fmt.Sprintf("-> attested: answered the challenge with %s bound to this connection, retried (%s)", evidence, fmtDur(e.Duration))
	case transports.ActivityShared:
		return "-> rode on the connection's attestation"
	case transports.ActivityServerAttested:
		return fmt.Sprintf("<- gateway attested: %s evidence, key = its TLS certificate's (%s)", e.Result.Format(), e.Result.Subject())
	}
	return ""
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}
