package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

var _ Limiter = (*Redis)(nil)

// RedisOptions tune a Redis limiter. The zero value is fine.
type RedisOptions struct {
	// Prefix starts every key. Default "rl:". It must not contain '{' or '}' (the key
	// itself goes between braces, as a Redis Cluster hash tag). Give deployments that
	// share a Redis different prefixes.
	Prefix string
	// Timeout bounds each Allow, on top of its context. Default one second.
	Timeout time.Duration
}

// Redis is a Limiter whose buckets live in Redis, so that every gateway replica using
// the same Redis and Prefix shares them: a client spreading its requests over replicas
// gets the limit once, not once per replica.
//
// Each Allow is one Lua script (EVALSHA, falling back to EVAL when the server does not
// have it cached), which reads the bucket, decides and writes it back atomically. A
// bucket is one string key, <Prefix>{<key>}, holding the instant at which the bucket is
// full again in microseconds on the Redis server's clock (TIME), with a PEXPIRE that
// ends at that instant: a bucket that has refilled takes no memory. The decision uses
// the server's clock only, so gateway replicas with skewed clocks agree. Using TIME
// before a write is allowed because the script is replicated by its effects (the SET it
// makes, not the script): the default from Redis 5, the only way from Redis 7; the script
// asks for it explicitly on older servers (redis.replicate_commands). With one key per
// script in its own hash slot, it works on a Redis Cluster.
//
// Allow returns the errors of Redis (unreachable, timeout, a key of the wrong type)
// wrapped, and a zero Result with them: the caller decides whether to fail open.
type Redis struct {
	client  rueidis.Client
	prefix  string
	timeout time.Duration
}

// allowScript takes a token from bucket KEYS[1], ARGV[1] microseconds per token and
// ARGV[2] tokens at most, and returns {allowed (0 or 1), µs until a token is back when
// refused, tokens remaining when allowed}. It is not idempotent: it must not be retried
// after a lost reply.
var allowScript = rueidis.NewLuaScript(`
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local span = interval * tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local full = tonumber(redis.call('GET', KEYS[1]))
if full == nil or full < now then full = now end
local nextfull = full + interval
local wait = nextfull - now
if wait > span then return {0, wait - span, 0} end
redis.call('SET', KEYS[1], string.format('%.0f', nextfull), 'PX', math.ceil(wait / 1000))
return {1, 0, math.floor((span - wait) / interval)}
`)

// NewRedis returns a Limiter on the Redis that c talks to: a standalone server, the
// master of a Sentinel deployment, or a Cluster. It does not take ownership of c, which
// it never closes. It panics if c is nil or the prefix contains a brace.
func NewRedis(c rueidis.Client, opts RedisOptions) *Redis {
	if c == nil {
		panic("ratelimit: NewRedis with a nil client")
	}
	r := &Redis{client: c, prefix: opts.Prefix, timeout: opts.Timeout}
	if r.prefix == "" {
		r.prefix = "rl:"
	}
	if strings.ContainsAny(r.prefix, "{}") {
		panic(fmt.Sprintf("ratelimit: Redis prefix %q contains a brace", r.prefix))
	}
	if r.timeout <= 0 {
		r.timeout = time.Second
	}
	return r
}

// Allow takes a token from key's bucket if it has one.
func (r *Redis) Allow(ctx context.Context, key string, l Limit) (Result, error) {
	iv, err := l.interval(time.Microsecond)
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	v, err := allowScript.Exec(ctx, r.client,
		[]string{r.prefix + "{" + key + "}"},
		[]string{strconv.FormatInt(iv, 10), strconv.Itoa(l.Burst)},
	).AsIntSlice()
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: redis: %w", err)
	}
	if len(v) != 3 {
		return Result{}, fmt.Errorf("ratelimit: redis: unexpected script reply %v", v)
	}
	if v[0] == 1 {
		return Result{Allowed: true, Remaining: int(v[2])}, nil
	}
	return Result{RetryAfter: time.Duration(v[1]) * time.Microsecond}, nil
}
