package redisstate

import (
	"context"
	"errors"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/reattest/reattest/middleware"
)

// Bounds of a rate-limit check.
const (
	maxBuckets   = 8
	maxBucketKey = 200
)

// limitScript takes one token from every bucket if each has one (token
// buckets in hashes: tokens, ts in ms of the Redis clock, so replicas'
// clocks do not matter). KEYS: buckets; ARGV: rate, burst per bucket.
var limitScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2*i-1])
  local burst = tonumber(ARGV[2*i])
  local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tk = tonumber(v[1])
  local ts = tonumber(v[2])
  if tk == nil or ts == nil then
    tk = burst
  else
    local dt = now - ts
    if dt < 0 then dt = 0 end
    tk = math.min(burst, tk + dt * rate / 1000)
  end
  if tk < 1 then
    return 0
  end
  tokens[i] = tk
end
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2*i-1])
  local burst = tonumber(ARGV[2*i])
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i] - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
end
return 1
`)

// Allow implements [middleware.RateLimiter] with one atomic script: the
// buckets of every replica of the namespace are the same keys. A bucket
// expires once it would be full again.
func (s *Store) Allow(ctx context.Context, buckets ...middleware.Bucket) (bool, error) {
	if len(buckets) == 0 || len(buckets) > maxBuckets {
		return false, errors.New("redisstate: Allow needs 1 to 8 buckets")
	}
	keys := make([]string, len(buckets))
	args := make([]any, 0, 2*len(buckets))
	for i, b := range buckets {
		if b.Key == "" || len(b.Key) > maxBucketKey || b.Limit.Rate <= 0 || b.Limit.Burst <= 0 {
			return false, errors.New("redisstate: invalid bucket")
		}
		keys[i] = s.keys.limit + b.Key
		args = append(args, strconv.FormatFloat(b.Limit.Rate, 'g', -1, 64), b.Limit.Burst)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	n, err := limitScript.Run(ctx, s.client, keys, args...).Int64()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}
