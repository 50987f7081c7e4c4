package session

import (
	"context"
	"sync"
	"time"
)

// Broadcaster is a Store through which the processes that share it tell each other that
// something happened, so that each can act on what only it holds. The Manager uses it to
// announce the sessions that end: every replica then closes the WebSockets and streams
// it proxies for them (see Manager.OnEnd).
//
// Delivery is at most once and only to subscriptions in place when a message is
// published; a Subscribe that returns an error may have missed messages, so its caller
// must resynchronise (check what it holds) before relying on it again.
type Broadcaster interface {
	// Publish sends msg to every subscription to channel, in every process sharing the
	// store, this one included.
	Publish(ctx context.Context, channel, msg string) error
	// Subscribe calls fn, one call at a time, with each message published on channel. It
	// calls ready once the subscription is in place, then blocks until ctx is done
	// (returning ctx's error) or the subscription breaks (returning why).
	Subscribe(ctx context.Context, channel string, ready func(), fn func(msg string)) error
}

// endedChannel is the Broadcaster channel on which ended sessions' handles are published.
const endedChannel = "ended"

// endListeners are the callbacks OnEnd registered.
type endListeners struct {
	mu  sync.RWMutex
	fns map[*func(string)]struct{}
}

// OnEnd registers fn to be called with the handle of every session that ends: ended by
// this Manager (End), or, when the Store is a Broadcaster and ListenForEnds runs, by any
// process sharing the store. fn may be called more than once for one session, and for
// handles this process never saw; it must be quick and safe for concurrent use. It is not
// called for sessions that merely expire: their holders time them out themselves
// (IdleExpiry). remove unregisters fn.
func (m *Manager) OnEnd(fn func(handle string)) (remove func()) {
	l := &m.ends
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fns == nil {
		l.fns = map[*func(string)]struct{}{}
	}
	p := &fn
	l.fns[p] = struct{}{}
	return func() {
		l.mu.Lock()
		delete(l.fns, p)
		l.mu.Unlock()
	}
}

// ended tells the local listeners, then the other processes, that h has ended.
func (m *Manager) ended(ctx context.Context, h string) {
	m.callEnded(h)
	b, ok := m.Store.(Broadcaster)
	if !ok {
		return
	}
	ctx = context.WithoutCancel(ctx)
	t := m.start()
	err := b.Publish(ctx, endedChannel, h)
	m.observe(ctx, OpPublish, t, err)
	if err != nil {
		// The session has ended in the store, but the other processes do not know: their
		// subscriptions may be healthy (only this process's connection failed), so nothing
		// makes them look. Publish again, in the background, until it goes through.
		go m.republish(ctx, b, h)
	}
}

// republishFor bounds the attempts to announce one end: after it, the other processes'
// periodic checks of what they hold find the end anyway.
const republishFor = time.Minute

// republish publishes the end of h again, every 100 ms at first and at least once a
// second, until one attempt succeeds or republishFor has passed.
func (m *Manager) republish(ctx context.Context, b Broadcaster, h string) {
	deadline := time.Now().Add(republishFor)
	for wait := 100 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, time.Second) {
		time.Sleep(wait)
		t := m.start()
		err := b.Publish(ctx, endedChannel, h)
		m.observe(ctx, OpPublish, t, err)
		if err == nil {
			return
		}
	}
}

func (m *Manager) callEnded(h string) {
	l := &m.ends
	l.mu.RLock()
	defer l.mu.RUnlock()
	for fn := range l.fns {
		(*fn)(h)
	}
}

// ListenForEnds delivers the sessions ended by other processes sharing the store to the
// OnEnd listeners, until ctx is done. When the store is no Broadcaster it only waits for
// ctx. A broken subscription is made again, with backoff up to maxBackoff; resync is
// called each time a subscription is in place (the first time too), because messages
// published while there was none are lost: the caller checks the sessions it holds.
func (m *Manager) ListenForEnds(ctx context.Context, resync func()) {
	b, ok := m.Store.(Broadcaster)
	if !ok {
		<-ctx.Done()
		return
	}
	// The backoff stays short: until the subscription is back, the ends published meanwhile
	// are unknown here and this process's tunnels of ended sessions stay open, so the wait
	// after the store returns must be seconds at most. One attempt a second is no load.
	const minBackoff, maxBackoff = 100 * time.Millisecond, time.Second
	wait := minBackoff
	for ctx.Err() == nil {
		t := m.start()
		err := b.Subscribe(ctx, endedChannel, func() {
			wait = minBackoff
			if resync != nil {
				resync()
			}
		}, func(h string) {
			if ValidHandle(h) {
				m.callEnded(h)
			}
		})
		if ctx.Err() != nil {
			return
		}
		m.observe(ctx, OpSubscribe, t, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxBackoff)
	}
}
