package redisstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// subscription runs Subscribe in the background, recording what it receives.
type subscription struct {
	mu     sync.Mutex
	msgs   []string
	readys int
	done   chan error
}

func subscribe(t *testing.T, st *redisstore.Store, channel string) *subscription {
	t.Helper()
	sub := &subscription{done: make(chan error, 1)}
	ready := make(chan struct{}, 1)
	go func() {
		sub.done <- st.Subscribe(t.Context(), channel, func() {
			sub.mu.Lock()
			sub.readys++
			sub.mu.Unlock()
			ready <- struct{}{}
		}, func(m string) {
			sub.mu.Lock()
			sub.msgs = append(sub.msgs, m)
			sub.mu.Unlock()
		})
	}()
	select {
	case <-ready:
	case err := <-sub.done:
		t.Fatalf("Subscribe returned before it was ready: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe not ready within 5 s")
	}
	return sub
}

func (s *subscription) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

func TestBroadcastAcrossStores(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "bc:"})
	b := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "bc:"})
	other := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "elsewhere:"})
	onA, onB, onOther := subscribe(t, a, "ended"), subscribe(t, b, "ended"), subscribe(t, other, "ended")

	if err := b.Publish(t.Context(), "ended", "h1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(t.Context(), "ended", "h2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "both stores of the prefix receive both messages", func() bool {
		return len(onA.received()) == 2 && len(onB.received()) == 2
	})
	if got := onA.received(); got[0] != "h1" || got[1] != "h2" {
		t.Errorf("a received %q, want in publication order", got)
	}
	if got := onOther.received(); len(got) != 0 {
		t.Errorf("a store under another prefix received %q", got)
	}
}

func TestSubscribeReportsABrokenConnection(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	st := open(t, redisstore.Options{URL: srv.URL, Timeout: 500 * time.Millisecond})
	sub := subscribe(t, st, "ended")
	srv.Do(t, "CLIENT", "KILL", "TYPE", "pubsub")
	select {
	case err := <-sub.done:
		if err == nil {
			t.Fatal("Subscribe returned nil after its connection was killed")
		}
		t.Logf("Subscribe after CLIENT KILL: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe still blocked 5 s after its connection was killed: lost messages would go unnoticed")
	}
	// Subscribing again works, and receives.
	again := subscribe(t, st, "ended")
	if err := st.Publish(t.Context(), "ended", "h"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the new subscription receives", func() bool { return len(again.received()) == 1 })
}

func TestSubscribeEndsWithItsContextAndTheStore(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	st := open(t, redisstore.Options{URL: srv.URL})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- st.Subscribe(ctx, "ended", func() { cancel() }, func(string) {}) }()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("Subscribe after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe ignored its context")
	}
	sub := subscribe(t, st, "ended")
	st.Close()
	select {
	case err := <-sub.done:
		if err == nil {
			t.Fatal("Subscribe returned nil after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe still blocked after Close")
	}
}

// A session ended through one Manager reaches the OnEnd listeners of every Manager on
// the same Redis, and a Manager whose subscription broke resynchronises.
func TestEndsReachEveryReplica(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ring, err := session.NewKeyRing(session.NewRandomKey())
	if err != nil {
		t.Fatal(err)
	}
	replica := func() (*session.Manager, chan string, chan struct{}) {
		st := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "replicas:", Timeout: 500 * time.Millisecond})
		m := &session.Manager{Store: st, Keys: ring, IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}
		ended, resynced := make(chan string, 16), make(chan struct{}, 16)
		m.OnEnd(func(h string) { ended <- h })
		go m.ListenForEnds(t.Context(), func() { resynced <- struct{}{} })
		select {
		case <-resynced: // subscribed
		case <-time.After(5 * time.Second):
			t.Fatal("ListenForEnds did not subscribe within 5 s")
		}
		return m, ended, resynced
	}
	one, endedOne, _ := replica()
	_, endedTwo, resyncedTwo := replica()
	_, endedThree, _ := replica()

	s := &session.Session{Subject: "alice"}
	if _, err := one.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if ok, err := one.End(t.Context(), s.Handle, session.ReasonRevoked); !ok || err != nil {
		t.Fatalf("End = %v, %v", ok, err)
	}
	for name, ch := range map[string]chan string{"one": endedOne, "two": endedTwo, "three": endedThree} {
		select {
		case h := <-ch:
			if h != s.Handle {
				t.Errorf("replica %s heard of %q, want %q", name, h, s.Handle)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("replica %s did not hear of the ended session within 3 s", name)
		}
	}
	t.Logf("three replicas heard of the end within %v", time.Since(start).Round(time.Millisecond))

	// A broken subscription is made again, and the replica told to resynchronise.
	srv.Do(t, "CLIENT", "KILL", "TYPE", "pubsub")
	select {
	case <-resyncedTwo:
	case <-time.After(10 * time.Second):
		t.Fatal("no resubscription (resync) within 10 s of a killed subscription")
	}
}
