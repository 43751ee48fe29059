package mcpattest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/reattest/reattest/posture"
)

// The agent side: what the agent has loaded from MCP servers is part of its
// posture. Each server and each of its tools is a posture tool item
// (docs/posture.md; docs/mcp.md, section 5):
//
//	server: posture.Tool{Name: "mcp:<server>",        Version: serverInfo.version, Digest: SHA-256(canonical InitializeResult)}
//	tool:   posture.Tool{Name: "mcp:<server>/<tool>",                             Digest: SHA-256(canonical tool definition)}
//
// <server> is the name the agent gives the server (its configuration key),
// <tool> the tool's name. A tool whose definition changes (its
// description, its schema: what the model reads) gets another digest, so a
// posture policy that pins digests ("mcp:gateway/search@sha-256:...")
// denies a changed tool as it denies a new one.

// ServerPrefix starts the posture name of every MCP item.
const ServerPrefix = "mcp:"

// ToolDigest returns the SHA-256 digest of t's canonical definition: its
// JSON form as this SDK version encodes it, with object keys sorted, no
// HTML escaping and numbers in their shortest form (close to RFC 8785;
// docs/mcp.md, section 5).
func ToolDigest(t *mcp.Tool) (posture.Digest, error) {
	if t == nil {
		return posture.Digest{}, errors.New("mcpattest: nil tool")
	}
	return canonicalDigest(t)
}

// ToolItem returns the posture item of tool t of the MCP server the agent
// calls server.
func ToolItem(server string, t *mcp.Tool) (posture.Tool, error) {
	d, err := ToolDigest(t)
	if err != nil {
		return posture.Tool{}, err
	}
	return posture.Tool{Name: ServerPrefix + server + "/" + t.Name, Digest: d}, nil
}

// ServerItem returns the posture item of the MCP server the agent calls
// server, as its session initialized: the digest covers the whole
// initialize result (protocol version, server name and version,
// capabilities, instructions).
func ServerItem(server string, init *mcp.InitializeResult) (posture.Tool, error) {
	if init == nil {
		return posture.Tool{}, errors.New("mcpattest: the session is not initialized")
	}
	d, err := canonicalDigest(init)
	if err != nil {
		return posture.Tool{}, err
	}
	version := ""
	if init.ServerInfo != nil {
		version = init.ServerInfo.Version
	}
	if len(version) > posture.MaxVersionLen {
		version = version[:posture.MaxVersionLen]
	}
	return posture.Tool{Name: ServerPrefix + server, Version: version, Digest: d}, nil
}

// canonicalDigest is the SHA-256 digest of v's canonical JSON.
func canonicalDigest(v any) (posture.Digest, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return posture.Digest{}, fmt.Errorf("mcpattest: encoding: %w", err)
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return posture.Digest{}, fmt.Errorf("mcpattest: encoding: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tree); err != nil { // maps encode with sorted keys
		return posture.Digest{}, fmt.Errorf("mcpattest: encoding: %w", err)
	}
	return posture.DigestOf(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// Recorder records the MCP servers and tools an agent loads on its posture
// Tracker. Give its ToolListChanged to the MCP client
// (mcp.ClientOptions.ToolListChangedHandler) so that a server's new or
// changed tools change the posture as soon as the server announces them. A
// Recorder is safe for concurrent use.
type Recorder struct {
	tr *posture.Tracker

	mu       sync.Mutex // serializes recordings, guards sessions and onError
	sessions map[*mcp.ClientSession]string
	onError  func(server string, err error)
}

// NewRecorder returns a Recorder for tr.
func NewRecorder(tr *posture.Tracker) *Recorder {
	return &Recorder{tr: tr, sessions: make(map[*mcp.ClientSession]string)}
}

// OnError sets the function told when recording after a tools/list_changed
// notification fails (the posture then no longer covers what the server
// offers: stop using the server). Nil means none.
func (r *Recorder) OnError(f func(server string, err error)) {
	r.mu.Lock()
	r.onError = f
	r.mu.Unlock()
}

// Record lists every tool of the session cs (following pages) and records
// the server and its tools under the name server: items that are new or
// changed are enabled, tools of server that the session no longer lists
// are disabled, unchanged items are left alone (no event). On error the
// posture may hold part of the change; call Record again or Forget.
func (r *Recorder) Record(ctx context.Context, server string, cs *mcp.ClientSession) error {
	if cs == nil {
		return errors.New("mcpattest: nil session")
	}
	var tools []*mcp.Tool
	for t, err := range cs.Tools(ctx, nil) {
		if err != nil {
			return fmt.Errorf("mcpattest: listing the tools of %q: %w", server, err)
		}
		tools = append(tools, t)
		if len(tools) > posture.MaxEvents {
			return fmt.Errorf("mcpattest: server %q lists more than %d tools", server, posture.MaxEvents)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.recordLocked(ctx, server, cs.InitializeResult(), tools); err != nil {
		return err
	}
	r.sessions[cs] = server
	return nil
}

// RecordTools records server and the tools given (for agents that list
// tools themselves), like Record.
func (r *Recorder) RecordTools(ctx context.Context, server string, init *mcp.InitializeResult, tools []*mcp.Tool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recordLocked(ctx, server, init, tools)
}

func (r *Recorder) recordLocked(ctx context.Context, server string, init *mcp.InitializeResult, tools []*mcp.Tool) error {
	if server == "" || strings.Contains(server, "/") {
		return fmt.Errorf("mcpattest: server name %q: want a non-empty name without '/'", server)
	}
	want := make(map[string]posture.Tool, len(tools)+1)
	srv, err := ServerItem(server, init)
	if err != nil {
		return err
	}
	want[srv.Name] = srv
	order := []string{srv.Name}
	for _, t := range tools {
		item, err := ToolItem(server, t)
		if err != nil {
			return err
		}
		if _, dup := want[item.Name]; dup {
			return fmt.Errorf("mcpattest: server %q lists tool %q twice", server, t.Name)
		}
		want[item.Name] = item
		order = append(order, item.Name)
	}
	st := r.tr.State()
	for _, name := range order {
		item := want[name]
		if cur, ok := st.Tool(name); ok && cur.Version == item.Version && cur.Digest.Equal(item.Digest) {
			continue
		}
		if err := r.tr.EnableTool(ctx, item); err != nil {
			return fmt.Errorf("mcpattest: recording %q: %w", name, err)
		}
	}
	for _, t := range st.Tools {
		if strings.HasPrefix(t.Name, ServerPrefix+server+"/") && want[t.Name].Name == "" {
			if err := r.tr.DisableTool(ctx, t.Name); err != nil {
				return fmt.Errorf("mcpattest: recording %q: %w", t.Name, err)
			}
		}
	}
	return nil
}

// Forget records that the agent unloaded server: the server and its tools
// are disabled.
func (r *Recorder) Forget(ctx context.Context, server string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for cs, name := range r.sessions {
		if name == server {
			delete(r.sessions, cs)
		}
	}
	for _, t := range r.tr.State().Tools {
		if t.Name == ServerPrefix+server || strings.HasPrefix(t.Name, ServerPrefix+server+"/") {
			if err := r.tr.DisableTool(ctx, t.Name); err != nil {
				return fmt.Errorf("mcpattest: forgetting %q: %w", t.Name, err)
			}
		}
	}
	return nil
}

// ToolListChanged records again the tools of the session that announced a
// change (notifications/tools/list_changed), if Record recorded it. Set it
// as mcp.ClientOptions.ToolListChangedHandler.
func (r *Recorder) ToolListChanged(ctx context.Context, req *mcp.ToolListChangedRequest) {
	cs := req.Session
	r.mu.Lock()
	server, ok := r.sessions[cs]
	onError := r.onError
	r.mu.Unlock()
	if !ok {
		return
	}
	if err := r.Record(ctx, server, cs); err != nil && onError != nil {
		onError(server, err)
	}
}
