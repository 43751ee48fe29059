package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/redisstate"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

// The scale-out demo (-replicas N): N gateway replicas behind no load
// balancer (the agent picks the replica), sharing revocations, invalidated
// verdicts and policy through Redis (package middleware/redisstate). It
// shows a denial on one replica invalidating the agent's cached verdict on
// another, a policy document reaching every replica, and a revocation.
//
//	go run ./examples/agent -replicas 2                   # embedded miniredis
//	go run ./examples/agent -replicas 2 -redis 127.0.0.1:6379

// replicaGateway is one gateway replica: a net/http server with its own
// Guard and its own Redis client and Store, as a separate process would
// have.
type replicaGateway struct {
	name  string
	ns    string
	srv   *http.Server
	ln    net.Listener
	guard *middleware.Guard
	store *redisstate.Store
	rdb   redis.UniversalClient
}

func newReplicaGateway(name, redisAddr, ns string, gc gatewayConfig) (*replicaGateway, error) {
	cert, err := loadKeyPair(gc.certFile, gc.keyFile, fileGatewayCert, fileGatewayKey)
	if err != nil {
		return nil, fmt.Errorf("gateway certificate: %w", err)
	}
	pool, err := loadCertPool(gc.caFile)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	agentPub, err := loadAttestationPub(gc.attPubFile, fileAgentAttPub)
	if err != nil {
		return nil, fmt.Errorf("trusted attester key: %w", err)
	}
	policy, err := loadPolicy(gc.policyFile)
	if err != nil {
		return nil, fmt.Errorf("posture policy: %w", err)
	}
	verifier, err := softeat.NewVerifier([]crypto.PublicKey{agentPub}, softeat.RequirePosture())
	if err != nil {
		return nil, err
	}
	r := &replicaGateway{name: name, ns: ns}
	r.rdb = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{redisAddr}})
	if r.store, err = redisstate.New(r.rdb, redisstate.WithNamespace(ns), redisstate.WithReplica(name)); err != nil {
		r.rdb.Close()
		return nil, err
	}
	r.guard, err = middleware.New(verifier,
		middleware.WithCoordinator(r.store),
		middleware.WithRoute("POST /v1/payments", middleware.Route{Mode: middleware.ModeOperation, Posture: policy}),
		middleware.WithRoute("PUT /v1/config", middleware.Route{MaxAge: 5 * time.Minute}))
	if err != nil {
		r.close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payments", func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		fmt.Fprintf(w, `{"status":"paid","replica":%q}`, name)
	})
	mux.HandleFunc("PUT /v1/config", func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		fmt.Fprintf(w, `{"status":"configured","replica":%q}`, name)
	})
	r.srv = &http.Server{
		Handler: r.guard.Middleware(mux),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientCAs: pool,
			ClientAuth: tls.VerifyClientCertIfGiven, SessionTicketsDisabled: true, NextProtos: []string{"h2", "http/1.1"}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	middleware.ConfigureServer(r.srv)
	if r.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		r.close()
		return nil, err
	}
	go r.srv.ServeTLS(r.ln, "", "")
	return r, nil
}

func (r *replicaGateway) url() string { return "https://" + r.ln.Addr().String() }

func (r *replicaGateway) close() {
	if r.srv != nil {
		r.srv.Close()
	}
	if r.guard != nil {
		r.guard.Close()
	}
	r.store.Close()
	r.rdb.Close()
}

// replicaAgent is the demo agent for the replicas: its posture, a software
// attester covering it, and a client that attests to every replica. It
// sends no posture hint (a runtime that does not volunteer its posture):
// only the replicas can tell each other that something changed.
type replicaAgent struct {
	tracker *posture.Tracker
	client  *http.Client
	tr      *transports.Transport

	mu     sync.Mutex // guards events
	events []transports.Activity
}

func newReplicaAgent(ac agentConfig) (*replicaAgent, error) {
	ctx := context.Background()
	cert, err := loadKeyPair(ac.certFile, ac.keyFile, fileAgentCert, fileAgentKey)
	if err != nil {
		return nil, fmt.Errorf("agent certificate: %w", err)
	}
	pool, err := loadCertPool(ac.caFile)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	attKey, err := loadAttestationKey(ac.attKeyFile, fileAgentAttKey)
	if err != nil {
		return nil, fmt.Errorf("agent attestation key: %w", err)
	}
	a := &replicaAgent{}
	if a.tracker, err = posture.NewTracker(); err != nil {
		return nil, err
	}
	if err := measureStartingPosture(ctx, a.tracker); err != nil {
		return nil, err
	}
	attester, err := softeat.NewAttester(attKey, softeat.WithPosture(a.tracker))
	if err != nil {
		return nil, err
	}
	id, err := postauth.IdentityFromTLS(&cert)
	if err != nil {
		return nil, err
	}
	a.tr, err = transports.NewTransport(&http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}}, ForceAttemptHTTP2: true},
		transports.WithAttester(id, attester),
		transports.WithAttestTo("127.0.0.1"), // the replicas
		transports.WithObserver(func(e transports.Activity) {
			a.mu.Lock()
			a.events = append(a.events, e)
			a.mu.Unlock()
		}))
	if err != nil {
		return nil, err
	}
	a.client = &http.Client{Transport: a.tr, Timeout: 30 * time.Second}
	return a, nil
}

func (a *replicaAgent) send(method, url string) (status int, problem middleware.Problem, events []transports.Activity, err error) {
	a.mu.Lock()
	a.events = nil
	a.mu.Unlock()
	req, _ := http.NewRequest(method, url, strings.NewReader(`{"demo":true}`))
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, problem, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode >= 400 {
		json.Unmarshal(b, &problem)
	}
	a.mu.Lock()
	events = a.events
	a.mu.Unlock()
	return resp.StatusCode, problem, events, nil
}

// arrival is a Watcher that reports when a Store delivers an event.
type arrival struct {
	mu   sync.Mutex
	seen []middleware.Event
	at   []time.Time
}

func (w *arrival) Apply(e middleware.Event) {
	w.mu.Lock()
	w.seen, w.at = append(w.seen, e), append(w.at, time.Now())
	w.mu.Unlock()
}

func (w *arrival) Synced(bool) {}

// wait returns when an event matching match arrived (at most 5 s) and
// st, the Store w watches, has delivered it to every watcher (the
// replica's Guard too: a Store delivers to its watchers in turn, in no
// set order).
func (w *arrival) wait(st *redisstate.Store, match func(middleware.Event) bool) (time.Time, bool) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for i, e := range w.seen {
			if match(e) {
				at := w.at[i]
				w.mu.Unlock()
				st.Stats() // holds the Store's lock: waits for the delivery in progress
				return at, true
			}
		}
		w.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	return time.Time{}, false
}

// replicasDemo runs the scale-out story with n replicas on the Redis at
// redisAddr, or on an embedded miniredis if it is empty.
func replicasDemo(out io.Writer, n int, redisAddr string, gc gatewayConfig, ac agentConfig) error {
	if n < 2 || n > 8 {
		return errors.New("-replicas: want 2 to 8")
	}
	start := time.Now()
	which := "Redis at " + redisAddr
	if redisAddr == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer mr.Close()
		redisAddr = mr.Addr()
		which = "EMBEDDED MINIREDIS at " + redisAddr + " (an in-memory stand-in for Redis, demo only: pass -redis host:port for a real one)"
	}
	var b [4]byte
	rand.Read(b[:])
	ns := "demo-" + hex.EncodeToString(b[:])
	replicas := make([]*replicaGateway, 0, n)
	defer func() {
		for _, r := range replicas {
			r.close()
		}
	}()
	for i := range n {
		r, err := newReplicaGateway(fmt.Sprintf("replica-%c", 'A'+i), redisAddr, ns, gc)
		if err != nil {
			return err
		}
		replicas = append(replicas, r)
	}
	for _, r := range replicas {
		deadline := time.Now().Add(10 * time.Second)
		for !r.guard.Synced() {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: not in sync with Redis after 10 s", r.name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	a, err := newReplicaAgent(ac)
	if err != nil {
		return err
	}
	defer a.tr.Close()
	A, B := replicas[0], replicas[1]
	seenOnB := &arrival{}
	stop := B.store.Watch(seenOnB)
	defer stop()

	fmt.Fprintf(out, "reattest scale-out demo: %d gateway replicas sharing state through %s, namespace %q\n", n, which, ns)
	for _, r := range replicas {
		fmt.Fprintf(out, "  %s on %s: POST /v1/payments (operation mode, posture policy), PUT /v1/config (connection mode, max-age 5m)\n", r.name, r.url())
	}
	fmt.Fprintln(out, "  the agent sends no posture hint: only the replicas can tell each other that something changed")

	var failures []string
	step := 0
	check := func(ok bool, format string, args ...any) {
		if !ok {
			msg := fmt.Sprintf(format, args...)
			failures = append(failures, fmt.Sprintf("step %d: %s", step, msg))
			fmt.Fprintf(out, "      !! UNEXPECTED: %s\n", msg)
		}
	}
	show := func(title string, r *replicaGateway, method, path string) (int, middleware.Problem, []transports.Activity) {
		step++
		if title != "" {
			fmt.Fprintf(out, "\n[%d] %s\n", step, title)
		}
		t0 := time.Now()
		status, p, events, err := a.send(method, r.url()+path)
		if err != nil {
			check(false, "%s %s on %s: %v", method, path, r.name, err)
			return 0, p, nil
		}
		line := fmt.Sprintf("    %s %s on %s -> %d (%s)", method, path, r.name, status, fmtDur(time.Since(t0)))
		if p.Reason != "" {
			line += ": " + string(p.Reason)
		}
		if len(p.Violations) > 0 {
			line += " (" + strings.Join(p.Violations, ", ") + ")"
		}
		fmt.Fprintln(out, line)
		for _, e := range events {
			switch e.Kind {
			case transports.ActivityChallenged:
				fmt.Fprintf(out, "      <- 401 challenge: %s\n", e.Reason)
			case transports.ActivityAttested:
				fmt.Fprintln(out, "      -> attested on this connection, retried")
			}
		}
		return status, p, events
	}
	attested := func(events []transports.Activity) bool {
		for _, e := range events {
			if e.Kind == transports.ActivityAttested {
				return true
			}
		}
		return false
	}

	s, _, ev := show("The agent changes config on replica A: challenged, attested, done.", A, "PUT", "/v1/config")
	check(s == 200 && attested(ev), "want 200 after an attestation, got %d", s)
	s, _, ev = show("And on replica B: each replica verifies on its own connection.", B, "PUT", "/v1/config")
	check(s == 200 && attested(ev), "want 200 after an attestation, got %d", s)
	s, _, ev = show("Again on replica B: served on the cached verdict (max-age 5m).", B, "PUT", "/v1/config")
	check(s == 200 && !attested(ev), "want 200 without attestation, got %d", s)

	step++
	fmt.Fprintf(out, "\n[%d] The agent enables a forbidden `shell` tool. It tells nobody.\n", step)
	before := a.tracker.Head()
	if err := a.tracker.EnableTool(context.Background(), toolShell); err != nil {
		return err
	}
	fmt.Fprintf(out, "    posture digest %x... -> %x...\n", before[:8], a.tracker.Head()[:8])

	t0 := time.Now()
	s, p, _ := show("It pays on replica A: fresh Evidence, denied by A's posture policy.", A, "POST", "/v1/payments")
	check(s == 403 && len(p.Violations) > 0 && p.Violations[0] == "tool:shell forbidden", "want 403 naming tool:shell, got %d %v", s, p.Violations)
	at, ok := seenOnB.wait(B.store, func(e middleware.Event) bool {
		return e.Kind == middleware.EventInvalidate && e.Posture == "" && e.Origin != ""
	})
	check(ok, "replica B never heard of the denial")
	if ok {
		fmt.Fprintf(out, "      replica A published the denial; replica B dropped the agent's verdicts %s after the request started\n", fmtDur(at.Sub(t0)))
	}
	s, p, ev = show("Config on replica B: without A's news it would ride on the verdict from before the shell.", B, "PUT", "/v1/config")
	check(s == 200 && attested(ev), "want a re-attestation on B, got %d (attested %v)", s, attested(ev))
	check(p.Reason == "", "unexpected problem %s", p.Reason)
	fmt.Fprintln(out, "      B challenged (verdict_invalidated) and verified the current posture; its config route has no posture rule")

	step++
	fmt.Fprintf(out, "\n[%d] An operator publishes policy document v1: PUT /v1/config now denies shell too, on every replica.\n", step)
	doc, err := middleware.ParsePolicyDocument([]byte(`{"version": 1, "routes": {"PUT /v1/config": {"posture": {"tools": {"deny": ["shell"]}}}}}`))
	if err != nil {
		return err
	}
	if err := A.store.Publish(context.Background(), middleware.Event{Kind: middleware.EventPolicy, Policy: doc, Reason: "demo operator"}); err != nil {
		return err
	}
	_, ok = seenOnB.wait(B.store, func(e middleware.Event) bool { return e.Kind == middleware.EventPolicy && e.Policy.Version == 1 })
	check(ok, "replica B never got the policy document")
	s, p, _ = show("Config on replica B: its cached verdict fails the new document.", B, "PUT", "/v1/config")
	check(s == 403 && len(p.Violations) > 0, "want 403 under the new policy, got %d", s)

	step++
	fmt.Fprintf(out, "\n[%d] The agent disables the tool; then an operator revokes its machine on replica A (Guard.Revoke).\n", step)
	if err := a.tracker.DisableTool(context.Background(), toolShell.Name); err != nil {
		return err
	}
	s, _, _ = show("", B, "PUT", "/v1/config")
	check(s == 200, "after disabling the tool: want 200, got %d", s)
	machine, rec := agentMachine(B)
	check(machine.Value != "", "no machine id in the audit stream")
	if rec != nil {
		fmt.Fprintf(out, "    audit stream record: replica=%v route=%q outcome=%v key=%.16v... machine=%v posture=%.16v... verify_us=%v\n",
			rec["replica"], rec["route"], rec["outcome"], rec["key"], rec["machine"], rec["posture"], rec["verify_us"])
	}
	if err := A.guard.Revoke(context.Background(), machine, time.Now().Add(time.Hour), "demo: lost laptop"); err != nil {
		return err
	}
	_, ok = seenOnB.wait(B.store, func(e middleware.Event) bool { return e.Kind == middleware.EventRevoke && e.Identity == machine })
	check(ok, "replica B never got the revocation")
	for _, r := range replicas {
		s, p, _ = show("", r, "PUT", "/v1/config")
		check(s == 403 && p.Reason == postauth.ReasonAttesterRevoked, "want 403 attester_revoked on %s, got %d %s", r.name, s, p.Reason)
	}

	fmt.Fprintln(out)
	if len(failures) > 0 {
		return fmt.Errorf("the scale-out story did not go as expected:\n  %s", strings.Join(failures, "\n  "))
	}
	fmt.Fprintf(out, "all steps went as expected (%s)\n", fmtDur(time.Since(start)))
	return nil
}

// agentMachine reads the agent's machine identity from the audit stream
// of the replicas' namespace (as an operator would, from the SIEM), and
// returns it with the record it came from.
func agentMachine(r *replicaGateway) (middleware.Identity, map[string]any) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		msgs, err := r.rdb.XRevRangeN(ctx, "reattest:{"+r.ns+"}:audit", "+", "-", 50).Result()
		if err == nil {
			for _, m := range msgs {
				if v, _ := m.Values["machine"].(string); v != "" && m.Values["outcome"] == "verified" {
					return middleware.Identity{Kind: middleware.IdentityMachine, Value: v}, m.Values
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return middleware.Identity{}, nil
}
