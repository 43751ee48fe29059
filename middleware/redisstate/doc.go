// Package redisstate links the replicas of a reattest gateway through
// Redis: a [Store] is a [middleware.Coordinator] (revocations, invalidated
// verdicts, policy documents), a [middleware.RateLimiter] (verification
// and server-attestation limits shared by every replica) and a
// [middleware.Auditor] (a capped Redis Stream of decisions for a SIEM). It
// is the only package of the module that links
// github.com/redis/go-redis/v9; package middleware defines the interfaces
// and keeps the hot path free of I/O.
//
//	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
//		Addrs:     []string{"redis-1:6379"}, // one address: a single Redis; several: a Cluster
//		// MasterName: "gw", // with Sentinel addresses in Addrs
//		Username:  "reattest", Password: os.Getenv("REDIS_PASSWORD"), // an ACL user
//		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12},         // Redis over TLS
//	})
//	store, err := redisstate.New(rdb, redisstate.WithNamespace("payments-gw"))
//	defer store.Close()
//	guard, err := middleware.New(verifier,
//		middleware.WithCoordinator(store),
//		middleware.WithLimits(middleware.Limits{VerifyPerPeer: middleware.Limit{Rate: 1, Burst: 10}}),
//		middleware.WithRoute("PUT /v1/config", middleware.Route{}))
//	defer guard.Close()
//
// An operator (or any replica) revokes an attester on every replica:
//
//	store.Publish(ctx, middleware.Event{Kind: middleware.EventRevoke,
//		Identity: middleware.Identity{Kind: middleware.IdentityMachine, Value: "01fa62..."},
//		Until:    time.Now().Add(24 * time.Hour), Reason: "ticket 4711"})
//
// # Keys and channel
//
// Every name of a namespace NS starts with "reattest:{NS}:" (the namespace
// is a Redis Cluster hash tag: one slot, so scripts may touch several
// keys):
//
//   - reattest:{NS}:events, the pub/sub channel (JSON messages, version 1);
//   - reattest:{NS}:revoked, a sorted set of live revocations (member
//     "kind:value", score the expiry in Unix ms);
//   - reattest:{NS}:policy, a hash (version, doc) holding the policy
//     document;
//   - reattest:{NS}:rl:<bucket>, the rate-limit token buckets (hashes that
//     expire once full again);
//   - reattest:{NS}:audit, the audit stream (XADD MAXLEN, exact).
//
// Revocations, unrevocations and policy documents are recorded and
// announced by one Lua script each, so a replica that connects late, or
// reconnects, learns every live one from the records.
//
// # Failure modes
//
// The Store subscribes, then loads the records, then tells its Guards it is
// in sync. When the link fails (an error, a closed connection, an
// undecodable message, or no answer to a heartbeat PING within two
// periods: a silent partition) it tells them at once that it is out of
// sync, and they trust no cached verdict until it is back (see
// [middleware.WithCoordinatorDown]); it reconnects with backoff and
// jitter, loads the records again, and the Guards drop the verdicts
// cached before (an invalidation may have been missed). A
// resynchronisation never lifts a revocation the Store knew, even if
// Redis lost it: run Redis with persistence (AOF) so that new replicas
// learn it too. Invalidations are not recorded: they reach the replicas
// connected at the time, and a replica that was not drops every verdict it
// cached before when it resynchronises, so it misses none.
//
// See docs/scale-out.md for the architecture, Sentinel and Cluster
// deployments, TLS and ACL settings.
package redisstate
