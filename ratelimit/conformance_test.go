package ratelimit_test

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

// backend is one Limiter implementation under the shared contract.
type backend struct {
	// open returns an empty limiter (its own clock, or its own key prefix) and a function
	// that lets d pass for it.
	open func(t *testing.T) (ratelimit.Limiter, func(d time.Duration))
	// slack is how far below the exact figure a RetryAfter may be, because time passed
	// between the calls: 0 on a fake clock.
	slack time.Duration
}

// runConformance checks the contract every Limiter meets. Limits are chosen so that
// real time may pass between calls (tens of milliseconds under -race on a loaded
// machine) without changing any outcome.
func runConformance(t *testing.T, b backend) {
	t.Run("Burst", func(t *testing.T) {
		lim, _ := b.open(t)
		l := ratelimit.Limit{Rate: 0.001, Burst: 5} // a token per 1000 s: no refill during the test
		for i := range 5 {
			r := allow(t, lim, "k", l)
			if !r.Allowed || r.Remaining != 4-i || r.RetryAfter != 0 {
				t.Fatalf("request %d of a burst of 5 = %+v; want allowed, %d remaining", i+1, r, 4-i)
			}
		}
		for range 3 {
			r := allow(t, lim, "k", l)
			if r.Allowed || r.Remaining != 0 {
				t.Fatalf("request past the burst = %+v; want refused", r)
			}
			within(t, "RetryAfter past the burst", r.RetryAfter, 1000*time.Second-b.slack, 1000*time.Second)
		}
	})
	t.Run("RetryAfter", func(t *testing.T) {
		lim, advance := b.open(t)
		l := ratelimit.Limit{Rate: 4, Burst: 2} // a token per 250 ms
		const interval = 250 * time.Millisecond
		drain(t, lim, "k", l, 2)
		r := allow(t, lim, "k", l)
		if r.Allowed {
			t.Fatalf("request past the burst allowed: %+v", r)
		}
		within(t, "RetryAfter of an empty bucket", r.RetryAfter, interval-b.slack, interval)
		if b.slack == 0 {
			// Exact on a fake clock: one nanosecond early is still too early.
			advance(r.RetryAfter - time.Nanosecond)
			if r := allow(t, lim, "k", l); r.Allowed || r.RetryAfter != time.Nanosecond {
				t.Fatalf("1ns before RetryAfter: %+v; want refused, RetryAfter 1ns", r)
			}
			advance(time.Nanosecond)
		} else {
			advance(r.RetryAfter + 10*time.Millisecond)
		}
		if r := allow(t, lim, "k", l); !r.Allowed || r.Remaining != 0 {
			t.Fatalf("after waiting RetryAfter: %+v; want allowed, 0 remaining", r)
		}
		r = allow(t, lim, "k", l)
		if r.Allowed {
			t.Fatalf("second request after one token came back allowed: %+v", r)
		}
		within(t, "RetryAfter after taking the token that came back", r.RetryAfter, interval-b.slack-10*time.Millisecond, interval)
	})
	t.Run("Refill", func(t *testing.T) {
		lim, advance := b.open(t)
		l := ratelimit.Limit{Rate: 5, Burst: 3} // a token per 200 ms
		const interval = 200 * time.Millisecond
		drain(t, lim, "k", l, 3)
		advance(2*interval + 20*time.Millisecond) // 2.1 tokens
		for i := range 2 {
			if r := allow(t, lim, "k", l); !r.Allowed || r.Remaining != 1-i {
				t.Fatalf("request %d after two tokens came back = %+v; want allowed, %d remaining", i+1, r, 1-i)
			}
		}
		if r := allow(t, lim, "k", l); r.Allowed {
			t.Fatalf("third request after two tokens came back allowed: %+v", r)
		}
		advance(5 * interval) // full, and no more than full
		drain(t, lim, "k", l, 3)
		if r := allow(t, lim, "k", l); r.Allowed {
			t.Fatalf("a bucket refilled for 5 tokens held more than its burst of 3: %+v", r)
		}
	})
	t.Run("RefusalTakesNothing", func(t *testing.T) {
		lim, advance := b.open(t)
		l := ratelimit.Limit{Rate: 5, Burst: 1}
		drain(t, lim, "k", l, 1)
		for range 50 {
			if r := allow(t, lim, "k", l); r.Allowed {
				t.Fatalf("refused bucket allowed: %+v", r)
			}
		}
		advance(220 * time.Millisecond)
		if r := allow(t, lim, "k", l); !r.Allowed {
			t.Fatalf("50 refused requests delayed the next token: %+v", r)
		}
	})
	t.Run("IndependentKeys", func(t *testing.T) {
		lim, _ := b.open(t)
		l := ratelimit.Limit{Rate: 0.001, Burst: 2}
		// Keys that look alike, or like a Redis hash tag, are still distinct buckets.
		keys := []string{"192.0.2.1", "192.0.2.10", "2001:db8::1", "sub:abc", "", "{x}", "x}", "{", "a b", "ключ", "\x00\xff"}
		for _, k := range keys {
			drain(t, lim, k, l, 2)
		}
		for _, k := range keys {
			if r := allow(t, lim, k, l); r.Allowed {
				t.Fatalf("key %q allowed past its burst: %+v", k, r)
			}
		}
		if r := allow(t, lim, "192.0.2.100", l); !r.Allowed || r.Remaining != 1 {
			t.Fatalf("a fresh key was affected by others: %+v", r)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		lim, _ := b.open(t)
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
		lim, _ := b.open(t)
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
			if r := allow(t, lim, fmt.Sprintf("edge %+v", l), l); !r.Allowed {
				t.Errorf("Allow with %+v refused a fresh key: %+v", l, r)
			}
		}
	})
}

func allow(t *testing.T, lim ratelimit.Limiter, key string, l ratelimit.Limit) ratelimit.Result {
	t.Helper()
	r, err := lim.Allow(t.Context(), key, l)
	if err != nil {
		t.Fatalf("Allow(%q, %+v): %v", key, l, err)
	}
	return r
}

// drain takes n tokens from key, each of which must be granted.
func drain(t *testing.T, lim ratelimit.Limiter, key string, l ratelimit.Limit, n int) {
	t.Helper()
	for i := range n {
		if r := allow(t, lim, key, l); !r.Allowed {
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
