// Package ratelimittest is the conformance suite every ratelimit.Limiter passes. A
// limiter's own test calls Run with a Backend whose Open returns a fresh, empty limiter
// and a way to let time pass for it:
//
//	func TestConformance(t *testing.T) {
//		ratelimittest.Run(t, ratelimittest.Backend{
//			Open: func(t *testing.T) (ratelimit.Limiter, func(time.Duration)) {
//				c := newClock() // a settable time.Now
//				return ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now}), c.Advance
//			},
//		})
//	}
//
// The suite checks the Limiter contract: a burst and no more, an exact RetryAfter,
// refilling up to the burst and no further, refusals that take nothing, keys that stay
// apart however alike they look, one token handed out once under concurrent callers,
// and ErrInvalidLimit for every Limit out of bounds. A limiter on a real clock (one in
// Redis) passes time.Sleep and a Slack; the assertions that need an exact clock are then
// loosened by that much and no more.
package ratelimittest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
)

// Backend is one Limiter implementation under the shared contract.
type Backend struct {
	// Open returns an empty limiter for one subtest (on its own clock, or under its own
	// key prefix) and a function that lets d pass for it: a fake clock's Advance, or
	// time.Sleep. Open arranges any cleanup with t.Cleanup.
	Open func(t *testing.T) (ratelimit.Limiter, func(d time.Duration))
	// Slack is how far below the exact figure a RetryAfter may be, because real time
	// passed between the calls: 0 on a fake clock, which also turns on the checks to the
	// nanosecond.
	Slack time.Duration
}

// Run runs the whole suite, each case in its own subtest with a limiter from b.Open.
// Limits are chosen so that real time may pass between calls (tens of milliseconds under
// -race on a loaded machine) without changing any outcome.
func Run(t *testing.T, b Backend) {
	t.Run("Burst", func(t *testing.T) {
		lim, _ := b.Open(t)
		l := ratelimit.Limit{Rate: 0.001, Burst: 5} // a token per 1000 s: no refill during the test
		for i := range 5 {
			r := Allow(t, lim, "k", l)
			if !r.Allowed || r.Remaining != 4-i || r.RetryAfter != 0 {
				t.Fatalf("request %d of a burst of 5 = %+v; want allowed, %d remaining", i+1, r, 4-i)
			}
		}
		for range 3 {
			r := Allow(t, lim, "k", l)
			if r.Allowed || r.Remaining != 0 {
				t.Fatalf("request past the burst = %+v; want refused", r)
			}
			within(t, "RetryAfter past the burst", r.RetryAfter, 1000*time.Second-b.Slack, 1000*time.Second)
		}
	})
	t.Run("RetryAfter", func(t *testing.T) {
		lim, advance := b.Open(t)
		l := ratelimit.Limit{Rate: 4, Burst: 2} // a token per 250 ms
		const interval = 250 * time.Millisecond
		Drain(t, lim, "k", l, 2)
		r := Allow(t, lim, "k", l)
		if r.Allowed {
			t.Fatalf("request past the burst allowed: %+v", r)
		}
		within(t, "RetryAfter of an empty bucket", r.RetryAfter, interval-b.Slack, interval)
		if b.Slack == 0 {
			// Exact on a fake clock: one nanosecond early is still too early.
			advance(r.RetryAfter - time.Nanosecond)
			if r := Allow(t, lim, "k", l); r.Allowed || r.RetryAfter != time.Nanosecond {
				t.Fatalf("1ns before RetryAfter: %+v; want refused, RetryAfter 1ns", r)
			}
			advance(time.Nanosecond)
		} else {
			advance(r.RetryAfter + 10*time.Millisecond)
		}
		if r := Allow(t, lim, "k", l); !r.Allowed || r.Remaining != 0 {
			t.Fatalf("after waiting RetryAfter: %+v; want allowed, 0 remaining", r)
		}
		r = Allow(t, lim, "k", l)
		if r.Allowed {
			t.Fatalf("second request after one token came back allowed: %+v", r)
		}
		within(t, "RetryAfter after taking the token that came back", r.RetryAfter, interval-b.Slack-10*time.Millisecond, interval)
	})
	t.Run("Refill", func(t *testing.T) {
		lim, advance := b.Open(t)
		l := ratelimit.Limit{Rate: 5, Burst: 3} // a token per 200 ms
		const interval = 200 * time.Millisecond
		Drain(t, lim, "k", l, 3)
		advance(2*interval + 20*time.Millisecond) // 2.1 tokens
		for i := range 2 {
			if r := Allow(t, lim, "k", l); !r.Allowed || r.Remaining != 1-i {
				t.Fatalf("request %d after two tokens came back = %+v; want allowed, %d remaining", i+1, r, 1-i)
			}
		}
		if r := Allow(t, lim, "k", l); r.Allowed {
			t.Fatalf("third request after two tokens came back allowed: %+v", r)
		}
		advance(5 * interval) // full, and no more than full
		Drain(t, lim, "k", l, 3)
		if r := Allow(t, lim, "k", l); r.Allowed {
			t.Fatalf("a bucket refilled for 5 tokens held more than its burst of 3: %+v", r)
		}
	})
	t.Run("RefusalTakesNothing", func(t *testing.T) {
		lim, advance := b.Open(t)
		l := ratelimit.Limit{Rate: 5, Burst: 1}
		Drain(t, lim, "k", l, 1)
		for range 50 {
			if r := Allow(t, lim, "k", l); r.Allowed {
				t.Fatalf("refused bucket allowed: %+v", r)
			}
		}
		advance(220 * time.Millisecond)
		if r := Allow(t, lim, "k", l); !r.Allowed {
			t.Fatalf("50 refused requests delayed the next token: %+v", r)
		}
	})
	t.Run("IndependentKeys", func(t *testing.T) {
		lim, _ := b.Open(t)
		l := ratelimit.Limit{Rate: 0.001, Burst: 2}
		// Keys that look alike, or like a Redis hash tag, are still distinct buckets.
		keys := []string{"192.0.2.1", "192.0.2.10", "2001:db8::1", "sub:abc", "", "{x}", "x}", "{", "a b", "ключ", "\x00\xff"}
		for _, k := range keys {
			Drain(t, lim, k, l, 2)
		}
		for _, k := range keys {
			if r := Allow(t, lim, k, l); r.Allowed {
				t.Fatalf("key %q allowed past its burst: %+v", k, r)
			}
		}
		if r := Allow(t, lim, "192.0.2.100", l); !r.Allowed || r.Remaining != 1 {
			t.Fatalf("a fresh key was affected by others: %+v", r)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		lim, _ := b.Open(t)
		l := ratelimit.Limit{Rate: 0.001, Burst: 10}
		var mu sync.Mutex
		var remaining []int
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for range 10 {
					r, err := lim.Allow(t.Context(), "hot", l)
					if err != nil {
						t.Error(err)
						return
					}
					if r.Allowed {
						mu.Lock()
						remaining = append(remaining, r.Remaining)
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		slices.Sort(remaining)
		// Exactly the burst, each token handed out once.
		if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(remaining, want) {
			t.Fatalf("320 concurrent requests on a burst of 10: allowed with remaining %v; want %v", remaining, want)
		}
	})
	t.Run("InvalidLimits", func(t *testing.T) {
		lim, _ := b.Open(t)
		for _, l := range []ratelimit.Limit{
			{Rate: 0, Burst: 1}, {Rate: -1, Burst: 1}, {Rate: math.NaN(), Burst: 1}, {Rate: math.Inf(1), Burst: 1},
			{Rate: 1, Burst: 0}, {Rate: 1, Burst: -5}, {Rate: 2e6, Burst: 1}, {Rate: 1e-9, Burst: 1},
		} {
			r, err := lim.Allow(t.Context(), "k", l)
			if !errors.Is(err, ratelimit.ErrInvalidLimit) || r.Allowed {
				t.Errorf("Allow with %+v = %+v, %v; want ErrInvalidLimit", l, r, err)
			}
		}
		// The extremes that are valid work.
		for _, l := range []ratelimit.Limit{{Rate: 1e6, Burst: 1}, {Rate: 1e-6, Burst: 1}, {Rate: 1e6, Burst: 1 << 30}} {
			if r := Allow(t, lim, fmt.Sprintf("edge %+v", l), l); !r.Allowed {
				t.Errorf("Allow with %+v refused a fresh key: %+v", l, r)
			}
		}
	})
}

// Allow calls lim.Allow and fails the test on an error.
func Allow(t testing.TB, lim ratelimit.Limiter, key string, l ratelimit.Limit) ratelimit.Result {
	t.Helper()
	r, err := lim.Allow(t.Context(), key, l)
	if err != nil {
		t.Fatalf("Allow(%q, %+v): %v", key, l, err)
	}
	return r
}

// Drain takes n tokens from key, each of which must be granted.
func Drain(t testing.TB, lim ratelimit.Limiter, key string, l ratelimit.Limit, n int) {
	t.Helper()
	for i := range n {
		if r := Allow(t, lim, key, l); !r.Allowed {
			t.Fatalf("key %q: request %d of %d refused: %+v", key, i+1, n, r)
		}
	}
}

func within(t *testing.T, what string, got, lo, hi time.Duration) {
	t.Helper()
	if got < lo || got > hi || got <= 0 {
		t.Fatalf("%s = %v; want within [%v, %v]", what, got, lo, hi)
	}
}
