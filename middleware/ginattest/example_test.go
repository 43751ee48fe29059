package ginattest_test

import (
	"crypto"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/ginattest"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/transports"
)

// Example protects one gin route with per-operation attestation.
func Example() {
	gin.SetMode(gin.ReleaseMode)
	pki := postauthtest.New(postauthtest.Must)
	agentCert := pki.Issue(postauthtest.Must, "agent")
	attKey := postauthtest.NewKey(postauthtest.Must)

	verifier, _ := softeat.NewVerifier([]crypto.PublicKey{attKey.Public()})
	guard, _ := middleware.New(verifier)
	pay, _ := ginattest.Protect(guard, middleware.Route{Mode: middleware.ModeOperation})
	r := gin.New()
	r.POST("/v1/payments", pay, func(c *gin.Context) {
		res, _ := ginattest.Result(c)
		c.String(200, "paid, attested with %s", res.Format())
	})
	srv := httptest.NewUnstartedServer(r)
	srv.TLS = pki.ServerConfig(pki.Issue(postauthtest.Must, "localhost", postauthtest.ServerAuth()))
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	defer srv.Close()

	attester, _ := softeat.NewAttester(attKey)
	id, _ := postauth.IdentityFromTLS(&agentCert)
	tr, _ := transports.NewTransport(&http.Transport{TLSClientConfig: pki.ClientConfig(&agentCert)}, transports.WithAttester(id, attester), transports.WithAttestTo("127.0.0.1"))
	defer tr.Close()
	resp, err := (&http.Client{Transport: tr}).Post(srv.URL+"/v1/payments", "text/plain", strings.NewReader("amount=1"))
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 paid, attested with software-eat
}
