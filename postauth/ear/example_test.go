package ear_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"fmt"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/verifier"
)

// exampleChallenge stands for the Challenge postauth derives from a
// connection: a binder and the authenticator key's hash.
func exampleChallenge(auth crypto.PublicKey) postauth.Challenge {
	binder := sha256.Sum256([]byte("exported from this connection"))
	spki, _ := x509.MarshalPKIXPublicKey(auth)
	kh := sha256.Sum256(spki)
	return postauth.Challenge{Binder: binder[:], KeyHash: kh[:], Hash: crypto.SHA256, Role: postauth.RoleClient}
}

// A verifier service in process, and the background check against it.
func Example_backgroundCheck() {
	tb := postauthtest.Must
	agent, trusted := postauthtest.Software(tb) // a software EAT attester and its verifier

	key, _ := verifier.GenerateKey()
	svc, _ := verifier.NewService(key, verifier.SoftEAT(trusted))
	srv, _ := verifier.Start(nil, svc, nil)
	defer srv.Close()

	rv, err := ear.NewRemoteVerifier(srv.URL(),
		ear.WithVerifierKeys(svc.PublicKey()),
		ear.WithLocalBinding(softeat.MediaType, softeat.Binding))
	if err != nil {
		panic(err)
	}
	defer rv.Close()

	ch := exampleChallenge(postauthtest.NewKey(tb).Public())
	ev, _ := agent.Attest(context.Background(), ch)
	app, err := rv.Verify(context.Background(), ch, ev)
	fmt.Println(app.Format, app.HardwareBacked, err)
	// Output: software-eat false <nil>
}

// The passport: the attester exchanges its Evidence for an EAR, the
// relying party verifies the EAR.
func Example_passport() {
	tb := postauthtest.Must
	agent, trusted := postauthtest.Software(tb)
	key, _ := verifier.GenerateKey()
	svc, _ := verifier.NewService(key, verifier.SoftEAT(trusted))
	srv, _ := verifier.Start(nil, svc, nil)
	defer srv.Close()

	authKey := postauthtest.NewKey(tb) // the key that signs the authenticator
	att, _ := ear.NewAttester(agent, srv.URL(), authKey.Public())
	defer att.Close()
	ch := exampleChallenge(authKey.Public())
	passport, err := att.Attest(context.Background(), ch)
	if err != nil {
		panic(err)
	}
	fmt.Println(passport.Type)

	v, _ := ear.NewVerifier([]crypto.PublicKey{svc.PublicKey()})
	app, err := v.Verify(context.Background(), ch, passport)
	fmt.Println(app.Format, app.HardwareBacked, err)
	// Output:
	// application/eat+jwt; eat_profile="tag:github.com,2023:veraison/ear"
	// passport false <nil>
}

func ExampleParsePolicy() {
	p, err := ear.ParsePolicy([]byte(`
min_status: affirming
trust_vector:
  instance-identity: affirming
  hardware: affirming
max_age: 90s
`), "yaml")
	age, _ := p.MaxAge.MarshalText()
	fmt.Println(p.MinStatus, p.TrustVector["hardware"], string(age), err)
	// Output: affirming affirming 1m30s <nil>
}
