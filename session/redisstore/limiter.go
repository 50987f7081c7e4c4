package redisstore

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/session"
)

var _ ratelimit.Limiter = (*Limiter)(nil)

// LimiterOptions tune a Limiter. The zero value is fine.
type LimiterOptions struct {
	// Prefix starts every key. Default "rl:". It must not contain '{' or '}' (the key
	// itself goes between braces, as a Redis Cluster hash tag). Give deployments that
	// share a Redis different prefixes. A Store's Limiter does not add the Store's
	// KeyPrefix: Prefix is the whole of what comes before the braces.
	Prefix string
	// Timeout bounds each Allow, on top of its context. Default one second.
	Timeout time.Duration
}

// Limiter is a ratelimit.Limiter whose buckets live in Redis, so that every gateway
// replica using the same Redis and Prefix shares them: a client spreading its requests
// over replicas gets the limit once, not once per replica.
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
// wrapped, and a zero Result with them: the caller decides whether to fail open. As for
// the Store, network errors, timeouts and the replies that mean "not now" wrap
// session.ErrUnavailable. A script is not retried after a lost reply: it may have taken
// a token already.
type Limiter struct {
	client  rueidis.Client // nil for a Store's Limiter, which asks store on each call
	store   *Store
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

// errNotConnected is what a Store's Limiter returns while the Store has no client.
var errNotConnected = fmt.Errorf("redisstore: limiter: redis is not connected (%w)", session.ErrUnavailable)

// NewLimiter returns a Limiter on the Redis that c talks to: a standalone server, the
// master of a Sentinel deployment, or a Cluster. It does not take ownership of c, which
// it never closes. It panics if c is nil or the prefix contains a brace.
func NewLimiter(c rueidis.Client, opts LimiterOptions) *Limiter {
	if c == nil {
		panic("redisstore: NewLimiter with a nil client")
	}
	l := newLimiter(opts)
	l.client = c
	return l
}

func newLimiter(opts LimiterOptions) *Limiter {
	l := &Limiter{prefix: opts.Prefix, timeout: opts.Timeout}
	if l.prefix == "" {
		l.prefix = "rl:"
	}
	if strings.ContainsAny(l.prefix, "{}") {
		panic(fmt.Sprintf("redisstore: Limiter prefix %q contains a brace", l.prefix))
	}
	if l.timeout <= 0 {
		l.timeout = time.Second
	}
	return l
}

// Limiter returns a Limiter on this Store's Redis, sharing its connections,
// credentials, TLS settings and deployment mode.
//
// The Store connects in the background (Gatehouse starts while Redis is down), so the
// Limiter takes the Store's client on each call, as Client does, without waiting: until
// there is one, Allow fails at once with an error wrapping session.ErrUnavailable and
// starts another connection attempt; once the Store is closed, with ErrClosed. It
// panics if the prefix contains a brace.
func (s *Store) Limiter(opts LimiterOptions) *Limiter {
	l := newLimiter(opts)
	l.store = s
	return l
}

// Allow takes a token from key's bucket if it has one.
func (l *Limiter) Allow(ctx context.Context, key string, lim ratelimit.Limit) (ratelimit.Result, error) {
	if err := lim.Validate(); err != nil {
		return ratelimit.Result{}, err
	}
	c := l.client
	if c == nil {
		if l.store.closed.Load() {
			return ratelimit.Result{}, errClosed
		}
		if c = l.store.Client(); c == nil {
			return ratelimit.Result{}, errNotConnected
		}
	}
	iv := max(1, int64(math.Round(1e6/lim.Rate))) // µs per token
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	v, err := allowScript.Exec(ctx, c,
		[]string{l.prefix + "{" + key + "}"},
		[]string{strconv.FormatInt(iv, 10), strconv.Itoa(lim.Burst)},
	).AsIntSlice()
	if err != nil {
		return ratelimit.Result{}, wrap("limiter", err)
	}
	if len(v) != 3 {
		return ratelimit.Result{}, fmt.Errorf("redisstore: limiter: unexpected script reply %v", v)
	}
	if v[0] == 1 {
		return ratelimit.Result{Allowed: true, Remaining: int(v[2])}, nil
	}
	return ratelimit.Result{RetryAfter: time.Duration(v[1]) * time.Microsecond}, nil
}
