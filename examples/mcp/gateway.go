package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/mcpattest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
)

// gateway is an MCP server (the official SDK, Streamable HTTP) for AI
// agents with two tools:
//   - search: harmless, untouched;
//   - payments.transfer: high-impact, operation mode (every call attested,
//     bound to the whole JSON-RPC message), under a posture policy that
//     allows only the gateway's own MCP tools, pinned by digest.
type gateway struct {
	srv      *http.Server
	ln       net.Listener
	payments atomic.Int64

	mu       sync.Mutex // guards captured, session
	captured string     // the last Attestation header seen (for the replay step)
	session  string     // its Mcp-Session-Id
}

type searchArgs struct {
	Query string `json:"query" jsonschema:"what to look for"`
}

type transferArgs struct {
	To     string `json:"to" jsonschema:"the payee"`
	Amount int    `json:"amount" jsonschema:"the amount in euros"`
}

func newMCPServer(g *gateway) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "acme-gateway", Version: "1.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "search", Description: "Search the invoices."},
		func(_ context.Context, _ *mcp.CallToolRequest, in searchArgs) (*mcp.CallToolResult, any, error) {
			return textResult("2 invoices match %q: 2024-117, 2024-118", in.Query), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "payments.transfer", Description: "Transfer money to a payee."},
		func(_ context.Context, _ *mcp.CallToolRequest, in transferArgs) (*mcp.CallToolResult, any, error) {
			g.payments.Add(1)
			return textResult("paid %d EUR to %s", in.Amount, in.To), nil, nil
		})
	return s
}

func textResult(format string, args ...any) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, args...)}}}
}

// paymentsPolicy allows exactly the gateway's own MCP server and tools,
// each tool pinned to the digest of its definition as an agent lists it.
func paymentsPolicy(server *mcp.Server) (*posture.Policy, []string, error) {
	ct, st := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		return nil, nil, err
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "pin", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		return nil, nil, err
	}
	defer cs.Close()
	allow := []string{mcpattest.ServerPrefix + "gateway"}
	for t, err := range cs.Tools(ctx, nil) {
		if err != nil {
			return nil, nil, err
		}
		item, err := mcpattest.ToolItem("gateway", t)
		if err != nil {
			return nil, nil, err
		}
		allow = append(allow, item.Name+"@"+item.Digest.String())
	}
	p := &posture.Policy{Tools: posture.ToolRules{Allow: allow}}
	return p, allow, p.Validate()
}

func newGateway(p *demoPKI, listen string) (*gateway, []string, error) {
	g := &gateway{}
	server := newMCPServer(g)
	policy, allow, err := paymentsPolicy(server)
	if err != nil {
		return nil, nil, err
	}
	verifier, err := softeat.NewVerifier([]crypto.PublicKey{p.attKey.Public()}, softeat.RequirePosture())
	if err != nil {
		return nil, nil, err
	}
	guard, err := middleware.New(verifier)
	if err != nil {
		return nil, nil, err
	}
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	guarded, err := mcpattest.New(guard, sdk, []mcpattest.Rule{
		{Tools: []string{"payments.*"}, Mode: middleware.ModeOperation, Posture: policy},
	})
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", g.capture(guarded))
	g.srv = &http.Server{
		Handler: guard.Middleware(mux), // serves /.well-known/reattest
		TLSConfig: &tls.Config{
			MinVersion:             tls.VersionTLS13,
			Certificates:           []tls.Certificate{p.gateway},
			ClientCAs:              p.pool,
			ClientAuth:             tls.VerifyClientCertIfGiven,
			SessionTicketsDisabled: true, // no resumption on attested connections
			NextProtos:             []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	middleware.ConfigureServer(g.srv)
	if g.ln, err = net.Listen("tcp", listen); err != nil {
		return nil, nil, err
	}
	return g, allow, nil
}

// capture remembers the last Attestation header and its session, as an
// attacker reading the gateway's request logs would.
func (g *gateway) capture(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get(middleware.HeaderAttestation); v != "" {
			g.mu.Lock()
			g.captured, g.session = v, r.Header.Get("Mcp-Session-Id")
			g.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

func (g *gateway) lastCaptured() (header, session string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.captured, g.session
}

func (g *gateway) url() string { return "https://" + g.ln.Addr().String() + "/mcp" }

func (g *gateway) serve() error {
	if err := g.srv.ServeTLS(g.ln, "", ""); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func (g *gateway) close() { g.srv.Close() }

// short abbreviates a pinned allow entry for the transcript.
func short(entry string) string {
	if name, digest, ok := strings.Cut(entry, "@"); ok && len(digest) > 16 {
		return name + "@" + digest[:16] + "..."
	}
	return entry
}
