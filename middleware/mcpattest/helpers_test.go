package mcpattest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/reattest/reattest/internal/e2e"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/mcpattest"
	"github.com/reattest/reattest/transports"
)

// gateway is an MCP server (official SDK, Streamable HTTP) behind the
// adapter on an e2e harness: real TLS 1.3 on loopback, the harness's
// Guard, software EAT attesters on the client side.
type gateway struct {
	*e2e.Harness
	server   *mcp.Server
	payments atomic.Int64 // payments.transfer calls that ran
	resets   atomic.Int64 // admin.reset calls that ran
	secrets  atomic.Int64 // reads of secrets://db-password
	searches atomic.Int64
}

type gatewayConfig struct {
	h2        bool
	stateless bool
	json      bool // JSON responses instead of SSE
	bare      bool // the SDK handler alone, without the adapter (benchmark baseline)
	rules     []mcpattest.Rule
	opts      []mcpattest.Option
	harness   []e2e.Option
}

// defaultRules protect payments (operation mode), admin.reset (connection
// mode, one minute) and the secrets (connection mode).
func defaultRules() []mcpattest.Rule {
	return []mcpattest.Rule{
		{Tools: []string{"payments.*"}, Mode: middleware.ModeOperation},
		{Tools: []string{"admin.reset"}, MaxAge: time.Minute},
		{URIs: []string{"secrets://*"}},
	}
}

type searchIn struct {
	Query string `json:"query"`
}

type payIn struct {
	To     string `json:"to"`
	Amount int    `json:"amount"`
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func newGateway(t testing.TB, cfg gatewayConfig) *gateway {
	t.Helper()
	if cfg.rules == nil {
		cfg.rules = defaultRules()
	}
	g := &gateway{}
	g.server = mcp.NewServer(&mcp.Implementation{Name: "gateway", Version: "1.0"}, nil)
	mcp.AddTool(g.server, &mcp.Tool{Name: "search", Description: "Search the invoices."},
		func(_ context.Context, _ *mcp.CallToolRequest, in searchIn) (*mcp.CallToolResult, any, error) {
			g.searches.Add(1)
			return text("results for " + in.Query), nil, nil
		})
	mcp.AddTool(g.server, &mcp.Tool{Name: "payments.transfer", Description: "Transfer money."},
		func(_ context.Context, _ *mcp.CallToolRequest, in payIn) (*mcp.CallToolResult, any, error) {
			g.payments.Add(1)
			return text(fmt.Sprintf("paid %d to %s", in.Amount, in.To)), nil, nil
		})
	mcp.AddTool(g.server, &mcp.Tool{Name: "admin.reset", Description: "Reset the gateway."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			g.resets.Add(1)
			return text("reset"), nil, nil
		})
	g.server.AddResource(&mcp.Resource{URI: "secrets://db-password", Name: "db-password"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			g.secrets.Add(1)
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "hunter2"}}}, nil
		})
	g.server.AddResource(&mcp.Resource{URI: "docs://readme", Name: "readme"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "read me"}}}, nil
		})
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return g.server },
		&mcp.StreamableHTTPOptions{Stateless: cfg.stateless, JSONResponse: cfg.json})
	opts := append([]e2e.Option{e2e.HTTP2(cfg.h2), e2e.WithServer(func(h *e2e.Harness) http.Handler {
		mux := http.NewServeMux()
		if cfg.bare {
			mux.Handle("/mcp", sdk)
			return mux
		}
		guarded, err := mcpattest.New(h.Guard, sdk, cfg.rules, cfg.opts...)
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle("/mcp", guarded)
		return h.Guard.Middleware(mux) // the discovery document
	})}, cfg.harness...)
	g.Harness = e2e.New(t, opts...)
	return g
}

// connect opens an MCP session with the official SDK client over c.
func (g *gateway) connect(t testing.TB, c *http.Client, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1.0"}, opts)
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: g.URL("/mcp"), HTTPClient: c}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// plain is an http.Client without attestation (mutual TLS only).
func (g *gateway) plain() *http.Client { return &http.Client{Transport: g.BaseTransport()} }

// attesting is an http.Client with the harness's attesting transport.
func (g *gateway) attesting(opts ...transports.Option) *http.Client {
	c, _ := g.Client(opts...)
	return c
}

func callTool(cs *mcp.ClientSession, name string, args any) (string, error) {
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	if res.IsError {
		return "", fmt.Errorf("tool error: %s", b.String())
	}
	return b.String(), nil
}

// rawSession is a session opened with hand-written JSON-RPC (as a client
// that batches would), on protocol version 2025-03-26 (the last with
// batches).
type rawSession struct {
	t  testing.TB
	g  *gateway
	id string
}

const rawVersion = "2025-03-26"

func (g *gateway) rawSession(t testing.TB, c *http.Client) *rawSession {
	t.Helper()
	s := &rawSession{t: t, g: g}
	status, _, hdr := s.post(c, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+rawVersion+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	if status != 200 || hdr.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: %d, session %q", status, hdr.Get("Mcp-Session-Id"))
	}
	s.id = hdr.Get("Mcp-Session-Id")
	if status, body, _ := s.post(c, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); status != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", status, body)
	}
	return s
}

// post sends body on the session with c.
func (s *rawSession) post(c *http.Client, body string) (int, string, http.Header) {
	s.t.Helper()
	req, _ := http.NewRequest("POST", s.g.URL("/mcp"), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if s.id != "" {
		req.Header.Set("Mcp-Session-Id", s.id)
		req.Header.Set("Mcp-Protocol-Version", rawVersion)
	}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// rpcError is a JSON-RPC error response as a client decodes it.
type rpcError struct {
	ID    json.RawMessage `json:"id"`
	Error struct {
		Code    int64               `json:"code"`
		Message string              `json:"message"`
		Data    mcpattest.ErrorData `json:"data"`
	} `json:"error"`
}

// errorsOf decodes a refusal body: one error response or an array of them.
func errorsOf(t testing.TB, body string) []rpcError {
	t.Helper()
	var out []rpcError
	if b := bytes.TrimSpace([]byte(body)); len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("refusal body %q: %v", body, err)
		}
		return out
	}
	var one rpcError
	if err := json.Unmarshal([]byte(body), &one); err != nil {
		t.Fatalf("refusal body %q: %v", body, err)
	}
	return []rpcError{one}
}
