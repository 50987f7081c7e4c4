// Package ratelimit holds the token buckets that protect Gatehouse's expensive and
// sensitive endpoints (/bff/login, /bff/callback, /bff/backchannel, the admin API,
// session management) from floods, keyed per client address or per subject.
//
// A bucket holds up to [Limit.Burst] tokens and gains [Limit.Rate] tokens per second.
// Each allowed request takes one; a request that finds the bucket empty is refused with
// the time after which one token will be back ([Result.RetryAfter], for a Retry-After
// header). A refused request takes nothing, so a client that keeps retrying too early is
// not punished further, and one that waits RetryAfter is allowed.
//
// Two implementations share this contract (and one test suite, package ratelimittest):
//
//   - [Memory], here, for one process: sharded maps, bounded in size, no goroutine.
//   - [github.com/gatehouse-bff/gatehouse/session/redisstore.Limiter], for replicas that
//     must share their buckets: one atomic Lua script per call, on the Redis server's
//     clock, on a standalone server, Sentinel or a Cluster. It lives beside the Redis
//     session store, the other user of the Redis client, so that this package needs
//     nothing outside the standard library and a program that keeps its buckets in
//     memory does not link a Redis client.
//
// A bucket is stored as the one instant at which it will be full again (the "theoretical
// arrival time" of the generic cell rate algorithm): a bucket whose instant has passed is
// full, exactly as if it had never been used, so it can be forgotten. That is what keeps
// both implementations small: Memory drops such buckets, and the Redis one lets their
// keys expire at that instant.
//
// Callers choose the key; it may hold an address or a hash of a subject, and should not
// hold a secret. Callers also choose what to do when a shared Limiter fails (its errors
// are returned, never hidden): usually fail open and log.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Limit is a token bucket: Burst tokens, refilled at Rate tokens per second.
//
// Rate must be positive and at most 1e6; Burst at least 1; and a bucket must refill from
// empty within ten years (Burst/Rate ≤ 315 360 000 s). Allow returns an error wrapping
// ErrInvalidLimit otherwise.
type Limit struct {
	Rate  float64
	Burst int
}

// Result is the answer for one request.
type Result struct {
	// Allowed reports whether the request may proceed; it then took one token.
	Allowed bool
	// RetryAfter is, when the request was refused, how long until one token is back
	// (always > 0 then); 0 when allowed.
	RetryAfter time.Duration
	// Remaining is how many tokens are left after this request (0 when refused).
	Remaining int
}

// Limiter decides whether a request identified by key may proceed under l. It is safe
// for concurrent use. Requests under one key should always use the same Limit; a bucket
// used with another Limit keeps its state (the instant at which it is full) and is
// judged by the new one.
type Limiter interface {
	Allow(ctx context.Context, key string, l Limit) (Result, error)
}

// ErrInvalidLimit is wrapped by the error Allow returns for a Limit outside its bounds.
var ErrInvalidLimit = errors.New("ratelimit: invalid limit")

const (
	maxRate   = 1e6
	maxRefill = 10 * 365 * 24 * time.Hour
)

// Validate returns an error wrapping ErrInvalidLimit when l is outside the bounds that
// Limit documents, and nil otherwise. Every Limiter's Allow checks l with it, so that all
// implementations refuse exactly the same Limits.
func (l Limit) Validate() error {
	if !(l.Rate > 0 && l.Rate <= maxRate) || l.Burst < 1 || float64(l.Burst)/l.Rate > maxRefill.Seconds() {
		return fmt.Errorf("%w: rate %v per second, burst %d", ErrInvalidLimit, l.Rate, l.Burst)
	}
	return nil
}

// interval returns the time one token takes to come back, in nanoseconds, and checks l.
func (l Limit) interval() (int64, error) {
	if err := l.Validate(); err != nil {
		return 0, err
	}
	return max(1, int64(math.Round(float64(time.Second)/l.Rate))), nil
}
