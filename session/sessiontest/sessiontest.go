// Package sessiontest is the conformance suite every session store passes. A store's own
// test calls Run with a function that returns a fresh, empty store:
//
//	func TestConformance(t *testing.T) {
//		sessiontest.Run(t, func(t *testing.T) session.Store { return memstore.New(memstore.Options{}) })
//	}
//
// The suite checks the Store contract and every optional capability the store declares
// (Adder, Indexer, Locker, Pinger, Counter), then drives a session.Manager over the store:
// expiry, ending, listing, counting and the lock → reload → save cycle. It uses real time with short ttls,
// so it needs no control over the store's clock.
package sessiontest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
)

// NewStore returns a fresh, empty store for one subtest. Run closes it (when it is a
// session.Closer) at the end of the subtest.
type NewStore func(t *testing.T) session.Store

// Run runs the whole suite.
func Run(t *testing.T, newStore NewStore) {
	open := func(t *testing.T) session.Store {
		s := newStore(t)
		if c, ok := s.(session.Closer); ok {
			t.Cleanup(func() { c.Close() })
		}
		return s
	}
	t.Run("GetMissing", func(t *testing.T) { testGetMissing(t, open(t)) })
	t.Run("SetGetOverwrite", func(t *testing.T) { testSetGet(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, open(t)) })
	t.Run("ReturnedValuesStay", func(t *testing.T) { testReturnedValuesStay(t, open(t)) })
	t.Run("TTL", func(t *testing.T) { testTTL(t, open(t)) })
	t.Run("LargeAndBinaryValues", func(t *testing.T) { testLarge(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open(t)) })
	t.Run("Adder", func(t *testing.T) { testAdder(t, open(t)) })
	t.Run("Indexer", func(t *testing.T) { testIndexer(t, open(t)) })
	t.Run("Locker", func(t *testing.T) { testLocker(t, open(t)) })
	t.Run("Pinger", func(t *testing.T) { testPinger(t, open(t)) })
	t.Run("Manager", func(t *testing.T) { testManager(t, open) })
}

func ctx(t *testing.T) context.Context { return t.Context() }

// winners runs f in n goroutines at once and reports how many saw true; an error fails
// the test. Operations that promise "exactly one caller sees true" are checked with it.
func winners(t *testing.T, n int, f func(i int) (bool, error)) int {
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			won, err := f(i)
			if err != nil {
				t.Error(err)
			}
			if won {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	return int(wins.Load())
}

func mustGet(t *testing.T, s session.Store, key string) []byte {
	t.Helper()
	v, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

func wantNotFound(t *testing.T, s session.Store, key string) {
	t.Helper()
	v, err := s.Get(ctx(t), key)
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}

func testGetMissing(t *testing.T, s session.Store) {
	wantNotFound(t, s, "never-set")
}

func testSetGet(t *testing.T, s session.Store) {
	v := []byte("value one")
	if err := s.Set(ctx(t), "k", v, time.Minute); err != nil {
		t.Fatal(err)
	}
	v[0] = 'X' // the store must have copied it
	if got := mustGet(t, s, "k"); string(got) != "value one" {
		t.Fatalf("Get = %q, want %q", got, "value one")
	}
	// What Get returns is the caller's to read, not to write (session.Store): a store may
	// share it. ReturnedValuesStay checks the other half, that the store does not write
	// to it either.
	if err := s.Set(ctx(t), "k", []byte("value two"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "k"); string(got) != "value two" {
		t.Fatalf("Get after overwrite = %q", got)
	}
	if err := s.Set(ctx(t), "empty", []byte{}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "empty"); len(got) != 0 {
		t.Fatalf("empty value came back as %q", got)
	}
	// Keys that look like other keys' prefixes or contain separators stay distinct.
	for _, k := range []string{"s:{a}", "s:{a}x", "s:{a", "t:{a}", "a/b", "a b", "ключ"} {
		if err := s.Set(ctx(t), k, []byte(k), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"s:{a}", "s:{a}x", "s:{a", "t:{a}", "a/b", "a b", "ключ"} {
		if got := mustGet(t, s, k); string(got) != k {
			t.Fatalf("Get(%q) = %q", k, got)
		}
	}
}

// testReturnedValuesStay: a value Get returned may be shared with the store (see
// session.Store), so the store must never write into it: overwriting, deleting and
// writing the key again leave the bytes a reader already holds as they were.
func testReturnedValuesStay(t *testing.T, s session.Store) {
	if err := s.Set(ctx(t), "k", []byte("first value"), time.Minute); err != nil {
		t.Fatal(err)
	}
	held := mustGet(t, s, "k")
	if err := s.Set(ctx(t), "k", []byte("other value"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "k"); string(got) != "other value" {
		t.Fatalf("Get after overwrite = %q", got)
	}
	if _, err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	if a, ok := s.(session.Adder); ok {
		if _, err := a.Add(ctx(t), "k", []byte("added value"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if ix, ok := s.(session.Indexer); ok {
		if err := ix.SetIndexed(ctx(t), "k", []byte("index value"), time.Minute, "sub:stay"); err != nil {
			t.Fatal(err)
		}
	}
	if string(held) != "first value" {
		t.Fatalf("a value returned by Get changed to %q when the key was written again", held)
	}
}

func testDelete(t *testing.T, s session.Store) {
	if existed, err := s.Delete(ctx(t), "absent"); err != nil || existed {
		t.Fatalf("Delete(absent) = %v, %v; want false, nil", existed, err)
	}
	if err := s.Set(ctx(t), "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if existed, err := s.Delete(ctx(t), "k"); err != nil || !existed {
		t.Fatalf("Delete(k) = %v, %v; want true, nil", existed, err)
	}
	wantNotFound(t, s, "k")
	if existed, _ := s.Delete(ctx(t), "k"); existed {
		t.Fatal("second Delete reported the key as existing")
	}

	// Many deleters racing for one key: exactly one wins. This is what makes a login
	// flow completable once.
	for round := range 20 {
		key := fmt.Sprintf("race-%d", round)
		if err := s.Set(ctx(t), key, []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if n := winners(t, 8, func(int) (bool, error) { return s.Delete(ctx(t), key) }); n != 1 {
			t.Fatalf("round %d: %d concurrent deleters saw the key, want exactly 1", round, n)
		}
	}
}

func testTTL(t *testing.T, s session.Store) {
	if err := s.Set(ctx(t), "short", []byte("v"), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx(t), "long", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx(t), "extended", []byte("v"), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "short")
	// Set replaces the ttl too.
	if err := s.Set(ctx(t), "extended", []byte("v2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	wantNotFound(t, s, "short")
	mustGet(t, s, "long")
	if got := mustGet(t, s, "extended"); string(got) != "v2" {
		t.Fatalf("extended = %q", got)
	}
	if existed, _ := s.Delete(ctx(t), "short"); existed {
		t.Fatal("Delete reported an expired key as existing")
	}
}

func testLarge(t *testing.T, s session.Store) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := s.Set(ctx(t), "big", big, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "big"); !bytes.Equal(got, big) {
		t.Fatalf("1 MiB value came back changed (len %d)", len(got))
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	if err := s.Set(ctx(t), "binary", all, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "binary"); !bytes.Equal(got, all) {
		t.Fatalf("binary value came back as %x", got)
	}
}

func testConcurrent(t *testing.T, s session.Store) {
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				key := fmt.Sprintf("g%d-%d", g, i%5)
				val := fmt.Sprintf("g%d-v%d", g, i)
				if err := s.Set(ctx(t), key, []byte(val), time.Minute); err != nil {
					t.Error(err)
					return
				}
				got, err := s.Get(ctx(t), key)
				if err != nil || string(got) != val {
					t.Errorf("Get(%q) = %q, %v; want %q (no other writer uses this key)", key, got, err, val)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func testAdder(t *testing.T, s session.Store) {
	a, ok := s.(session.Adder)
	if !ok {
		t.Skip("store is not a session.Adder") // optional capability, declared by the store
	}
	if added, err := a.Add(ctx(t), "jti", []byte("1"), 300*time.Millisecond); err != nil || !added {
		t.Fatalf("first Add = %v, %v", added, err)
	}
	if added, err := a.Add(ctx(t), "jti", []byte("2"), time.Minute); err != nil || added {
		t.Fatalf("second Add = %v, %v; want false", added, err)
	}
	if got := mustGet(t, s, "jti"); string(got) != "1" {
		t.Fatalf("a refused Add changed the value to %q", got)
	}
	time.Sleep(600 * time.Millisecond)
	if added, err := a.Add(ctx(t), "jti", []byte("3"), time.Minute); err != nil || !added {
		t.Fatalf("Add after expiry = %v, %v; want true", added, err)
	}
	if n := winners(t, 16, func(int) (bool, error) { return a.Add(ctx(t), "contended", []byte("x"), time.Minute) }); n != 1 {
		t.Fatalf("%d concurrent Adds succeeded, want exactly 1", n)
	}
}

func members(t *testing.T, ix session.Indexer, index string) []string {
	t.Helper()
	m, err := ix.Members(ctx(t), index)
	if err != nil {
		t.Fatalf("Members(%q): %v", index, err)
	}
	slices.Sort(m)
	return m
}

func testIndexer(t *testing.T, s session.Store) {
	ix, ok := s.(session.Indexer)
	if !ok {
		t.Skip("store is not a session.Indexer")
	}
	if m := members(t, ix, "sub:nobody"); len(m) != 0 {
		t.Fatalf("unknown index has members %q", m)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ix.SetIndexed(ctx(t), "s:{1}", []byte("one"), time.Minute, "sub:a", "psid:x"))
	must(ix.SetIndexed(ctx(t), "s:{2}", []byte("two"), time.Minute, "sub:a"))
	must(ix.SetIndexed(ctx(t), "s:{3}", []byte("three"), 300*time.Millisecond, "sub:a", "psid:x"))
	must(ix.SetIndexed(ctx(t), "s:{4}", []byte("four"), time.Minute, "sub:b"))
	if got := mustGet(t, s, "s:{1}"); string(got) != "one" {
		t.Fatalf("SetIndexed value = %q", got)
	}
	if m := members(t, ix, "sub:a"); !slices.Equal(m, []string{"s:{1}", "s:{2}", "s:{3}"}) {
		t.Fatalf("Members(sub:a) = %q", m)
	}
	if m := members(t, ix, "psid:x"); !slices.Equal(m, []string{"s:{1}", "s:{3}"}) {
		t.Fatalf("Members(psid:x) = %q", m)
	}
	// Membership lives as long as the latest SetIndexed says.
	time.Sleep(700 * time.Millisecond)
	if m := members(t, ix, "sub:a"); !slices.Equal(m, []string{"s:{1}", "s:{2}"}) {
		t.Fatalf("Members(sub:a) after s:{3} expired = %q", m)
	}
	must(ix.SetIndexed(ctx(t), "s:{2}", []byte("two'"), 300*time.Millisecond, "sub:a"))
	must(ix.SetIndexed(ctx(t), "s:{2}", []byte("two''"), time.Minute, "sub:a"))
	time.Sleep(500 * time.Millisecond)
	if m := members(t, ix, "sub:a"); !slices.Contains(m, "s:{2}") {
		t.Fatalf("a refreshed membership expired with its earlier ttl: %q", m)
	}
	existed, err := ix.DeleteIndexed(ctx(t), "s:{1}", "sub:a", "psid:x")
	if err != nil || !existed {
		t.Fatalf("DeleteIndexed = %v, %v", existed, err)
	}
	wantNotFound(t, s, "s:{1}")
	if m := members(t, ix, "sub:a"); !slices.Equal(m, []string{"s:{2}"}) {
		t.Fatalf("Members(sub:a) after DeleteIndexed = %q", m)
	}
	if m := members(t, ix, "psid:x"); len(m) != 0 {
		t.Fatalf("Members(psid:x) after DeleteIndexed = %q", m)
	}
	if m := members(t, ix, "sub:b"); !slices.Equal(m, []string{"s:{4}"}) {
		t.Fatalf("another index was disturbed: %q", m)
	}
	if existed, _ := ix.DeleteIndexed(ctx(t), "s:{1}", "sub:a"); existed {
		t.Fatal("DeleteIndexed of a deleted key reported it as existing")
	}

	// Many writers into one index lose nobody.
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ix.SetIndexed(ctx(t), fmt.Sprintf("s:{c%02d}", i), []byte("v"), time.Minute, "sub:crowd"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if m := members(t, ix, "sub:crowd"); len(m) != 40 {
		t.Fatalf("%d of 40 concurrent members listed", len(m))
	}
}

func testLocker(t *testing.T, s session.Store) {
	l, ok := s.(session.Locker)
	if !ok {
		t.Skip("store is not a session.Locker")
	}
	t.Run("Exclusive", func(t *testing.T) {
		var inside, most atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				release, err := l.Lock(ctx(t), "l:{x}", 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(5 * time.Millisecond)
				inside.Add(-1)
				release()
			}()
		}
		wg.Wait()
		if most.Load() != 1 {
			t.Fatalf("%d lease holders at once, want 1", most.Load())
		}
	})
	t.Run("NamesAreIndependent", func(t *testing.T) {
		r1, err := l.Lock(ctx(t), "l:{a}", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer r1()
		c, cancel := context.WithTimeout(ctx(t), 2*time.Second)
		defer cancel()
		r2, err := l.Lock(c, "l:{b}", 10*time.Second)
		if err != nil {
			t.Fatalf("a lease on another name blocked: %v", err)
		}
		r2()
	})
	t.Run("WaitEndsWithContext", func(t *testing.T) {
		r, err := l.Lock(ctx(t), "l:{held}", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer r()
		c, cancel := context.WithTimeout(ctx(t), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := l.Lock(c, "l:{held}", 10*time.Second); err == nil {
			t.Fatal("took a held lease")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("waited %v after the context ended", d)
		}
	})
	t.Run("ExpiresWhenHolderDies", func(t *testing.T) {
		if _, err := l.Lock(ctx(t), "l:{dead}", 300*time.Millisecond); err != nil {
			t.Fatal(err)
		} // never released
		c, cancel := context.WithTimeout(ctx(t), 5*time.Second)
		defer cancel()
		start := time.Now()
		r, err := l.Lock(c, "l:{dead}", 10*time.Second)
		if err != nil {
			t.Fatalf("lease of a dead holder never expired: %v", err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Fatalf("took a live lease after %v", d)
		}
		r()
	})
	t.Run("StaleReleaseKeepsNewHolder", func(t *testing.T) {
		stale, err := l.Lock(ctx(t), "l:{s}", 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		fresh, err := l.Lock(ctx(t), "l:{s}", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer fresh()
		stale() // must not free the new holder's lease
		stale() // and is safe twice
		c, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
		defer cancel()
		if r, err := l.Lock(c, "l:{s}", 10*time.Second); err == nil {
			r()
			t.Fatal("a stale release freed someone else's lease")
		}
	})
	t.Run("StaleReleaseOfEarlierLease", func(t *testing.T) {
		// A's lease expires; B takes and releases the name; C takes it. A's late release
		// must not free C's lease (a store that numbers leases per entry, restarting when
		// the entry is re-created, gets this wrong).
		stale, err := l.Lock(ctx(t), "l:{gen}", 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		taker, err := l.Lock(ctx(t), "l:{gen}", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		taker()
		holder, err := l.Lock(ctx(t), "l:{gen}", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		defer holder()
		stale()
		c, cancel := context.WithTimeout(ctx(t), 200*time.Millisecond)
		defer cancel()
		if r, err := l.Lock(c, "l:{gen}", time.Hour); err == nil {
			r()
			t.Fatal("a stale release freed the current holder's lease")
		}
	})
	t.Run("ReleaseWakesWaiter", func(t *testing.T) {
		r, err := l.Lock(ctx(t), "l:{w}", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan time.Duration, 1)
		go func() {
			start := time.Now()
			r2, err := l.Lock(ctx(t), "l:{w}", 30*time.Second)
			if err != nil {
				t.Error(err)
				got <- 0
				return
			}
			got <- time.Since(start)
			r2()
		}()
		time.Sleep(50 * time.Millisecond)
		r()
		select {
		case d := <-got:
			if d > 5*time.Second {
				t.Fatalf("waiter took %v after release", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("waiter never got the released lease")
		}
	})
}

func testPinger(t *testing.T, s session.Store) {
	p, ok := s.(session.Pinger)
	if !ok {
		t.Skip("store is not a session.Pinger")
	}
	if err := p.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
