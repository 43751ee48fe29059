package verifier

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

// GenerateKey returns a fresh ECDSA P-256 EAR signing key.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// Server is a Service running on a listener (see [Start]).
type Server struct {
	srv  *http.Server
	ln   net.Listener
	url  string
	done chan struct{}
}

// Start serves h (normally a *Service) on ln, with TLS if tlsConfig is not
// nil (it must hold a certificate; TLS 1.2 is the minimum if it sets
// none). A nil ln listens on 127.0.0.1 on a free port. The server has
// read, write and idle timeouts and a header size limit. Stop it with
// Close.
func Start(ln net.Listener, h http.Handler, tlsConfig *tls.Config) (*Server, error) {
	if h == nil {
		return nil, errors.New("verifier: nil handler")
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	scheme := "http"
	if tlsConfig != nil {
		cfg := tlsConfig.Clone()
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS12
		}
		ln = tls.NewListener(ln, cfg)
		scheme = "https"
	}
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          log.New(io.Discard, "", 0),
		},
		ln:   ln,
		url:  scheme + "://" + ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// URL is the base URL of the server ("http://127.0.0.1:port").
func (s *Server) URL() string { return s.url }

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server at once and waits for it to return.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}
