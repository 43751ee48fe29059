package middleware

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
)

// Discovery is the JSON document served at GET /.well-known/reattest
// (docs/protocol.md, section 5.6). It needs no client certificate and is
// sent with Cache-Control: no-store.
type Discovery struct {
	// Version of the protocol (1).
	Version int `json:"version"`
	// EvidenceFormats accepted from clients (media types); empty means
	// whatever the verifier accepts.
	EvidenceFormats []string `json:"evidence_formats"`
	// FreshnessModes in use by the routes ("connection", "operation").
	FreshnessModes []string `json:"freshness_modes"`
	// VerificationModels: "background-check" (the server verifies).
	VerificationModels []string `json:"verification_models"`
	// AttestationExtension is the cmw_attestation code point.
	AttestationExtension uint16 `json:"attestation_extension"`
	// Routes lists every high-impact route: pattern routes, and wrapped
	// handlers once they have a name.
	Routes []DiscoveryRoute `json:"routes"`
	// ServerAttests says the server answers ClientCertificateRequests
	// (here and on any request), with Evidence of ServerEvidenceFormats.
	ServerAttests         bool     `json:"server_attests"`
	ServerEvidenceFormats []string `json:"server_evidence_formats,omitempty"`
}

// DiscoveryRoute describes one high-impact route.
type DiscoveryRoute struct {
	// Pattern is the route pattern (http.ServeMux syntax) or name.
	Pattern string `json:"pattern"`
	// Mode is "connection" or "operation".
	Mode string `json:"mode"`
	// MaxAge in seconds (connection mode).
	MaxAge int `json:"max_age,omitempty"`
	// PreArm says the route's responses carry a fresh Attestation-Request.
	PreArm bool `json:"pre_arm,omitempty"`
	// EvidenceFormats, when set, replaces the document's list for this
	// route.
	EvidenceFormats []string `json:"evidence_formats,omitempty"`
}

// routes returns every route of the Guard, pattern routes first.
func (g *Guard) routes() []*route {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append(slices.Clip(g.patterns), g.handlers...)
}

func (g *Guard) discoveryDocument() []byte {
	if p := g.discover.Load(); p != nil {
		return *p
	}
	d := Discovery{
		Version:              1,
		VerificationModels:   []string{"background-check"},
		AttestationExtension: postauth.DefaultAttestationExtension,
		ServerAttests:        g.server != nil,
		Routes:               []DiscoveryRoute{},
	}
	if g.rp != nil {
		d.EvidenceFormats = g.rp.Formats()
		d.AttestationExtension = g.rp.AttestationExtension()
	}
	if d.EvidenceFormats == nil {
		d.EvidenceFormats = []string{}
	}
	if d.ServerAttests {
		d.ServerEvidenceFormats = g.cfg.serverFormats
	}
	modes := map[string]bool{}
	listed := map[string]bool{}
	for _, rt := range g.routes() {
		name := rt.name.Load()
		if name == nil || listed[*name] {
			continue // a wrapped handler not named yet, or nested in a pattern route of that name
		}
		listed[*name] = true
		dr := DiscoveryRoute{Pattern: *name, Mode: rt.Mode.String(), PreArm: rt.PreArm}
		if rt.Mode == ModeConnection {
			dr.MaxAge = int(rt.MaxAge.Seconds())
		}
		if rt.rp != g.rp {
			dr.EvidenceFormats = rt.rp.Formats()
		}
		d.Routes = append(d.Routes, dr)
		modes[dr.Mode] = true
	}
	d.FreshnessModes = []string{}
	for _, m := range []string{httpbind.ModeConnection, httpbind.ModeOperation} {
		if modes[m] {
			d.FreshnessModes = append(d.FreshnessModes, m)
		}
	}
	b, _ := json.Marshal(d) // plain strings and numbers: cannot fail
	g.discover.Store(&b)
	return b
}

func (g *Guard) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	if g.server != nil && r.Header[HeaderAttestationRequest] != nil {
		g.answerServerAttestation(w, r)
	}
	doc := g.discoveryDocument()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(doc)
	}
}
