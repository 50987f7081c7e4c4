package memstore_test

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
	"github.com/gatehouse-bff/gatehouse/session/sessiontest"
)

func TestConformance(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) session.Store { return memstore.New(memstore.Options{}) })
}

func TestSweepRemovesExpired(t *testing.T) {
	now := time.Unix(1000, 0)
	s := memstore.New(memstore.Options{Now: func() time.Time { return now }, SweepInterval: time.Hour})
	defer s.Close()
	ctx := context.Background()
	s.Set(ctx, "a", []byte("1"), time.Second)
	s.SetIndexed(ctx, "b", []byte("2"), time.Minute, "ix")
	now = now.Add(2 * time.Second)
	s.Sweep()
	if s.Len() != 1 {
		t.Fatalf("after sweep %d values remain, want 1", s.Len())
	}
	now = now.Add(time.Hour)
	s.Sweep()
	if m, _ := s.Members(ctx, "ix"); s.Len() != 0 || len(m) != 0 {
		t.Fatalf("after sweep %d values and %d members remain", s.Len(), len(m))
	}
}

// An index keeps one member inline and moves to a map of its own from the second: the
// moves in both directions keep every membership and its expiry.
func TestIndexGrowsAndShrinks(t *testing.T) {
	now := time.Unix(1000, 0)
	s := memstore.New(memstore.Options{Now: func() time.Time { return now }, SweepInterval: time.Hour})
	defer s.Close()
	ctx := context.Background()
	members := func() []string {
		t.Helper()
		m, err := s.Members(ctx, "ix")
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(m)
		return m
	}
	want := func(keys ...string) {
		t.Helper()
		if keys == nil {
			keys = []string{}
		}
		if got := members(); !slices.Equal(got, keys) {
			t.Fatalf("Members = %q, want %q", got, keys)
		}
	}
	s.SetIndexed(ctx, "a", []byte("1"), time.Minute, "ix")
	s.SetIndexed(ctx, "a", []byte("1"), 2*time.Minute, "ix") // a single member, refreshed
	want("a")
	s.SetIndexed(ctx, "b", []byte("2"), time.Hour, "ix")
	s.SetIndexed(ctx, "c", []byte("3"), time.Hour, "ix")
	want("a", "b", "c")
	s.DeleteIndexed(ctx, "b", "ix")
	s.DeleteIndexed(ctx, "c", "ix")
	want("a") // back inline, with a's own expiry: two minutes
	now = now.Add(90 * time.Second)
	want("a")
	now = now.Add(time.Minute)
	want()
	s.SetIndexed(ctx, "d", []byte("4"), time.Hour, "ix") // replaces the expired member
	want("d")
	s.SetIndexed(ctx, "e", []byte("5"), time.Minute, "ix")
	now = now.Add(2 * time.Minute)
	s.Sweep() // e expires: d goes back inline
	want("d")
	s.SetIndexed(ctx, "f", []byte("6"), time.Hour, "ix")
	want("d", "f")
	s.DeleteIndexed(ctx, "x", "ix") // not a member: nobody leaves
	want("d", "f")
	s.DeleteIndexed(ctx, "d", "ix", "unknown")
	s.DeleteIndexed(ctx, "f", "ix")
	want()
	if n := s.Len(); n != 0 {
		t.Fatalf("%d values left, want none (a and e swept, the others deleted)", n)
	}
}

func TestLongTTLDoesNotWrap(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	ctx := context.Background()
	s.Set(ctx, "k", []byte("v"), time.Duration(math.MaxInt64))
	s.SetIndexed(ctx, "i", []byte("v"), time.Duration(math.MaxInt64), "ix")
	if _, err := s.Get(ctx, "k"); err != nil {
		t.Fatalf("value with the longest ttl: %v", err)
	}
	if m, _ := s.Members(ctx, "ix"); len(m) != 1 {
		t.Fatalf("membership with the longest ttl: %q", m)
	}
}

// BenchmarkGet is the hot path's read of a session record (2.5 KB with the development
// provider's tokens).
func BenchmarkGet(b *testing.B) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	ctx := context.Background()
	s.Set(ctx, "s:{bench}", make([]byte, 2606), time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, "s:{bench}"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOverwritesFreeWhatTheyReplace: a value, its key and its index names share one
// allocation, so a key or name that outlived its value would keep the value's memory.
// Rewriting sessions (as every refresh and touch does), in indexes of one member and of
// two, and ending and recreating some, must leave the heap as it was.
func TestOverwritesFreeWhatTheyReplace(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	ctx := context.Background()
	const n, size = 200, 8000
	value := make([]byte, size)
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	// Keys and index names made afresh for every call, as the Manager does.
	key := func(i int) string { return fmt.Sprintf("s:{%022d}", i) }
	sub := func(i int) string { return fmt.Sprintf("sub:%024d", i/2) } // two sessions each
	psid := func(i int) string { return fmt.Sprintf("psid:%024d", i) }
	write := func(round int) {
		value[0] = byte(round)
		for i := range n {
			if err := s.SetIndexed(ctx, key(i), value, time.Hour, sub(i), psid(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0)
	before := heap()
	for round := 1; round <= 10; round++ {
		// End some sessions, as logouts do, then write all again.
		for i := round; i < n; i += 7 {
			if _, err := s.DeleteIndexed(ctx, key(i), sub(i), psid(i)); err != nil {
				t.Fatal(err)
			}
		}
		write(round)
	}
	// n live values of 8 KB: a stale copy of each kept by one string would add 1.6 MB.
	if grown := heap() - before; grown > n*size/8 {
		t.Fatalf("the heap grew by %d bytes after rewriting %d values of %d bytes: replaced values are kept alive", grown, n, size)
	}
	if got, _ := s.Members(ctx, sub(4)); len(got) != 2 {
		t.Fatalf("Members = %q", got)
	}
	if got, err := s.Get(ctx, key(2)); err != nil || len(got) != size || got[0] != 10 {
		t.Fatalf("Get = %d bytes, %v", len(got), err)
	}
}

// bare is a Store with none of the optional capabilities, so that the conformance suite
// exercises the session Manager's paths for stores without them (AddOnce exact within a
// process, no lists, no lease beyond the in-process lock).
type bare struct{ s *memstore.Store }

func (b bare) Get(ctx context.Context, k string) ([]byte, error) { return b.s.Get(ctx, k) }
func (b bare) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	return b.s.Set(ctx, k, v, ttl)
}
func (b bare) Delete(ctx context.Context, k string) (bool, error) { return b.s.Delete(ctx, k) }

func TestConformanceWithoutCapabilities(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) session.Store {
		s := memstore.New(memstore.Options{})
		t.Cleanup(func() { s.Close() })
		return bare{s}
	})
}
