// Package arch holds no code: its test enforces the layers of the module
// (docs/architecture.md, CONTRIBUTING.md). From the ground floor up:
//
//	posture                      agent posture: model, measured log, policy
//	postauth                     RFC 9261 (ea_*.go) + expat (expat_*.go) core
//	postauth/<format>            Evidence formats (softeat, tpm, ...)
//	middleware, transports       HTTP binding: server, client
//	streams                      stream binding: raw TLS, the attestation state machine
//	streams/quicstream           stream binding over raw QUIC (quic-go)
//	middleware/<adapter>,        gin, HTTP/3, OpenTelemetry, ... (server)
//	transports/<adapter>         HTTP/3, ... (client)
//	examples/, bench/, cmd/      programs
//
// A package imports only packages below it; a client package
// (transports/...) never imports a server package (middleware/...); the
// core packages (streams included) never link gin, quic-go, go-redis, the MCP SDK or the
// OpenTelemetry SDK; inside postauth, the RFC 9261 layer (ea_*.go) uses
// nothing of the expat layer.
package arch
