package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/ginattest"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
)

// gatewayConfig is where the gateway's credentials come from (empty paths:
// the embedded demo assets).
type gatewayConfig struct {
	listen     string
	certFile   string
	keyFile    string
	caFile     string
	attPubFile string // trusted agent attestation key
	attKeyFile string // the gateway's own attestation key (server attests)
	policyFile string // posture policy for payments
	configTTL  time.Duration
	evidence   evidence  // how agents attest (nil: software EAT)
	log        io.Writer // if set, one line per decision (-mode gateway)
	// verification: who appraises the agent's Evidence (verification.go).
	verification verificationConfig
}

// gateway is a gin API gateway for AI agents with three routes:
//   - GET  /v1/search   not high-impact: untouched;
//   - POST /v1/payments high-impact, operation mode, posture policy,
//     pre-armed (each response carries the challenge for the next payment);
//   - PUT  /v1/config   high-impact, connection mode, short max-age, the
//     same posture policy.
//
// It also attests itself to clients that ask (server-attests direction).
type gateway struct {
	srv      *http.Server
	ln       net.Listener
	stopV    func() // stops the verifier's client (verification.go)
	conns    *middleware.Conns
	payments atomic.Int64
	configs  atomic.Int64

	mu       sync.Mutex // guards captured
	captured string     // the last Attestation header seen (for the replay step)
}

func newGateway(cfg gatewayConfig) (*gateway, error) {
	gin.SetMode(gin.ReleaseMode)
	cert, err := loadKeyPair(cfg.certFile, cfg.keyFile, fileGatewayCert, fileGatewayKey)
	if err != nil {
		return nil, fmt.Errorf("gateway certificate: %w", err)
	}
	pool, err := loadCertPool(cfg.caFile)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	agentPub, err := loadAttestationPub(cfg.attPubFile, fileAgentAttPub)
	if err != nil {
		return nil, fmt.Errorf("trusted attester key: %w", err)
	}
	ownKey, err := loadAttestationKey(cfg.attKeyFile, fileGatewayAttKey)
	if err != nil {
		return nil, fmt.Errorf("gateway attestation key: %w", err)
	}
	policy, err := loadPolicy(cfg.policyFile)
	if err != nil {
		return nil, fmt.Errorf("posture policy: %w", err)
	}
	ev := cfg.evidence
	if ev == nil {
		ev = softwareEvidence{}
	}
	verifier, err := ev.verifier(agentPub)
	if err != nil {
		return nil, err
	}
	serverID, err := postauth.IdentityFromTLS(&cert)
	if err != nil {
		return nil, err
	}
	serverAtt, err := softeat.NewAttester(ownKey)
	if err != nil {
		return nil, err
	}
	v, stopV, err := cfg.verification.gatewayVerifier(verifier)
	if err != nil {
		return nil, err
	}
	opts := []middleware.Option{middleware.WithServerAttestation(serverID, serverAtt, softeat.MediaType)}
	if cfg.log != nil {
		opts = append(opts, middleware.WithObserver(decisionLogger(cfg.log)))
	}
	guard, err := middleware.New(v, opts...)
	if err != nil {
		return nil, err
	}
	pay, err := ginattest.Protect(guard, middleware.Route{Name: "POST /v1/payments", Mode: middleware.ModeOperation, Posture: policy, PreArm: true})
	if err != nil {
		return nil, err
	}
	configure, err := ginattest.Protect(guard, middleware.Route{Name: "PUT /v1/config", Mode: middleware.ModeConnection, MaxAge: cfg.configTTL, Posture: policy})
	if err != nil {
		return nil, err
	}

	g := &gateway{stopV: stopV}
	r := gin.New()
	r.Use(g.capture, ginattest.Middleware(guard))
	r.GET("/v1/search", func(c *gin.Context) {
		c.JSON(200, gin.H{"results": []string{"invoice 2024-117", "invoice 2024-118"}})
	})
	r.POST("/v1/payments", pay, func(c *gin.Context) {
		res, _ := ginattest.Result(c)
		body, _ := io.ReadAll(c.Request.Body)
		g.payments.Add(1)
		c.JSON(200, gin.H{"status": "paid", "request": string(body), "attested_by": res.Subject(), "evidence": res.Format(), "hardware_backed": res.HardwareBacked()})
	})
	r.PUT("/v1/config", configure, func(c *gin.Context) {
		g.configs.Add(1)
		c.JSON(200, gin.H{"status": "configured"})
	})

	g.srv = &http.Server{
		Handler: r,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			// Agents authenticate with their certificate; attestation then
			// requires the authenticator key to be that certificate's key.
			ClientAuth:             tls.VerifyClientCertIfGiven,
			SessionTicketsDisabled: true, // no resumption on attested connections (expat)
			NextProtos:             []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	g.conns = middleware.ConfigureServer(g.srv)
	g.ln, err = net.Listen("tcp", cfg.listen)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// decisionLogger writes one line per decision of the Guard: the route, the
// outcome, the HTTP status, the reason, the Evidence format, the
// verification time and the attester's key hash (a prefix). Never Evidence
// or headers.
func decisionLogger(w io.Writer) func(context.Context, middleware.Decision) {
	var mu sync.Mutex
	return func(_ context.Context, d middleware.Decision) {
		line := fmt.Sprintf("%s decision route=%q mode=%s outcome=%s", time.Now().UTC().Format("15:04:05.000"), d.Route, d.Mode, d.Outcome)
		if d.Status != 0 {
			line += fmt.Sprintf(" status=%d", d.Status)
		}
		if d.Reason != "" {
			line += " reason=" + string(d.Reason)
		}
		if d.Format != "" {
			line += " format=" + d.Format
		}
		if d.VerifyDuration > 0 {
			line += " verify=" + fmtDur(d.VerifyDuration)
		}
		if k := d.Attester.KeyHash; k != "" {
			line += " key=" + k[:min(len(k), 16)]
		}
		mu.Lock()
		fmt.Fprintln(w, line)
		mu.Unlock()
	}
}

// capture remembers the last Attestation header, as an attacker reading the
// gateway's request logs would.
func (g *gateway) capture(c *gin.Context) {
	if v := c.GetHeader(middleware.HeaderAttestation); v != "" {
		g.mu.Lock()
		g.captured = v
		g.mu.Unlock()
	}
	c.Next()
}

func (g *gateway) lastCaptured() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.captured
}

func (g *gateway) addr() string { return g.ln.Addr().String() }

func (g *gateway) serve() error {
	err := g.srv.ServeTLS(g.ln, "", "")
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}

func (g *gateway) close() {
	g.srv.Close()
	g.stopV()
}

// shutdown stops accepting connections and lets requests in flight finish
// (at most d).
func (g *gateway) shutdown(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if g.srv.Shutdown(ctx) != nil {
		g.srv.Close()
	}
	g.stopV()
}
