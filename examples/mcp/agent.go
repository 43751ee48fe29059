package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/reattest/reattest/middleware/mcpattest"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

// agent is an AI agent with a measured posture (its model and the MCP
// tools it has loaded), a software attester that covers it, and the
// official MCP SDK client whose HTTP client's RoundTripper is the reattest
// transport.
type agent struct {
	tracker  *posture.Tracker
	recorder *mcpattest.Recorder
	tr       *transports.Transport
	session  *mcp.ClientSession
	tlsConf  *tls.Config // the agent's TLS credentials: the attacker "steals" them

	mu     sync.Mutex // guards events
	events []transports.Activity

	local *mcp.ClientSession // the local "workstation" MCP server, when loaded
}

var demoModel = posture.Model{Name: "acme-assistant", Version: "2.1", Digest: posture.DigestOf([]byte("acme-assistant 2.1 weights"))}

func newAgent(ctx context.Context, p *demoPKI, gatewayURL string) (*agent, error) {
	a := &agent{}
	var err error
	if a.tracker, err = posture.NewTracker(); err != nil {
		return nil, err
	}
	if err := a.tracker.SetModel(ctx, demoModel); err != nil {
		return nil, err
	}
	a.recorder = mcpattest.NewRecorder(a.tracker)
	attester, err := softeat.NewAttester(p.attKey, softeat.WithPosture(a.tracker))
	if err != nil {
		return nil, err
	}
	id, err := postauth.IdentityFromTLS(&p.agent)
	if err != nil {
		return nil, err
	}
	a.tlsConf = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: p.pool, Certificates: []tls.Certificate{p.agent}}
	a.tr, err = transports.NewTransport(&http.Transport{TLSClientConfig: a.tlsConf, ForceAttemptHTTP2: true},
		transports.WithAttester(id, attester),
		transports.WithAttestTo("127.0.0.1"), // Evidence (posture, machine id) goes to the gateway only
		transports.WithPosture(a.tracker),
		transports.WithObserver(a.record))
	if err != nil {
		return nil, err
	}
	// The official SDK client, unchanged but for its HTTP client.
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-7", Version: "1.0"},
		&mcp.ClientOptions{ToolListChangedHandler: a.recorder.ToolListChanged})
	a.session, err = client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   gatewayURL,
		HTTPClient: &http.Client{Transport: a.tr, Timeout: 30 * time.Second},
	}, nil)
	if err != nil {
		a.tr.Close()
		return nil, err
	}
	// The tools the agent loads are part of its posture.
	if err := a.recorder.Record(ctx, "gateway", a.session); err != nil {
		a.close()
		return nil, err
	}
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
	if a.local != nil {
		a.local.Close()
	}
	a.session.Close()
	a.tr.Close()
}

// call calls a tool of the gateway and returns its text, or the error.
func (a *agent) call(ctx context.Context, name string, args any) (string, error) {
	res, err := a.session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	if res.IsError {
		return "", fmt.Errorf("tool error: %s", b.String())
	}
	return b.String(), nil
}

// loadWorkstation connects the agent to a local MCP server with a shell
// tool (in process) and records it: the agent's posture now holds
// "mcp:workstation" and "mcp:workstation/shell.exec".
func (a *agent) loadWorkstation(ctx context.Context) error {
	server := mcp.NewServer(&mcp.Implementation{Name: "workstation", Version: "0.9"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "shell.exec", Description: "Run a shell command."},
		func(context.Context, *mcp.CallToolRequest, struct {
			Command string `json:"command"`
		}) (*mcp.CallToolResult, any, error) {
			return textResult("(not run in the demo)"), nil, nil
		})
	ct, st := mcp.NewInMemoryTransports()
	if _, err := server.Connect(ctx, st, nil); err != nil {
		return err
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent-7", Version: "1.0"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		return err
	}
	a.local = cs
	return a.recorder.Record(ctx, "workstation", cs)
}

// unloadWorkstation closes the local server's session and records it.
func (a *agent) unloadWorkstation(ctx context.Context) error {
	if a.local != nil {
		a.local.Close()
		a.local = nil
	}
	return a.recorder.Forget(ctx, "workstation")
}
