package streams_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/streams"
)

// Two platforms on an attested TLS 1.3 connection: both attest, both
// require it, the source sends the migration key only then, and a posture
// change of the destination that its policy forbids loses the connection.
func Example() {
	must := postauthtest.Must
	pki := postauthtest.New(must)
	srcCert := pki.Issue(must, "source")
	dstCert := pki.Issue(must, "localhost", postauthtest.ServerAuth())
	srcKey, dstKey := postauthtest.NewSoftwareKey(must), postauthtest.NewSoftwareKey(must)
	ctx := context.Background()
	dstPosture, _ := posture.NewTracker()
	dstPosture.SetFlag(ctx, "debug", "off")
	policy := &posture.Policy{Flags: map[string]string{"debug": "off"}}

	// The destination listens: it attests (announcing posture changes) and
	// requires the source's attestation.
	dstID, _ := postauth.IdentityFromTLS(&dstCert)
	serverTLS := pki.ServerConfig(dstCert)
	ln, err := streams.Listen("tcp", "127.0.0.1:0", serverTLS,
		streams.WithAttester(dstID, dstKey.Attester(must, softeat.WithPosture(dstPosture))),
		streams.WithPosture(dstPosture),
		streams.WithRelyingParty(postauthtest.RelyingParty(must, srcKey.Verifier(must))))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, _ := ln.AcceptConn()
		defer c.Close()
		key := make([]byte, 14)
		_, err := io.ReadFull(c, key) // only once the source attested
		got <- fmt.Sprintf("destination read %q (source attested: %v)", key, err == nil && c.Result() != nil)
		io.Copy(io.Discard, c)
	}()

	// The source dials: it attests and requires the destination's
	// attestation under its policy.
	srcID, _ := postauth.IdentityFromTLS(&srcCert)
	c, err := streams.Dial(ctx, "tcp", ln.Addr().String(), pki.ClientConfig(&srcCert),
		streams.WithAttester(srcID, srcKey.Attester(must)),
		streams.WithRelyingParty(postauthtest.RelyingParty(must, dstKey.Verifier(must))),
		streams.WithPosturePolicy(policy))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := c.Ready(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("source: destination attested as", c.Result().Subject())
	c.Write([]byte("migration key!")) // never before the destination's verdict
	fmt.Println(<-got)

	// The destination turns debugging on: it announces it, the source
	// attests it again, its policy says no, and the connection is gone.
	dstPosture.SetFlag(ctx, "debug", "on")
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
	}
	var ce *streams.CloseError
	if errors.As(c.Err(), &ce) {
		fmt.Println("source:", ce.Code, ce.Reason)
	}
	// Output:
	// source: destination attested as CN=localhost
	// destination read "migration key!" (source attested: true)
	// source: POLICY_DENIED posture_denied
}
