package mcpattest_test

import (
	"context"
	"crypto"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/mcpattest"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

type transferIn struct {
	To     string `json:"to"`
	Amount int    `json:"amount"`
}

// Example is an MCP gateway whose payment tool needs fresh attestation of
// the agent, bound to the very JSON-RPC call, and an agent that uses the
// official SDK client with the reattest transport, over real TLS 1.3 on
// loopback. The search tool needs nothing; a forbidden tool in the agent's
// posture gets the payment denied, as a JSON-RPC error naming it.
func Example() {
	pki := postauthtest.New(postauthtest.Must)
	agentCert := pki.Issue(postauthtest.Must, "agent")
	attKey := postauthtest.NewKey(postauthtest.Must) // the agent's attestation key

	// Gateway: an MCP server with a harmless and a high-impact tool.
	server := mcp.NewServer(&mcp.Implementation{Name: "gateway", Version: "1.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "search"}, func(_ context.Context, _ *mcp.CallToolRequest, in struct {
		Query string `json:"query"`
	}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "2 invoices"}}}, nil, nil
	})
	mcp.AddTool(server, &mcp.Tool{Name: "payments.transfer"}, func(_ context.Context, _ *mcp.CallToolRequest, in transferIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("paid %d to %s", in.Amount, in.To)}}}, nil, nil
	})
	policy, _ := posture.ParsePolicy([]byte("tools:\n  deny: [shell]\n"), "yaml")
	verifier, _ := softeat.NewVerifier([]crypto.PublicKey{attKey.Public()})
	guard, _ := middleware.New(verifier)
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	gateway, _ := mcpattest.New(guard, sdk, []mcpattest.Rule{
		{Tools: []string{"payments.*"}, Mode: middleware.ModeOperation, Posture: policy},
	})
	mux := http.NewServeMux()
	mux.Handle("/mcp", gateway)
	srv := httptest.NewUnstartedServer(guard.Middleware(mux))
	srv.TLS = pki.ServerConfig(pki.Issue(postauthtest.Must, "localhost", postauthtest.ServerAuth()))
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	defer srv.Close()

	// Agent: the official SDK client; its HTTP client's RoundTripper is the
	// reattest transport, nothing else changes.
	ctx := context.Background()
	tracker, _ := posture.NewTracker()
	attester, _ := softeat.NewAttester(attKey, softeat.WithPosture(tracker))
	id, _ := postauth.IdentityFromTLS(&agentCert)
	tr, _ := transports.NewTransport(&http.Transport{TLSClientConfig: pki.ClientConfig(&agentCert)},
		transports.WithAttester(id, attester),
		transports.WithAttestTo("127.0.0.1"), // only the gateway receives Evidence
		transports.WithPosture(tracker))
	defer tr.Close()
	client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: srv.URL + "/mcp", HTTPClient: &http.Client{Transport: tr}}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer session.Close()

	call := func(name string, args any) {
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if refusal, ok := mcpattest.RefusalOf(err); ok {
			fmt.Printf("%s: refused %d %s %v\n", name, refusal.Code, refusal.Reason, refusal.Violations)
			return
		}
		if err != nil {
			fmt.Println(name, err)
			return
		}
		fmt.Printf("%s: %s\n", name, res.Content[0].(*mcp.TextContent).Text)
	}
	call("search", map[string]any{"query": "acme"})               // not high-impact
	call("payments.transfer", transferIn{To: "acme", Amount: 25}) // challenged, attested, paid
	tracker.EnableTool(ctx, posture.Tool{Name: "shell", Digest: posture.DigestOf([]byte("sh"))})
	call("payments.transfer", transferIn{To: "acme", Amount: 25}) // denied by the posture policy
	// Output:
	// search: 2 invoices
	// payments.transfer: paid 25 to acme
	// payments.transfer: refused -32051 posture_denied [tool:shell forbidden]
}
