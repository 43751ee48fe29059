package middleware_test

import (
	"crypto"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/transports"
)

// Example shows a gateway that protects a payment route and an agent whose
// transport answers the challenge, over real TLS 1.3 on loopback.
func Example() {
	pki := postauthtest.New(postauthtest.Must)
	agentCert := pki.Issue(postauthtest.Must, "agent")
	attKey := postauthtest.NewKey(postauthtest.Must) // the agent's attestation key

	// Gateway: trust the agent's attestation key; payments need fresh,
	// per-operation attestation.
	verifier, _ := softeat.NewVerifier([]crypto.PublicKey{attKey.Public()})
	guard, _ := middleware.New(verifier,
		middleware.WithRoute("POST /v1/payments", middleware.Route{Mode: middleware.ModeOperation}))
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payments", func(w http.ResponseWriter, r *http.Request) {
		res, _ := postauth.FromContext(r.Context())
		fmt.Fprintf(w, "paid; %s evidence from %s", res.Format(), res.Subject())
	})
	srv := httptest.NewUnstartedServer(guard.Middleware(mux))
	srv.TLS = pki.ServerConfig(pki.Issue(postauthtest.Must, "localhost", postauthtest.ServerAuth()))
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	defer srv.Close()

	// An agent without attestation support is challenged, not served.
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(&agentCert)}}
	resp, _ := plain.Post(srv.URL+"/v1/payments", "text/plain", strings.NewReader("amount=1"))
	fmt.Println(resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	resp.Body.Close()

	// The agent's transport answers on the same connection.
	attester, _ := softeat.NewAttester(attKey)
	id, _ := postauth.IdentityFromTLS(&agentCert)
	tr, _ := transports.NewTransport(&http.Transport{TLSClientConfig: pki.ClientConfig(&agentCert)},
		transports.WithAttester(id, attester),
		transports.WithAttestTo("127.0.0.1")) // only the gateway receives Evidence
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, _ = client.Post(srv.URL+"/v1/payments", "text/plain", strings.NewReader("amount=1"))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// 401 Attestation error="attestation_required", mode="operation"
	// 200 paid; software-eat evidence from CN=agent
}

// Example_serverAttests shows the reverse direction: the client refuses to
// send a critical command until the server has attested on the connection.
func Example_serverAttests() {
	pki := postauthtest.New(postauthtest.Must)
	serverCert := pki.Issue(postauthtest.Must, "localhost", postauthtest.ServerAuth())
	serverAttKey := postauthtest.NewKey(postauthtest.Must)

	// Controller: attests with its TLS key and a software attester.
	serverID, _ := postauth.IdentityFromTLS(&serverCert)
	serverAtt, _ := softeat.NewAttester(serverAttKey)
	guard, _ := middleware.New(nil, middleware.WithServerAttestation(serverID, serverAtt, softeat.MediaType))
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/commands", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "command accepted") })
	srv := httptest.NewUnstartedServer(guard.Middleware(mux))
	srv.TLS = pki.ServerConfig(serverCert)
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	defer srv.Close()

	// Operator client: commands need a server attestation younger than a minute.
	trusted, _ := softeat.NewVerifier([]crypto.PublicKey{serverAttKey.Public()})
	rp, _ := postauth.NewRelyingParty(trusted) // key trust: the server's TLS key
	critical := func(r *http.Request) bool { return r.URL.Path == "/v1/commands" }
	tr, _ := transports.NewTransport(&http.Transport{TLSClientConfig: pki.ClientConfig(nil)},
		transports.WithServerAttestation(critical, rp, time.Minute),
		transports.WithObserver(func(e transports.Activity) {
			if e.Kind == transports.ActivityServerAttested {
				fmt.Println("server attested:", e.Result.Format(), e.Result.Subject())
			}
		}))
	defer tr.Close()
	resp, err := (&http.Client{Transport: tr}).Post(srv.URL+"/v1/commands", "text/plain", strings.NewReader("reboot"))
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// server attested: software-eat CN=localhost
	// 200 command accepted
}
