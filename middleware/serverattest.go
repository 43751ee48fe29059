package middleware

import (
	"context"
	"log/slog"
	"net/http"
	"slices"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// answerServerAttestation answers a ClientCertificateRequest in the
// request's Attestation-Request header with an Attestation response header
// made on this connection. Anything else is ignored (a CertificateRequest is
// never answered by the server: that would reflect the client's own role).
//
// The response varies with the request's Attestation-Request whether the
// server answers or declines, so Vary names it in both cases.
func (g *Guard) answerServerAttestation(w http.ResponseWriter, r *http.Request) {
	if vary := w.Header().Values("Vary"); !slices.Contains(vary, HeaderAttestationRequest) {
		w.Header().Add("Vary", HeaderAttestationRequest)
	}
	raw, _, err := httpbind.DecodeBytes(r.Header.Get(HeaderAttestationRequest), httpbind.MaxRequestHeader)
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
	ok := st.serverBudget.take(now, serverConnRate, serverConnBurst) // mutation: server attest connection limit
	st.mu.Unlock()
	if ok {
		// And a budget for the whole server, so that many connections cannot
		// keep the attester (a TPM, a remote service) busy.
		g.serverMu.Lock()
		ok = g.serverBudget.take(now, g.cfg.serverRate, g.cfg.serverBurst) // mutation: server attest global limit
		g.serverMu.Unlock()
	}
	if ok && g.limits != nil {
		// And the limits shared by every replica (WithLimits).
		ok = g.limits.allowServerAttest(r.Context(), r) // mutation: server attest shared limit
	}
	if !ok {
		g.logServer(r, "server attestation rate limited", nil)
		return
	}
	ch, err := postauth.NewChannel(r.TLS)
	if err != nil {
		g.logServer(r, "server attestation impossible", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.verifyTimeout)
	defer cancel()
	out, err := g.server.Respond(ctx, ch, postauth.RoleServer, req)
	if err != nil {
		g.logServer(r, "server attestation failed", err)
		return
	}
	w.Header().Set(HeaderAttestation, httpbind.EncodeBytes(out))
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
