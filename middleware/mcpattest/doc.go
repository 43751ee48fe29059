// Package mcpattest gates Model Context Protocol (MCP) tool calls on
// fresh, connection-bound attestation of the calling agent, for the
// official Go SDK (github.com/modelcontextprotocol/go-sdk, Streamable HTTP
// transport). It is the only package of the module that links the SDK:
// users of package middleware never do.
//
// # Gateway
//
// Every MCP request is a POST of a JSON-RPC message (or batch) to one
// endpoint, so a route is not enough: [Rule]s mark requests high-impact by
// JSON-RPC method and target, the tool name of "tools/call" and the URI of
// "resources/read", exactly or with "*" patterns, each in connection or
// operation mode with an optional posture policy. [New] wraps the SDK's
// handler:
//
//	guard, _ := middleware.New(verifier)
//	rules := []mcpattest.Rule{
//		{Tools: []string{"payments.*"}, Mode: middleware.ModeOperation, Posture: policy},
//		{URIs: []string{"secrets://*"}},
//	}
//	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
//	h, _ := mcpattest.New(guard, sdk, rules)
//	mux.Handle("/mcp", h)
//	srv := &http.Server{Handler: guard.Middleware(mux), TLSConfig: tlsConfig} // Middleware serves discovery
//	middleware.ConfigureServer(srv)
//
// The Handler reads each POST body once (bounded, [WithMaxBody]), finds
// every rule that one of its messages matches, and passes the request
// through the Guard's route of each ([middleware.Guard.Handler]), the
// strictest first, before the SDK serves it; the body is handed on
// unchanged. A batch is as strict as its strictest call, and every matched
// rule's policy applies. In operation mode the attestation is bound to the
// operation digest of the whole HTTP body: method, params and id of every
// message. Notifications are classified like calls; responses of the
// client to server requests call nothing. GET (the SSE stream) and DELETE
// (end of session) pass untouched. Session ids (Mcp-Session-Id) are
// neither needed nor trusted: a connection-mode verdict belongs to the TLS
// connection, whatever session the request names.
//
// Bodies that JSON decoders could read differently are refused, never
// passed as harmless: invalid UTF-8 or JSON, data after the value,
// repeated keys or keys equal but for case in a message or its params, a
// significant key in another case ("Method"), a method or target that is
// not a string or holds U+FFFD, and a call whose target a rule needs but
// cannot be read (docs/mcp.md, section 3).
//
// Each rule is a route of the Guard named "mcp <method> <targets>" (for
// example "mcp tools/call payments.*"), so logs, observers, OpenTelemetry
// and the discovery document (/.well-known/reattest) name the protected
// tools.
//
// # Errors
//
// The Guard's 401 challenge keeps its headers and is answered by the
// agent's reattest transport on the same connection, invisibly to the MCP
// client. A final refusal keeps its HTTP status and comes as a JSON-RPC
// error response, one per call of the body, with a code from [CodeFor]
// and an [ErrorData] (reason, posture violations, rule). The SDK client
// reports it as the error of the call; [RefusalOf] decodes it.
//
// # Agent side
//
// The SDK client needs no change: give mcp.StreamableClientTransport an
// http.Client whose Transport is a transports.Transport. A [Recorder]
// records the MCP servers and tools the agent loads as posture items on a
// posture.Tracker ("mcp:<server>" and "mcp:<server>/<tool>", digests of the
// canonical definitions, see [ToolItem]); its ToolListChanged method,
// set as the client's ToolListChangedHandler, records a server's new or
// changed tools as soon as the server announces them, so the posture (and
// the posture hint the transport sends) changes with them.
//
// docs/mcp.md gives the rule syntax, the error mapping, the guarantees and
// the limits.
package mcpattest
