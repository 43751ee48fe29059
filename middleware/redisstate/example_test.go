package redisstate_test

import (
	"context"
	"crypto"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/redisstate"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
)

// A replica's Guard linked to the others through Redis (here an
// in-process miniredis; in production redis.NewUniversalClient with your
// Redis, Sentinel or Cluster addresses, ACL user and TLS config), and an
// operator's revocation recorded for every replica.
func Example() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{mr.Addr()}})
	defer rdb.Close()

	store, err := redisstate.New(rdb, redisstate.WithNamespace("payments-gw"))
	if err != nil {
		panic(err)
	}
	defer store.Close()
	attKey := postauthtest.NewKey(postauthtest.Must) // the agents' attestation key
	verifier, _ := softeat.NewVerifier([]crypto.PublicKey{attKey.Public()})
	guard, err := middleware.New(verifier,
		middleware.WithCoordinator(store),
		middleware.WithRoute("PUT /v1/config", middleware.Route{}))
	if err != nil {
		panic(err)
	}
	defer guard.Close()

	ctx := context.Background()
	machine, _ := middleware.ParseIdentity("machine:01fa62663a27cedc7b")
	if err := store.Publish(ctx, middleware.Event{Kind: middleware.EventRevoke, Identity: machine,
		Until: time.Now().Add(24 * time.Hour), Reason: "ticket 4711"}); err != nil {
		panic(err)
	}
	revs, _ := store.Revocations(ctx)
	for _, r := range revs {
		fmt.Println("revoked:", r.Identity)
	}
	// Output: revoked: machine:01fa62663a27cedc7b
}
