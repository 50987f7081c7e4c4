package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConcurrentCallsRunOnce(t *testing.T) {
	var g Group[int]
	var runs atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]int, 100)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err, _ := g.Do(context.Background(), "k", func(context.Context) (int, error) {
				runs.Add(1)
				<-release
				return 42, nil
			})
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if runs.Load() != 1 {
		t.Fatalf("fn ran %d times, want 1", runs.Load())
	}
	for i, v := range results {
		if v != 42 {
			t.Fatalf("caller %d got %d", i, v)
		}
	}
	// A later call runs again.
	v, _, shared := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 7, nil })
	if v != 7 || shared {
		t.Fatalf("later call = %d shared=%v", v, shared)
	}
}

func TestCallerCancellationDoesNotCancelTheRun(t *testing.T) {
	var g Group[string]
	started := make(chan struct{})
	finished := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, err, _ := g.Do(ctx, "k", func(runCtx context.Context) (string, error) {
			close(started)
			time.Sleep(50 * time.Millisecond)
			finished <- runCtx.Err()
			return "done", nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled caller got %v", err)
		}
	}()
	<-started
	// A second caller joins, then the first goes away.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		v, err, shared := g.Do(context.Background(), "k", func(context.Context) (string, error) { return "other", nil })
		if err != nil || v != "done" || !shared {
			t.Errorf("waiter got %q, %v, shared=%v", v, err, shared)
		}
	}()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-finished; err != nil {
		t.Fatalf("the run's context was cancelled with its first caller: %v", err)
	}
	wg.Wait()
}
