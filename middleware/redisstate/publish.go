package redisstate

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/reattest/reattest/middleware"
)

// ErrStalePolicy is returned by Publish for a policy document whose
// version is not greater than the recorded one.
var ErrStalePolicy = errors.New("redisstate: policy document version is not newer than the recorded one")

// Each script records and announces in one step, so that no replica
// learns an event that is not recorded, and none misses a recorded one
// for longer than its next resynchronisation.
var (
	// KEYS[1] revocations; ARGV: member, expiry (ms), now (ms), channel,
	// message, bound. Keeps the later expiry of two revocations of one
	// identity.
	revokeScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[6]) then
    return redis.error_reply('reattest: too many live revocations')
  end
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
elseif tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`)
	// KEYS[1] revocations; ARGV: member, channel, message.
	unrevokeScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`)
	// KEYS[1] policy; ARGV: version, document, channel, message. Only a
	// newer version replaces the recorded one.
	policyScript = redis.NewScript(`
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if tonumber(ARGV[1]) <= v then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'doc', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`)
)

// Publish implements [middleware.Coordinator]: it records a revocation
// (until its expiry), an unrevoke or a policy document (only if its
// version is newer: else ErrStalePolicy) in Redis and announces it on the
// namespace's channel; an invalidation is only announced. Operators call
// it too (an admin tool holding a Store and no Guard).
func (s *Store) Publish(ctx context.Context, e middleware.Event) error {
	msg, err := encodeEvent(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	switch e.Kind {
	case middleware.EventRevoke:
		err = revokeScript.Run(ctx, s.client, []string{s.keys.revoked},
			e.Identity.String(), e.Until.UnixMilli(), s.cfg.now().UnixMilli(), s.keys.events, msg, s.cfg.maxRevocations).Err()
	case middleware.EventUnrevoke:
		err = unrevokeScript.Run(ctx, s.client, []string{s.keys.revoked}, e.Identity.String(), s.keys.events, msg).Err()
	case middleware.EventInvalidate:
		err = s.client.Publish(ctx, s.keys.events, msg).Err()
	case middleware.EventPolicy:
		doc, merr := e.Policy.Marshal()
		if merr != nil {
			return merr
		}
		var stored int64
		stored, err = policyScript.Run(ctx, s.client, []string{s.keys.policy},
			strconv.FormatUint(e.Policy.Version, 10), doc, s.keys.events, msg).Int64()
		if err == nil && stored == 0 {
			return ErrStalePolicy
		}
	}
	if err != nil {
		return fmt.Errorf("redisstate: publish %s: %w", e.Kind, err)
	}
	return nil
}
