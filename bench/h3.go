package main

// HTTP/3 rows: the same routes, Guard and handler as the HTTP/2 server,
// behind an http3.Server configured with middleware/h3attest, and clients
// made with transports/h3 (one pinned QUIC connection per client).

import (
	"context"
	"net"
	"net/http"
	"os"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/reattest/reattest/middleware/h3attest"
	"github.com/reattest/reattest/transports/h3"
)

// h3Server is the reattest server over HTTP/3 on loopback UDP.
type h3Server struct {
	srv *http3.Server
	url string // https://127.0.0.1:port
}

func newH3Server(e *env) *h3Server {
	e.tb.Helper()
	// quic-go warns (once, on stderr) when it cannot raise the socket
	// receive buffer to 7 MiB; the loopback rows do not need it.
	if os.Getenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING") == "" {
		os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	}
	s := &h3Server{srv: &http3.Server{
		Handler:   e.recordCurve(e.countRequests(e.guard.Middleware(e.mux()))),
		TLSConfig: http3.ConfigureTLSConfig(e.pki.ServerConfig(e.serverCert)),
		// Counted before h3attest's hook, which runs after this one.
		ConnContext: func(ctx context.Context, _ *quic.Conn) context.Context {
			e.conns.Add(1)
			return ctx
		},
	}}
	h3attest.ConfigureServer(s.srv)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		e.tb.Fatal(err)
	}
	s.url = "https://" + pc.LocalAddr().String()
	go s.srv.Serve(pc)
	e.tb.Cleanup(func() {
		s.srv.Close()
		pc.Close()
	})
	return s
}

// newH3Client is newClient over HTTP/3: transports/h3.NewTransport with
// the same attester, pinned to one QUIC connection.
func (e *env) newH3Client() *http.Client {
	tr, err := h3.NewTransport(e.pki.ClientConfig(&e.clientCert), nil, e.clientOptions()...)
	if err != nil {
		e.tb.Fatal(err)
	}
	e.tb.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr}
}
