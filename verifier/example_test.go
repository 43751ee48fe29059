package verifier_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/verifier"
)

// A verifier service in process: start it on a free loopback port and
// open a session the way a Veraison client does.
func Example() {
	_, softeatVerifier := postauthtest.Software(postauthtest.Must)
	key, _ := verifier.GenerateKey()
	svc, err := verifier.NewService(key, verifier.SoftEAT(softeatVerifier))
	if err != nil {
		panic(err)
	}
	srv, err := verifier.Start(nil, svc, nil) // nil TLS config: plain HTTP
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	res, err := http.Post(srv.URL()+ear.NewSessionPath+"?nonceSize=32", "", nil)
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	fmt.Println(res.StatusCode, strings.HasPrefix(res.Header.Get("Location"), "session/"), res.Header.Get("Content-Type"))
	fmt.Println(strings.Contains(string(body), `"status":"waiting"`), svc.MediaTypes())
	// Output:
	// 201 true application/vnd.veraison.challenge-response-session+json
	// true [application/eat+cwt]
}
