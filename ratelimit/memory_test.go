package ratelimit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/internal/testutil"
	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/ratelimit/ratelimittest"
)

// epoch is where the tests' clocks start.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestMemoryConformance(t *testing.T) {
	ratelimittest.Run(t, ratelimittest.Backend{Open: func(t *testing.T) (ratelimit.Limiter, func(time.Duration)) {
		c := testutil.ClockAt(epoch)
		return ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now}), c.Advance
	}})
}

func TestMemoryRealClock(t *testing.T) {
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	l := ratelimit.Limit{Rate: 20, Burst: 1}
	ratelimittest.Drain(t, m, "k", l, 1)
	r := ratelimittest.Allow(t, m, "k", l)
	if r.Allowed {
		t.Fatalf("second request allowed: %+v", r)
	}
	time.Sleep(r.RetryAfter)
	if r := ratelimittest.Allow(t, m, "k", l); !r.Allowed {
		t.Fatalf("refused after sleeping RetryAfter: %+v", r)
	}
}

func TestMemoryStaysWithinMaxKeys(t *testing.T) {
	for _, maxKeys := range []int{1, 3, 64, 1000} {
		t.Run(fmt.Sprint(maxKeys), func(t *testing.T) {
			c := testutil.ClockAt(epoch)
			m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now, MaxKeys: maxKeys})
			l := ratelimit.Limit{Rate: 1, Burst: 3}
			for i := range 20 * maxKeys {
				if r := ratelimittest.Allow(t, m, fmt.Sprint("k", i), l); !r.Allowed {
					t.Fatalf("fresh key refused: %+v", r)
				}
				if i%7 == 0 {
					c.Advance(time.Millisecond)
				}
				if n := m.Len(); n > maxKeys {
					t.Fatalf("after %d keys Memory holds %d buckets; MaxKeys is %d", i+1, n, maxKeys)
				}
			}
			if n := m.Len(); n < maxKeys/2 {
				t.Fatalf("Memory holds %d buckets of the %d it may: it evicts too eagerly", n, maxKeys)
			}
		})
	}
}

func TestMemoryDefaultMaxKeys(t *testing.T) {
	c := testutil.ClockAt(epoch)
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now})
	l := ratelimit.Limit{Rate: 1, Burst: 1}
	for i := range 120_000 {
		m.Allow(t.Context(), fmt.Sprint(i), l)
	}
	if n := m.Len(); n > 100_000 || n < 90_000 {
		t.Fatalf("Memory with the default MaxKeys holds %d buckets after 120 000 keys; want at most 100 000", n)
	}
}

// Buckets that have refilled are the same as absent, and are forgotten.
func TestMemoryForgetsRefilledBuckets(t *testing.T) {
	c := testutil.ClockAt(epoch)
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now})
	l := ratelimit.Limit{Rate: 10, Burst: 5} // refills from empty in 500 ms
	for i := range 1000 {
		ratelimittest.Drain(t, m, fmt.Sprint(i), l, 1+i%5)
	}
	if n := m.Len(); n != 1000 {
		t.Fatalf("Len = %d, want 1000", n)
	}
	c.Advance(100 * time.Millisecond) // the buckets that took one token are full again
	if n := m.Len(); n != 800 {
		t.Fatalf("Len after 100 ms = %d, want 800", n)
	}
	c.Advance(400 * time.Millisecond)
	if n := m.Len(); n != 0 {
		t.Fatalf("Len after every bucket refilled = %d, want 0", n)
	}
	// And forgetting changed nothing: a forgotten bucket is full.
	if r := ratelimittest.Allow(t, m, "4", l); !r.Allowed || r.Remaining != 4 {
		t.Fatalf("a forgotten bucket = %+v; want full", r)
	}
	// Allow alone forgets them too, without Len.
	for i := range 1000 {
		ratelimittest.Drain(t, m, fmt.Sprint("b", i), l, 1)
	}
	c.Advance(time.Second)
	for i := range 5000 {
		ratelimittest.Allow(t, m, fmt.Sprint("c", i), ratelimit.Limit{Rate: 1e6, Burst: 1})
		c.Advance(time.Microsecond)
	}
	// Turn the clock back to before the "b" buckets were full, so that Len cannot drop
	// them itself: only those Allow left behind are counted.
	c.Advance(-time.Second)
	if n := m.Len(); n > 50 {
		t.Fatalf("%d buckets held after refilling with no Len call", n)
	}
}

// Flooding other keys does not reset a drained bucket: the flood's buckets are fuller,
// so they are the ones evicted.
func TestMemoryFloodDoesNotResetAttacker(t *testing.T) {
	c := testutil.ClockAt(epoch)
	const maxKeys = 256
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now, MaxKeys: maxKeys})
	l := ratelimit.Limit{Rate: 1.0 / 60, Burst: 5} // 5 logins, then one a minute
	ratelimittest.Drain(t, m, "attacker", l, 5)
	before := ratelimittest.Allow(t, m, "attacker", l)
	if before.Allowed {
		t.Fatal("attacker allowed past his burst")
	}
	for i := range 100 * maxKeys {
		// Each flood key takes fewer tokens than the attacker's bucket lacks, so the
		// flood's buckets are always fuller than his, and are the ones evicted. (Draining
		// as many tokens from every other key as his own lacks would get his bucket
		// evicted: that costs more requests than it wins back.)
		ratelimittest.Drain(t, m, fmt.Sprint("flood", i), l, 1+i%4)
		c.Advance(time.Millisecond)
	}
	after := ratelimittest.Allow(t, m, "attacker", l)
	if after.Allowed {
		t.Fatalf("flooding %d other keys reset the attacker's bucket", 100*maxKeys)
	}
	if want := before.RetryAfter - 100*maxKeys*time.Millisecond; after.RetryAfter != want {
		t.Fatalf("attacker's RetryAfter after the flood = %v, want %v", after.RetryAfter, want)
	}
	if n := m.Len(); n > maxKeys {
		t.Fatalf("Len = %d > MaxKeys %d", n, maxKeys)
	}
}

func BenchmarkMemory(b *testing.B) {
	l := ratelimit.Limit{Rate: 1e6, Burst: 1 << 20} // always allowed: measures the bucket update
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("192.0.%d.%d", i>>8, i&255)
	}
	b.Run("serial/one-key", func(b *testing.B) {
		m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
		for b.Loop() {
			m.Allow(b.Context(), "192.0.2.1", l)
		}
	})
	b.Run("parallel/one-key", func(b *testing.B) {
		m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Allow(b.Context(), "192.0.2.1", l)
			}
		})
	})
	b.Run("parallel/65536-keys", func(b *testing.B) {
		m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				m.Allow(b.Context(), keys[i&(len(keys)-1)], l)
				i += 7919
			}
		})
	})
	b.Run("parallel/evicting", func(b *testing.B) {
		// More keys than MaxKeys: every new key evicts.
		m := ratelimit.NewMemory(ratelimit.MemoryOptions{MaxKeys: 1024})
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				m.Allow(b.Context(), keys[i&(len(keys)-1)], ratelimit.Limit{Rate: 1, Burst: 5})
				i += 7919
			}
		})
	})
}
