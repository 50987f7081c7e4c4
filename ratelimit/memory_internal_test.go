package ratelimit

import (
	"testing"
	"time"
)

// In a shard at capacity, a new key evicts the bucket that will be full soonest, never
// a more drained one.
func TestEvictsSoonestFull(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m := newMemory(MemoryOptions{Now: func() time.Time { return now }, MaxKeys: 3}, 1)
	l := Limit{Rate: 1, Burst: 10}
	take := func(key string, n int) Result {
		t.Helper()
		var r Result
		for range n {
			var err error
			if r, err = m.Allow(t.Context(), key, l); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	held := func(want ...string) {
		t.Helper()
		sh := &m.shards[0]
		if len(sh.buckets) != len(want) || len(sh.byFull) != len(want) {
			t.Fatalf("shard holds %d buckets (heap %d), want %q", len(sh.buckets), len(sh.byFull), want)
		}
		for _, k := range want {
			if b := sh.buckets[k]; b == nil || sh.byFull[b.pos] != b {
				t.Fatalf("bucket %q not held (or misplaced in the heap); want %q", k, want)
			}
		}
	}
	take("a", 9) // 1 token left
	take("b", 5)
	take("c", 2)
	held("a", "b", "c")
	take("d", 3) // evicts c, the fullest
	held("a", "b", "d")
	take("e", 1) // evicts d
	held("a", "b", "e")
	take("b", 5) // b now more drained than a
	take("f", 1) // evicts e, then f is the fullest
	held("a", "b", "f")
	take("g", 1) // f and g are equally full: one of them goes, a and b stay
	if sh := &m.shards[0]; sh.buckets["a"] == nil || sh.buckets["b"] == nil || sh.buckets["g"] == nil {
		t.Fatalf("a drained bucket or the new one was evicted: %v", sh.buckets)
	}
	if r := take("a", 1); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("a = %+v, want its last token", r)
	}
	if r := take("b", 1); r.Allowed {
		t.Fatalf("b = %+v, want refused", r)
	}
	// Refilled buckets go first, before any eviction.
	now = now.Add(5 * time.Second) // f and g refilled; a and b still short
	take("h", 1)
	held("a", "b", "h")
}
