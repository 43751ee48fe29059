package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	"github.com/reattest/reattest/internal/wire"
	"github.com/reattest/reattest/postauth"
)

// Problem is the application/problem+json body (RFC 9457) of a refused
// request. Reason and Violations are wire-safe: they name checks and posture
// items, never Evidence or internal errors.
type Problem struct {
	// Type is the problem type URI (see [ProblemType]).
	Type string `json:"type"`
	// Title is a short human-readable summary.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Reason is the machine-readable reason (docs/protocol.md, "Errors").
	Reason string `json:"reason,omitempty"`
	// Violations lists the failed posture items of a policy denial.
	Violations []string `json:"violations,omitempty"`
}

// ProblemType returns the problem type URI for slug (for example
// "policy-denied"), as used in [Problem.Type].
func ProblemType(slug string) string { return defaultProblemTypeURI + slug }

func (g *Guard) writeProblem(w http.ResponseWriter, r *http.Request, rt *route, status int, slug, title string, err error) {
	var pe *postauth.Error
	errors.As(err, &pe)
	g.logRefused(r, rt, status, err, pe)
	reason := ""
	if pe != nil {
		reason = pe.Reason
	}
	g.observeRefusal(r, rt, status, reason, err)
	if g.cfg.errorHandler != nil {
		if pe == nil {
			pe = &postauth.Error{Code: postauth.CodeOf(err), Err: err}
		}
		g.cfg.errorHandler(w, r, status, pe)
		return
	}
	p := Problem{Type: ProblemType(slug), Title: title, Status: status}
	if pe != nil {
		p.Reason = pe.Reason
		p.Violations = pe.Violations
	}
	body, _ := json.Marshal(p)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

func (g *Guard) logRefused(r *http.Request, rt *route, status int, err error, pe *postauth.Error) {
	if g.cfg.log == nil {
		return
	}
	level := slog.LevelWarn
	code := postauth.CodeOf(err)
	switch {
	case code == postauth.CodeCanceled || errors.Is(r.Context().Err(), context.Canceled):
		level = slog.LevelDebug // the client hung up: not an attack
	case code == postauth.CodeRequired || code == postauth.CodeStale:
		level = slog.LevelInfo // the normal challenge
	}
	attrs := []slog.Attr{
		slog.Int("status", status), slog.String("code", code.String()),
		slog.String("remote", r.RemoteAddr),
	}
	if rt != nil {
		attrs = append(attrs, slog.String("route", rt.pattern))
	}
	if pe != nil {
		attrs = append(attrs, slog.String("reason", pe.Reason))
		if len(pe.Violations) > 0 {
			attrs = append(attrs, slog.Any("violations", pe.Violations))
		}
		if pe.Err != nil {
			// Internal causes go to the log only (never on the wire); they
			// name checks, not Evidence.
			attrs = append(attrs, slog.String("cause", pe.Err.Error()))
		}
	}
	g.cfg.log.LogAttrs(r.Context(), level, "reattest: request refused", attrs...)
}

// Discovery is the JSON document served at GET /.well-known/reattest.
type Discovery struct {
	// Version of the protocol (1).
	Version int `json:"version"`
	// EvidenceFormats accepted from clients (media types); empty means
	// whatever the verifier accepts.
	EvidenceFormats []string `json:"evidence_formats"`
	// FreshnessModes in use ("connection", "operation").
	FreshnessModes []string `json:"freshness_modes"`
	// VerificationModels: "background-check" (the server verifies).
	VerificationModels []string `json:"verification_models"`
	// AttestationExtension is the cmw_attestation code point.
	AttestationExtension uint16 `json:"attestation_extension"`
	// Routes lists the high-impact routes configured by pattern.
	Routes []DiscoveryRoute `json:"routes"`
	// ServerAttests says the server answers ClientCertificateRequests
	// (here and on any request), with Evidence of ServerEvidenceFormats.
	ServerAttests         bool     `json:"server_attests"`
	ServerEvidenceFormats []string `json:"server_evidence_formats,omitempty"`
}

// DiscoveryRoute describes one high-impact route.
type DiscoveryRoute struct {
	// Pattern is the route pattern, in http.ServeMux syntax.
	Pattern string `json:"pattern"`
	// Mode is "connection" or "operation".
	Mode string `json:"mode"`
	// MaxAge in seconds (connection mode).
	MaxAge int `json:"max_age,omitempty"`
}

func (g *Guard) discoveryDocument() ([]byte, error) {
	d := Discovery{
		Version:              1,
		EvidenceFormats:      g.cfg.formats,
		VerificationModels:   []string{"background-check"},
		AttestationExtension: g.cfg.requester.AttestationExtension,
		ServerAttests:        g.cfg.serverAtt != nil,
	}
	if d.AttestationExtension == 0 {
		d.AttestationExtension = postauth.DefaultAttestationExtension
	}
	if d.EvidenceFormats == nil {
		d.EvidenceFormats = []string{}
	}
	if d.ServerAttests {
		d.ServerEvidenceFormats = g.cfg.serverFormats
	}
	modes := map[string]bool{}
	d.Routes = []DiscoveryRoute{}
	for _, spec := range g.cfg.routes {
		rt := g.routes[spec.pattern]
		dr := DiscoveryRoute{Pattern: spec.pattern, Mode: rt.Mode.String()}
		if rt.Mode == ModeConnection {
			dr.MaxAge = int(rt.MaxAge.Seconds())
		}
		d.Routes = append(d.Routes, dr)
		modes[dr.Mode] = true
	}
	for _, m := range []string{wire.ModeConnection, wire.ModeOperation} {
		if modes[m] {
			d.FreshnessModes = append(d.FreshnessModes, m)
		}
	}
	if d.FreshnessModes == nil {
		d.FreshnessModes = []string{}
	}
	return json.Marshal(d)
}

func (g *Guard) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	if g.cfg.serverAtt != nil && r.Header[wire.HeaderRequest] != nil {
		g.answerServerAttestation(w, r)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(g.discover)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(g.discover)
	}
}

// answerServerAttestation answers a ClientCertificateRequest in the
// request's Attestation-Request header with an Attestation response header
// made on this connection. Anything else is ignored (a CertificateRequest is
// never answered by the server: that would reflect the client's own role).
func (g *Guard) answerServerAttestation(w http.ResponseWriter, r *http.Request) {
	raw, _, err := wire.DecodeBytes(r.Header.Get(wire.HeaderRequest), wire.MaxRequestHeader)
	if err != nil {
		return
	}
	req, err := postauth.ParseRequest(raw)
	if err != nil || req.Type != postauth.TypeClientCertificateRequest {
		return
	}
	if r.TLS == nil || !r.TLS.HandshakeComplete {
		return
	}
	st, err := g.connState(r)
	if err != nil {
		return
	}
	now := g.cfg.now()
	st.mu.Lock()
	ok := st.serverBudget.take(now, defaultServerRate, defaultServerBurst)
	reqr, err := st.requester(r, &g.cfg.requester)
	st.mu.Unlock()
	if ok {
		// And a budget for the whole server, so that many connections cannot
		// keep the attester (a TPM, a remote service) busy.
		g.serverMu.Lock()
		ok = g.serverBudget.take(now, g.cfg.serverRate, g.cfg.serverBurst)
		g.serverMu.Unlock()
	}
	if !ok || err != nil {
		g.logServer(r, "rate limited or no channel", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.verifyTimeout)
	defer cancel()
	out, err := postauth.Respond(ctx, reqr.Channel(), postauth.RoleServer, req, g.cfg.serverID, g.cfg.serverAtt, nil)
	if err != nil {
		g.logServer(r, "server attestation failed", err)
		return
	}
	w.Header().Set(wire.HeaderAttestation, wire.EncodeBytes(out))
	vary := w.Header().Values("Vary")
	if !slices.Contains(vary, wire.HeaderRequest) {
		w.Header().Add("Vary", wire.HeaderRequest)
	}
}

func (g *Guard) logServer(r *http.Request, msg string, err error) {
	if g.cfg.log == nil {
		return
	}
	attrs := []slog.Attr{slog.String("remote", r.RemoteAddr)}
	if err != nil {
		attrs = append(attrs, slog.String("cause", err.Error()))
	}
	g.cfg.log.LogAttrs(r.Context(), slog.LevelWarn, "reattest: "+msg, attrs...)
}
