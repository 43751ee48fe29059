package transports_test

import (
	"context"
	"crypto"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

// ExampleNew shows an agent whose transport attests once per connection,
// rides on the cached verdict, and attests again when its posture changes.
func ExampleNew() {
	pki := postauthtest.New(postauthtest.Must)
	agentCert := pki.Issue(postauthtest.Must, "agent")
	attKey := postauthtest.NewKey(postauthtest.Must)
	srv := exampleGateway(pki, attKey)
	defer srv.Close()

	// The agent: a measured posture and a software attester covering it.
	tracker, _ := posture.NewTracker()
	ctx := context.Background()
	tracker.SetModel(ctx, posture.Model{Name: "assistant", Version: "1", Digest: posture.DigestOf([]byte("weights"))})
	attester, _ := softeat.NewAttester(attKey, softeat.WithPosture(tracker))
	id, _ := postauth.IdentityFromTLS(&agentCert)
	tr, _ := transports.NewTransport(&http.Transport{TLSClientConfig: pki.ClientConfig(&agentCert)},
		transports.WithAttester(id, attester),
		transports.WithAttestTo("127.0.0.1"),
		transports.WithPosture(tracker),
		transports.WithObserver(func(e transports.Activity) {
			if e.Kind == transports.ActivityChallenged {
				fmt.Println("  challenged:", e.Reason)
			}
		}))
	defer tr.Close()
	client := &http.Client{Transport: tr}

	put := func() {
		req, _ := http.NewRequest("PUT", srv.URL+"/v1/config", strings.NewReader("x=1"))
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println("config change:", resp.StatusCode)
	}
	put() // challenged, attested
	put() // cached verdict
	tracker.EnableTool(ctx, posture.Tool{Name: "shell", Version: "1", Digest: posture.DigestOf([]byte("/bin/sh"))})
	put() // the posture hint changed: attested again
	// Output:
	//   challenged: attestation_required
	// config change: 200
	// config change: 200
	//   challenged: posture_changed
	// config change: 200
}

func exampleGateway(pki *postauthtest.PKI, attKey crypto.Signer) *httptest.Server {
	verifier, _ := softeat.NewVerifier([]crypto.PublicKey{attKey.Public()})
	guard, _ := middleware.New(verifier, middleware.WithRoute("PUT /v1/config", middleware.Route{}))
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/config", func(w http.ResponseWriter, r *http.Request) {})
	srv := httptest.NewUnstartedServer(guard.Middleware(mux))
	srv.TLS = pki.ServerConfig(pki.Issue(postauthtest.Must, "localhost", postauthtest.ServerAuth()))
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	return srv
}
