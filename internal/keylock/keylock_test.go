package keylock

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMutualExclusion(t *testing.T) {
	var m Map
	var inside, max atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := m.Lock(context.Background(), "k")
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			if n > max.Load() {
				max.Store(n)
			}
			time.Sleep(100 * time.Microsecond)
			inside.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if max.Load() != 1 {
		t.Fatalf("%d holders at once, want 1", max.Load())
	}
	if m.Len() != 0 {
		t.Fatalf("map keeps %d entries after every release", m.Len())
	}
}

func TestKeysAreIndependentAndWaitsCancel(t *testing.T) {
	var m Map
	r1, err := m.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	r2, ok := m.TryLock("b")
	if !ok {
		t.Fatal("TryLock on a free key failed")
	}
	if _, ok := m.TryLock("a"); ok {
		t.Fatal("TryLock took a held key")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.Lock(ctx, "a"); err == nil {
		t.Fatal("Lock on a held key returned before its context ended")
	}
	r1()
	r2()
	if m.Len() != 0 {
		t.Fatalf("map keeps %d entries", m.Len())
	}
}
