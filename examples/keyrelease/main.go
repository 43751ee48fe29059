// Command keyrelease shows seed use case 3.1 (secure provisioning and
// high-assurance operations) of draft-mihalcea-seat-use-cases, over HTTPS
// (HTTP/2, TLS 1.3) with the HTTP binding:
//
// Runtime secret provisioning. A key-release service holds a workload's
// secrets. Its secrets route is high-impact in operation mode: every
// release needs fresh Evidence bound to that very request (method, path,
// body) on that connection, and the Evidence must pass a policy (the
// workload's measured code, production mode). The genuine workload gets its
// secrets; a workload running other code, and one whose attestation key
// nobody trusts, get none.
//
// High-assurance command execution. An operator's client demands fresh
// attestation of a controller before it sends a critical command (the
// server attests). A genuine controller executes the command; a controller
// with a valid TLS certificate but an untrusted attestation key never
// receives it.
//
//	go run ./examples/keyrelease
//
// Credentials are generated at run time; the Evidence is software EAT (not
// hardware-backed). The program exits 0 only if every step went as
// expected.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/examples/internal/demo"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "keyrelease demo:", err)
		os.Exit(1)
	}
}

// The workload's measured code, and the release policy: that code, in
// production mode.
var (
	paymentsV3 = posture.Model{Name: "payments-service", Version: "3.1", Digest: posture.DigestOf([]byte("payments-service 3.1 image"))}
	patched    = posture.Model{Name: "payments-service", Version: "3.1-debug", Digest: posture.DigestOf([]byte("payments-service 3.1 with a debug patch"))}
)

func releasePolicy() *posture.Policy {
	return &posture.Policy{
		Models: []posture.ModelRule{{Name: paymentsV3.Name, Digest: paymentsV3.Digest.String()}},
		Flags:  map[string]string{"mode": "production"},
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("keyrelease", flag.ContinueOnError)
	fs.SetOutput(out)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log := demo.NewTranscript(out)
	pki, err := demo.NewPKI("keyrelease demo CA")
	if err != nil {
		return err
	}
	log.Printf("== runtime secret provisioning")
	if err := provisioning(log, pki); err != nil {
		return err
	}
	log.Printf("== high-assurance command execution")
	if err := commands(log, pki); err != nil {
		return err
	}
	return log.Err()
}

// provisioning: the key-release service and three workloads.
func provisioning(log *demo.Transcript, pki *demo.PKI) error {
	ctx := context.Background()
	genuine, err := workload(pki, "payments-1", paymentsV3)
	if err != nil {
		return err
	}
	tampered, err := workload(pki, "payments-2", patched)
	if err != nil {
		return err
	}
	unknown, err := workload(pki, "payments-3", paymentsV3)
	if err != nil {
		return err
	}
	// The service trusts the attestation keys of the first two workloads'
	// platforms; the third's key is unknown to it.
	rp, err := demo.RelyingParty(genuine, tampered)
	if err != nil {
		return err
	}
	guard, err := middleware.New(rp.Verifier(),
		middleware.WithRoute("POST /v1/secrets/{name}", middleware.Route{Mode: middleware.ModeOperation, Posture: releasePolicy()}))
	if err != nil {
		return err
	}
	secrets := map[string]string{"db-password": "s3cr3t-db", "api-key": "k-4242"}
	var released atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/secrets/{name}", func(w http.ResponseWriter, r *http.Request) {
		res, _ := postauth.FromContext(r.Context()) // always there on a protected route
		s, ok := secrets[r.PathValue("name")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		released.Add(1)
		fmt.Fprintf(w, "%s (released to %s)", s, res.Subject())
	})
	krs, err := demo.NewPlatform(pki, "keys.example", true)
	if err != nil {
		return err
	}
	srv, addr, err := serve(guard.Middleware(mux), pki.ServerTLS(krs.Cert))
	if err != nil {
		return err
	}
	defer srv.Close()
	base := "https://" + addr
	log.Printf("key-release service on %s: POST /v1/secrets/{name} needs operation-mode attestation", base)

	var mu sync.Mutex // guards the activity lists
	fetch := func(p *demo.Platform, name string, activity *[]string) (int, string, error) {
		id, err := p.Identity()
		if err != nil {
			return 0, "", err
		}
		att, err := p.Attester()
		if err != nil {
			return 0, "", err
		}
		tr, err := transports.NewTransport(&http.Transport{TLSClientConfig: pki.ClientTLS(&p.Cert, krs.Name)},
			transports.WithAttester(id, att),
			transports.WithAttestTo(krs.Name, "127.0.0.1"), // Evidence goes to the key-release service only
			transports.WithObserver(func(a transports.Activity) {
				mu.Lock()
				defer mu.Unlock()
				if a.Kind == transports.ActivityChallenged {
					*activity = append(*activity, fmt.Sprintf("challenged: %s, %s mode", a.Reason, a.Mode))
				} else {
					*activity = append(*activity, fmt.Sprintf("%s: %s", a.Kind, a.Outcome))
				}
			}))
		if err != nil {
			return 0, "", err
		}
		defer tr.Close()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/secrets/"+name, strings.NewReader(`{"purpose":"startup"}`))
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		if rerr := transports.ResponseError(resp); rerr != nil {
			var re *transports.RefusalError
			errors.As(rerr, &re)
			return resp.StatusCode, fmt.Sprintf("%s %s", re.Reason, strings.Join(re.Violations, ", ")), nil
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}

	var act []string
	status, body, err := fetch(genuine, "db-password", &act)
	log.Check(err == nil && status == 200 && strings.HasPrefix(body, "s3cr3t-db"), "payments-1 (genuine): db-password -> %d %s", status, body)
	mu.Lock()
	steps := strings.Join(act, "; ")
	mu.Unlock()
	log.Check(steps == "challenged: attestation_required, operation mode; attested: accepted",
		"payments-1: %s (Evidence bound to this very request)", steps)
	act = nil
	status, body, err = fetch(genuine, "api-key", &act)
	mu.Lock()
	steps = strings.Join(act, "; ")
	mu.Unlock()
	log.Check(err == nil && status == 200 && strings.HasPrefix(body, "k-4242") && steps == "challenged: attestation_required, operation mode; attested: accepted",
		"payments-1: api-key -> %d, with a fresh attestation of its own", status)
	act = nil
	status, body, err = fetch(tampered, "db-password", &act)
	log.Check(err == nil && status == 403 && strings.Contains(body, "posture_denied") && strings.Contains(body, "model:payments-service not allowed"),
		"payments-2 (patched code): db-password -> %d %s", status, body)
	act = nil
	status, body, err = fetch(unknown, "db-password", &act)
	log.Check(err == nil && status == 401 && strings.Contains(body, "untrusted_attester"), "payments-3 (unknown attestation key): db-password -> %d %s", status, body)
	log.Check(released.Load() == 2, "key-release service: %d secrets released, all to attested requests", released.Load())
	return nil
}

func workload(pki *demo.PKI, name string, code posture.Model) (*demo.Platform, error) {
	p, err := demo.NewPlatform(pki, name, false)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := p.Tracker.SetModel(ctx, code); err != nil {
		return nil, err
	}
	return p, p.Tracker.SetFlag(ctx, "mode", "production")
}

// commands: an operator's client and two controllers.
func commands(log *demo.Transcript, pki *demo.PKI) error {
	ctx := context.Background()
	genuine, err := demo.NewPlatform(pki, "plc-7.example", true)
	if err != nil {
		return err
	}
	rogue, err := demo.NewPlatform(pki, "plc-7.example", true) // valid TLS certificate, unknown attestation key
	if err != nil {
		return err
	}
	operator, err := pki.Client("operator")
	if err != nil {
		return err
	}
	trusted, err := demo.RelyingParty(genuine) // key trust: the controller's TLS key (same peer)
	if err != nil {
		return err
	}
	for _, ctl := range []struct {
		p    *demo.Platform
		name string
		ok   bool
	}{{genuine, "genuine controller", true}, {rogue, "rogue controller", false}} {
		id, err := ctl.p.Identity()
		if err != nil {
			return err
		}
		att, err := ctl.p.Attester()
		if err != nil {
			return err
		}
		guard, err := middleware.New(nil, middleware.WithServerAttestation(id, att)) // attests itself only
		if err != nil {
			return err
		}
		var executed atomic.Int64
		mux := http.NewServeMux()
		mux.HandleFunc("POST /v1/commands", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			executed.Add(1)
			fmt.Fprintf(w, "executed %s", b)
		})
		srv, addr, err := serve(guard.Middleware(mux), pki.ServerTLS(ctl.p.Cert))
		if err != nil {
			return err
		}
		critical := func(r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Path == "/v1/commands" }
		var attested []string // the transport reports on the request's goroutine
		tr, err := transports.NewTransport(&http.Transport{TLSClientConfig: pki.ClientTLS(&operator, ctl.p.Name)},
			transports.WithServerAttestation(critical, trusted, 0), // fresh server attestation before every command
			transports.WithObserver(func(a transports.Activity) {
				if a.Kind == transports.ActivityServerAttested {
					attested = append(attested, a.Outcome.String())
				}
			}))
		if err != nil {
			srv.Close()
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/commands", strings.NewReader("open valve 3"))
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		body := ""
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		if ctl.ok {
			log.Check(err == nil && body == "200 executed open valve 3" && len(attested) == 1 && attested[0] == "accepted",
				"operator -> %s: controller attested first (%s), then the command ran: %s", ctl.name, strings.Join(attested, ","), body)
		} else {
			log.Check(err != nil && executed.Load() == 0, "operator -> %s: attestation %s, command never sent: %v", ctl.name, strings.Join(attested, ","), reason(err))
		}
		tr.Close()
		srv.Close()
	}
	return nil
}

// serve runs an HTTPS server (HTTP/2, TLS 1.3) on a loopback port.
func serve(h http.Handler, tlsConf *tls.Config) (*http.Server, string, error) {
	tlsConf.NextProtos = []string{"h2", "http/1.1"}
	srv := &http.Server{Handler: h, TLSConfig: tlsConf, ReadHeaderTimeout: 10 * time.Second}
	middleware.ConfigureServer(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	go srv.ServeTLS(ln, "", "")
	return srv, ln.Addr().String(), nil
}

func reason(err error) string {
	if r := postauth.ReasonOf(err); r != "" {
		return string(r)
	}
	if err == nil {
		return "no error"
	}
	return err.Error()
}
